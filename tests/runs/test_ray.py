"""The Ray backend: the same results as the local backends, and a dead Ray worker fails only its unit."""

import sys

import pytest

from _sweep_checks import expected_contents, store_contents
from layer_sim.errors import ConfigError
from layer_sim.runs import Unit, make_executor, run_sweep
from layer_sim.runs.ray import RayExecutor
from layer_sim.store import Store


def _without(contents, *fields):
    return {k: {f: v for f, v in run.items() if f not in fields} for k, run in contents.items()}


def test_ray_and_local_backends_give_identical_stores(ray_session, tmp_path):
    units = [Unit("test.compute", {"i": i, "steps": 4}) for i in range(5)]
    stores = {}
    # in-process stands for the local backend: the pool's store equals it (test_pool.py)
    for name, executor in [("serial", None), ("ray", make_executor(backend="ray"))]:
        stores[name] = tmp_path / name / "results.sqlite"
        summary = run_sweep(units, stores[name], executor)
        assert (summary.done, summary.failed) == (5, 0), name
    contents = {name: store_contents(path) for name, path in stores.items()}
    assert contents["ray"] == contents["serial"] == expected_contents(units)
    with Store(stores["ray"]) as s:
        runs = s.runs()
    assert runs["worker"].str.match(r".+:\d+$").all() and runs["python_version"].notna().all()


def test_a_ray_worker_that_dies_fails_only_its_unit(ray_session, tmp_path):
    units = [Unit("test.compute", {"i": i}) for i in range(3)] + [Unit("test.die", {}), Unit("test.fail", {"i": 2})]
    executor = RayExecutor()
    summary = run_sweep(units, tmp_path / "r.sqlite", executor, retries=0)
    assert (summary.done, summary.failed) == (3, 2)
    assert summary.failures[units[3].key].startswith("Ray WorkerCrashedError while running this unit")
    assert summary.failures[units[4].key] == "ValueError: unit 2 refuses to run"
    assert ray_session.is_initialized()  # a Ray the executor did not start is left running
    assert executor.capacity == 2  # one unit per CPU of the session's Ray


def test_backend_ray_without_ray_installed_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError, match=r"backend 'ray' needs Ray, which is not installed: pip install 'layer-sim\[ray\]'"):
        run_sweep([Unit("test.compute", {"i": 0})], tmp_path / "r.sqlite", make_executor(backend="ray"))
    with Store(tmp_path / "r.sqlite") as s:
        assert s.counts()["running"] == 0


def test_an_experiment_runs_on_ray_as_it_runs_in_process(ray_session, tmp_path):
    """layer-sim train's experiment on Ray and in this process (one torch thread in both): the same accuracies."""
    import torch

    from layer_sim.experiments.seeds import train_seeds
    from layer_sim.training import DEFAULT_SPEC

    spec = DEFAULT_SPEC.replace(epochs=1, limit_train=200)
    results = {}
    for name, executor in [("ray", RayExecutor()), ("serial", None)]:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # what each Ray task runs with (RayExecutor threads=1)
        try:
            results[name] = train_seeds([0, 1], store=tmp_path / name / "results.sqlite", spec=spec, threshold=0.1,
                                        cache_dir=tmp_path / name / "ckpt", executor=executor)
        finally:
            torch.set_num_threads(threads)
    assert results["ray"].test_accuracy == results["serial"].test_accuracy
    assert results["ray"].reused == [False, False]
    with Store(tmp_path / "ray" / "results.sqlite") as s:
        assert s.sweeps()["settings"][0]["executor"] == "RayExecutor"
