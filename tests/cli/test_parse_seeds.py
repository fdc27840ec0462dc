"""Seed lists as the CLI parses them."""

import pytest

from layer_sim.cli._shared import parse_seeds
from layer_sim.errors import ConfigError


@pytest.mark.parametrize(
    ("spec", "seeds"),
    [("0-4", [0, 1, 2, 3, 4]), ("0,2,5", [0, 2, 5]), ("0-2,7", [0, 1, 2, 7]), ("3", [3]), ([1, 2], [1, 2])],
)
def test_parse_seeds(spec, seeds):
    assert parse_seeds(spec) == seeds


@pytest.mark.parametrize("spec", ["4-0", "a", "0,0", "", "-1", "1-"])
def test_parse_seeds_rejects_bad_specs(spec):
    with pytest.raises(ConfigError):
        parse_seeds(spec)
