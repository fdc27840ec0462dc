"""The gradient study in a tiny configuration: units into a store through the experiment driver, resumed, collected,
checked against direct computation, sharing the sanity check's network unit and checkpoint cache."""

import numpy as np
import pytest
import torch

from layer_sim import ConfigError, extract, layer_identification
from layer_sim.errors import IncompleteError
from layer_sim.experiments import experiment_key, get_experiment, run_experiment
from layer_sim.experiments import gradient_study as gs
from layer_sim.experiments.sanity import SANITY_CHECK, Row, SanityCheckSpec
from layer_sim.store import Store
from layer_sim.training import NetworkSpec, fit, train_or_load_ensemble

TINY = NetworkSpec().replace(widths=(784, 12, 12, 10), epochs=2, limit_train=300, batch_size=50, warmup_epochs=0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradient-study")
    mp = pytest.MonkeyPatch()
    # Units must use the sweep's cache (the context), not the environment: point the environment elsewhere.
    mp.setenv("LAYER_SIM_CACHE", str(root / "not-this-cache"))
    spec = gs.GradientStudySpec(TINY, nets=3, examples=40, trajectory_seeds=(0, 1))
    result, summaries = gs.run_gradient_study(spec, root / "results.sqlite", cache_dir=root / "cache",
                                              command=["layer-sim", "gradient-study", "--nets", "3"])
    yield spec, result, summaries, root
    mp.undo()


def test_every_unit_runs_once_and_a_rerun_skips_them(study):
    spec, result, summaries, root = study
    assert [s.done for s in summaries] == [3, len(gs.INDEXES) + 1] and not any(s.failed for s in summaries)
    again, summaries2 = gs.run_gradient_study(spec, root / "results.sqlite", cache_dir=root / "cache")
    assert [s.skipped for s in summaries2] == [3, len(gs.INDEXES) + 1] and [s.done for s in summaries2] == [0, 0]
    assert again.records() == result.records()


def test_it_is_a_registered_experiment_recorded_in_the_store(study):
    spec, _, _, root = study
    assert get_experiment("gradient-study") is gs.GRADIENT_STUDY
    with Store(root / "results.sqlite") as store:
        experiments, sweeps = store.experiments(), store.sweeps()
    assert list(experiments["name"]) == ["gradient-study"]
    assert list(experiments["key"]) == [experiment_key("gradient-study", spec)]
    assert set(sweeps["experiment"]) == {experiment_key("gradient-study", spec)}
    assert ["layer-sim", "gradient-study", "--nets", "3"] in list(sweeps["command"])


def test_units_use_the_sweep_s_cache_not_the_environment(study):
    _, _, _, root = study
    assert not (root / "not-this-cache").exists()
    assert len(list((root / "cache").rglob("model.pt"))) == 3  # the three networks; trajectories are artefacts


def test_the_networks_are_the_sanity_check_s_unit_and_cache(study, tmp_path):
    spec, result, _, root = study
    sanity = SanityCheckSpec(TINY, nets=3, examples=40, rows=(Row("CKA (Linear)", "linear_cka"),), architectures=())
    # In the gradient study's store, the sanity check's stage 1 is already done: the same unit.
    shared = run_experiment(SANITY_CHECK, sanity, root / "results.sqlite", cache_dir=root / "cache")
    assert (shared[0].total, shared[0].skipped, shared[0].done) == (1, 1, 0)
    # In a store of its own, the unit runs again but loads every network from the shared cache.
    run_experiment(SANITY_CHECK, sanity, tmp_path / "results.sqlite", cache_dir=root / "cache")
    with Store(tmp_path / "results.sqlite") as store:
        got = SANITY_CHECK.collect(store, sanity)
    assert got.reused == (True, True, True) and got.test_accuracies == result.test_accuracies


def test_identification_equals_a_direct_run_on_the_same_networks(study):
    spec, result, _, root = study
    nets = [c.model for c in train_or_load_ensemble(TINY, [0, 1, 2], cache_dir=root / "cache")]
    x, y = gs._probe(40, None)
    for row in result.rows:
        idx = row.index
        if idx.objective is None:
            reps = [extract(m, x) for m in nets]
        else:
            obj = gs.Tang(beta=0.5) if idx.objective == "tang" else TINY.task.build().loss
            reps = [extract(m, (x, y), gradients=True, objective=obj) for m in nets]
        direct = layer_identification(reps, idx.measure, **idx.params)
        np.testing.assert_array_equal(row.identification.scores, direct.scores)
        assert row.identification.accuracy == direct.accuracy and row.identification.stderr == direct.stderr
    assert [r["index"] for r in result.records()] == [i.label for i in gs.INDEXES]
    assert result.layers == ("act1", "act2") and len(result.matrices()) == len(gs.INDEXES)


def test_curves_end_at_one_and_cover_every_epoch_layer_and_index(study):
    _, result, _, _ = study
    c = result.curves
    final = c[c.comparison == "final"]
    assert set(final.epoch) == {0, 1, 2} and set(final.layer) == {"act1", "act2"}
    assert set(c["index"]) == {i.label for i in gs.CURVE_INDEXES}
    np.testing.assert_allclose(final[final.epoch == 2].value, 1.0, atol=1e-12)  # a layer against itself
    seeds = c[c.comparison == "seeds"]
    assert set(seeds.seed) == {"0-1"} and ((seeds.value >= 0) & (seeds.value <= 1)).all()
    summary = result.curve_summary()
    assert {"mean", "se"} <= set(summary.columns)


def test_epoch_checkpoints_do_not_change_training(tmp_path):
    task = TINY.build_task()
    with_saver, plain = TINY.build_model(seed=3), TINY.build_model(seed=3)
    saver = gs.EpochCheckpoints(tmp_path, {"seed": 3})
    fit(with_saver, task, TINY.recipe, seed=3, callbacks=[saver], progress=False)
    fit(plain, task, TINY.recipe, seed=3, progress=False)
    for a, b in zip(with_saver.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-001", "epoch-002"]


def test_spec_is_checked_and_round_trips():
    spec = gs.GradientStudySpec(TINY, nets=3, examples=40, trajectory_seeds=(0, 1))
    assert gs.GradientStudySpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="beta must not be 1"):
        gs.GradientStudySpec(beta=1.0)
    with pytest.raises(ConfigError, match="nets must be an integer >= 3"):
        gs.GradientStudySpec(nets=2)
    with pytest.raises(ConfigError, match="trajectory_seeds must be 2 or more distinct"):
        gs.GradientStudySpec(trajectory_seeds=(1, 1))
    with pytest.raises(ConfigError, match="examples must exceed the widest hidden layer"):
        gs.GradientStudySpec(examples=100)


def test_collect_refuses_an_unfinished_store(tmp_path):
    with Store(tmp_path / "s.sqlite", write=True):
        pass
    with Store(tmp_path / "s.sqlite") as store, pytest.raises(IncompleteError, match="gradient study: 11 of 11 units are not done"):
        gs.collect(store, gs.GradientStudySpec(TINY, nets=3, examples=40, trajectory_seeds=(0, 1)))
