"""Option declarations: one error type per kind of mistake, strict flags and numbers."""

import math

import numpy as np
import pytest

from layer_sim._options import Choice, Flag, Int, Maybe, Real, check_options
from layer_sim.errors import ConfigError, UnknownNameError

DECLARED = {"sigma": Real(0, None, low_open=True), "seed": Int(0), "debiased": Flag(),
            "kernel": Choice("linear", "rbf"), "block": Maybe(Int(1))}


def test_valid_values_are_normalised():
    out = check_options("f", DECLARED, {"sigma": np.float32(0.5), "seed": np.int64(3), "debiased": False,
                                        "kernel": "rbf", "block": None})
    assert out == {"sigma": 0.5, "seed": 3, "debiased": False, "kernel": "rbf", "block": None}
    assert type(out["sigma"]) is float and type(out["seed"]) is int


@pytest.mark.parametrize("name, value", [
    ("sigma", 0.0), ("sigma", -1.0), ("sigma", math.nan), ("sigma", math.inf), ("sigma", True), ("sigma", "1"),
    ("seed", -1), ("seed", 1.0), ("seed", True), ("seed", 2**63), ("debiased", "False"), ("debiased", 0),
    ("block", 0),
])
def test_wrong_type_or_range_is_a_config_error_naming_the_option(name, value):
    with pytest.raises(ConfigError, match=f"f: {name} must be"):
        check_options("f", DECLARED, {name: value})


def test_unknown_option_or_choice_is_an_unknown_name_error_listing_the_valid_ones():
    with pytest.raises(UnknownNameError, match="unknown option.*sigmaa.*accepted: sigma, seed"):
        check_options("f", DECLARED, {"sigmaa": 1.0})
    with pytest.raises(UnknownNameError, match="unknown value 'poly'; available: linear, rbf"):
        check_options("f", DECLARED, {"kernel": "poly"})
    with pytest.raises(UnknownNameError):
        check_options("f", DECLARED, {"kernel": ["linear"]})


def test_ascending_sequences_are_tuples_of_checked_strictly_increasing_values():
    from layer_sim._options import Ascending

    spec = Ascending(Int(1))
    assert spec.check("f: m", [10, 12]) == (10, 12) and spec.check("f: m", ()) == ()
    assert type(spec.check("f: m", [np.int64(3)])[0]) is int
    for bad, match in [((12, 10), r"f: m must be strictly increasing, got \[12, 10\]"),
                       ((3, 3), "strictly increasing"), ("10,12", "must be a sequence"), (10, "must be a sequence"),
                       ((0, 2), r"f: m\[0\] must be an integer >= 1, got 0"), ((1, 2.5), r"m\[1\] must be an integer")]:
        with pytest.raises(ConfigError, match=match):
            spec.check("f: m", bad)
