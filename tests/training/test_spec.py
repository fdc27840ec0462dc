"""NetworkSpec: what its cache key hashes (explicitly and versioned), round trip, replace()."""

import dataclasses
import hashlib
import json
from typing import Optional

import pytest

from layer_sim.data import TaskSpec
from layer_sim.errors import ConfigError, UnknownNameError
from layer_sim.models import MLPSpec
from layer_sim.training import DEFAULT_SPEC, NetworkSpec, Recipe


def test_default_key_is_sha256_of_the_documented_fields():
    """Derived by hand from the key's definition, so a silent change of the key (orphaning every cache) fails here."""
    text = (
        '{"fields":{"model":{"activation":"relu","kind":"MLP","skip":false,"widths":[784,256,256,256,256,10]},'
        '"recipe":{"batch_size":128,"epochs":10,"lr":0.05,"momentum":0.9,"optimizer":"sgd","readout_lr":null,'
        '"schedule":"cosine","shift":0,"warmup_epochs":0.5,"weight_decay":0.0005},'
        '"task":{"limit_train":null,"loss":"cross_entropy","name":"mnist"}},"kind":"network","version":1}'
    )
    assert DEFAULT_SPEC.key() == hashlib.sha256(text.encode()).hexdigest()[:24]
    assert DEFAULT_SPEC.key() == NetworkSpec().key()


@pytest.mark.parametrize(
    "change",
    [dict(widths=(784, 128, 10)), dict(activation="tanh"), dict(skip=True), dict(loss="mse_one_hot"),
     dict(limit_train=100), dict(optimizer="adam"), dict(lr=0.1), dict(momentum=0.5), dict(readout_lr=0.01),
     dict(weight_decay=0.0), dict(batch_size=64), dict(epochs=3), dict(schedule="constant"),
     dict(warmup_epochs=0.0), dict(shift=1), dict(clip_norm=1.0), dict(schedule="step", milestones=(5,))],  # fmt: skip
)
def test_every_field_changes_the_key(change):
    assert DEFAULT_SPEC.replace(**change).key() != DEFAULT_SPEC.key()


def test_fields_added_after_version_1_are_hashed_only_away_from_their_defaults():
    stepped = DEFAULT_SPEC.replace(schedule="step", milestones=(5,))
    assert "gamma" not in stepped.key_fields()["recipe"] and "clip_norm" not in stepped.key_fields()["recipe"]
    assert stepped.key_fields()["recipe"]["milestones"] == [5]
    assert stepped.replace(gamma=0.5).key() != stepped.key()
    assert "milestones" not in DEFAULT_SPEC.key_fields()["recipe"]


def test_a_new_field_at_its_default_leaves_old_keys_valid():
    @dataclasses.dataclass(frozen=True)
    class RecipeWithClipping(Recipe):  # how a later field (issue 14: gradient clipping) is added
        clip_norm: Optional[float] = None

    old = NetworkSpec(recipe=Recipe(epochs=3))
    assert NetworkSpec(recipe=RecipeWithClipping(epochs=3)).key() == old.key()
    clipped = NetworkSpec(recipe=RecipeWithClipping(epochs=3, clip_norm=1.0))
    assert clipped.key() != old.key()
    assert clipped.key_fields()["recipe"]["clip_norm"] == 1.0


def test_round_trip_and_replace():
    spec = DEFAULT_SPEC.replace(widths=(784, 64, 64, 10), skip=True, loss="mse_one_hot", lr=0.2, limit_train=500)
    assert spec.model == MLPSpec((784, 64, 64, 10), skip=True)
    assert spec.task == TaskSpec(loss="mse_one_hot", limit_train=500)
    assert spec.recipe == Recipe(lr=0.2)
    again = NetworkSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.key() == spec.key() and hash(again) == hash(spec)
    assert DEFAULT_SPEC.replace(recipe=Recipe(epochs=2), epochs=4).recipe.epochs == 4  # whole part, then fields
    with pytest.raises(UnknownNameError, match=r"unknown field\(s\) \['epochz'\]"):
        DEFAULT_SPEC.replace(epochz=3)


def test_bad_parts_are_refused():
    with pytest.raises(ConfigError, match="NetworkSpec: recipe must be a Recipe, got dict"):
        NetworkSpec(recipe={"lr": 0.1})
    with pytest.raises(UnknownNameError, match="unknown model kind 'LeNet9'"):
        NetworkSpec.from_dict({"model": {"kind": "LeNet9"}, "task": {}, "recipe": {}})
    with pytest.raises(UnknownNameError, match="TaskSpec: name: unknown value 'cifar'"):
        TaskSpec(name="cifar")
