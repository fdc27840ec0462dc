"""Recipe: validation with one error type per kind of mistake, hashing, round trip, the schedule's closed form."""

import json
import math

import pytest

from layer_sim.errors import ConfigError, UnknownNameError
from layer_sim.training import DEFAULT_RECIPE, Recipe


def test_defaults_are_the_default_networks_recipe():
    assert DEFAULT_RECIPE.to_dict() == {
        "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "readout_lr": None, "weight_decay": 5e-4,
        "batch_size": 128, "epochs": 10, "schedule": "cosine", "warmup_epochs": 0.5, "shift": 0,
        "milestones": [], "gamma": 0.1, "clip_norm": None,
    }  # fmt: skip


def test_every_field_is_declared_and_checked():
    from dataclasses import fields

    from layer_sim.training.recipe import DECLARED

    assert list(DECLARED) == [f.name for f in fields(Recipe)]


def test_frozen_hashable_and_normalised():
    import numpy as np

    a = Recipe(lr=1, epochs=np.int64(3), batch_size=64)
    b = Recipe(lr=1.0, epochs=3, batch_size=64)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert type(a.lr) is float and type(a.epochs) is int
    with pytest.raises(AttributeError):
        a.lr = 0.1


def test_round_trip_through_json():
    r = Recipe(optimizer="adam", lr=3e-3, readout_lr=1e-4, shift=2, schedule="constant", warmup_epochs=0.0)
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    stepped = Recipe(schedule="step", milestones=[3, 7], gamma=0.5, clip_norm=1.0)
    back = Recipe.from_dict(json.loads(json.dumps(stepped.to_dict())))
    assert back == stepped and back.milestones == (3, 7) and hash(back) == hash(stepped)
    with pytest.raises(UnknownNameError, match=r"unknown option\(s\) epochz"):
        Recipe.from_dict({"epochz": 3})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, r"Recipe: lr must be a finite number in \(0, inf\), got 0.0"),
        ({"lr": math.nan}, "lr must be a finite number"),
        ({"readout_lr": -1.0}, r"readout_lr must be a finite number in \(0, inf\)"),
        ({"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\)"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"epochs": 1.5}, "epochs must be an integer"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"shift": -1}, "shift must be an integer >= 0"),
        ({"epochs": 2, "warmup_epochs": 5}, r"warmup_epochs must be in \[0, epochs=2\]"),
        ({"schedule": "step"}, r"schedule='step' needs milestones in \[1, epochs - 1 = 9\].*got \[\]"),
        ({"schedule": "step", "milestones": (4, 10)}, r"needs milestones in \[1, epochs - 1 = 9\].*got \[4, 10\]"),
        ({"schedule": "step", "milestones": (5, 3)}, r"milestones must be strictly increasing, got \[5, 3\]"),
        ({"schedule": "step", "milestones": (0, 3)}, r"milestones\[0\] must be an integer >= 1, got 0"),
        ({"schedule": "step", "milestones": (3,), "gamma": 1.0}, r"gamma must be a finite number in \(0, 1\)"),
        ({"milestones": (3,)}, r"milestones and gamma apply only to schedule='step', got schedule='cosine'"),
        ({"gamma": 0.5}, "milestones and gamma apply only to schedule='step'"),
        ({"clip_norm": 0.0}, r"clip_norm must be a finite number in \(0, inf\), got 0.0"),
    ],
)
def test_bad_values_are_config_errors_naming_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Recipe(**kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [({"optimizer": "rmsprop"}, "optimizer: unknown value 'rmsprop'; available: sgd, adam"),
                                               ({"schedule": "linear"}, "schedule: unknown value 'linear'; available: cosine, constant, step")])  # fmt: skip
def test_unknown_names_are_unknown_name_errors_listing_the_choices(kwargs, match):
    with pytest.raises(UnknownNameError, match=match):
        Recipe(**kwargs)


def test_lr_factor_follows_the_closed_form():
    r = Recipe(epochs=3, warmup_epochs=0.5)
    per_epoch = 8  # S = 24 steps, W = 4 warm-up steps
    for s in range(24):
        want = (s + 1) / 4 if s < 4 else 0.5 * (1 + math.cos(math.pi * (s - 4) / 20))
        assert r.lr_factor(s, steps_per_epoch=per_epoch) == pytest.approx(want, abs=1e-15)
    assert Recipe(schedule="constant", warmup_epochs=0).lr_factor(17, steps_per_epoch=8) == 1.0
    # After the last step the cosine is clamped at 0 rather than rising again.
    assert r.lr_factor(40, steps_per_epoch=per_epoch) == pytest.approx(0.0, abs=1e-15)


def test_step_schedule_follows_the_closed_form_after_the_warm_up():
    r = Recipe(epochs=6, schedule="step", milestones=(2, 4), gamma=0.1, warmup_epochs=0.5)
    per_epoch = 4  # W = 2 warm-up steps; epochs 1-2 at 1, 3-4 at 0.1, 5-6 at 0.01
    want = [0.5, 1.0, 1, 1, 1, 1, 1, 1] + [0.1] * 8 + [0.1 * 0.1] * 8
    got = [r.lr_factor(s, steps_per_epoch=per_epoch) for s in range(24)]
    assert got == pytest.approx(want, rel=1e-15, abs=0)


def test_the_original_layer_sim_recipe():
    from layer_sim.training.recipe import S1_RECIPE

    assert (S1_RECIPE.lr, S1_RECIPE.momentum, S1_RECIPE.weight_decay, S1_RECIPE.batch_size, S1_RECIPE.epochs) == \
        (0.1, 0.9, 1e-4, 128, 15)
    assert (S1_RECIPE.schedule, S1_RECIPE.milestones, S1_RECIPE.gamma, S1_RECIPE.clip_norm) == ("step", (10, 12), 0.1, 1.0)
    rates = [0.1 * S1_RECIPE.lr_factor(e * 10, steps_per_epoch=10) for e in range(15)]  # first step of each epoch
    assert rates == pytest.approx([0.1] * 10 + [0.01] * 2 + [0.001] * 3, rel=1e-12)
