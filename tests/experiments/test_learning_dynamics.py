"""The report's study (S2): the protocol against a transcription of S2's training loop, alignment rising
in a real short run, resumable studies, snapshots against a direct computation, run specs."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from layer_sim.data import digit_pair_task
from layer_sim.errors import ConfigError, TrainingDivergedError, UnitsFailedError, UnknownNameError
from layer_sim.experiments import learning_dynamics as ld
from layer_sim.runs import SweepInterrupted
from layer_sim.store import Store
from layer_sim.measures import linear_cka
from layer_sim.training import fit


def test_report_model_is_nn_linears_default_initialisation_bit_for_bit():
    torch.manual_seed(3)  # nn.Linear draws its default init from the global generator
    reference = nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 2))
    ours = ld.report_model(hidden=50, seed=3)
    for a, b in zip(reference.parameters(), ours.parameters()):
        assert torch.equal(a, b)


def test_report_protocol_is_s2s_training_loop():
    """S2's loop transcribed with torch's own modules: nn.MSELoss on one-hot float targets, optim.SGD
    with the hidden layer at lr and the readout group at readout_lr, batches of 200 in fit's order."""
    task = digit_pair_task(2, 7, limit_train=600)
    assert task.loss.name == "mse_one_hot"
    x, y = task.train
    recipe = ld.report_recipe(0.2, 0.05, epochs=2)
    ours = ld.report_model(hidden=32, seed=1)
    torch.manual_seed(1)
    s2 = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 2))  # same weights (test above)
    fit(ours, task, recipe, seed=4)
    opt = torch.optim.SGD([{"params": s2[0].parameters()}, {"params": s2[2].parameters(), "lr": 0.05}], lr=0.2)
    gen = torch.Generator().manual_seed(4)
    loss_function = nn.MSELoss()
    for _ in range(2):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 200):
            idx = order[i : i + 200]
            data = x[idx].reshape(len(idx), -1)
            labels = nn.functional.one_hot(y[idx], 2).to(torch.float32)
            loss = loss_function(s2(data), labels)
            assert torch.allclose(task.loss(s2(data), y[idx]), loss, rtol=1e-6, atol=0)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(s2.parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_alignment_rises_on_an_easy_pair_in_a_short_real_run():
    run = ld.PairRun(pair=(2, 7), lr=0.2, readout_lr=0.1, seed=0, epochs=2, limit_train=1000, probe_size=500)
    result = ld.run_pair(run)
    rows = {row["epoch"]: row for row in result.epochs}
    assert sorted(rows) == [0, 1, 2]
    assert rows[2]["test_alignment"] > rows[0]["test_alignment"] + 0.05  # about 0.59 -> 0.71 measured
    assert rows[2]["train_alignment"] > rows[0]["train_alignment"] + 0.05
    assert rows[2]["batch_alignment"] > rows[1]["batch_alignment"]
    assert rows[2]["test_accuracy"] > 0.9 and rows[0]["batch_alignment"] is None
    # Batch values: one per step and layer (5 steps per epoch for 1000 images in batches of 200).
    batch = [h for h in result.history if h["split"] == "batch"]
    assert len(batch) == 2 * 5 * 2


def _tiny_runs(seeds=(0, 1)):
    return [ld.PairRun(pair=(4, 6), lr=0.2, readout_lr=0.1, seed=s, epochs=1, hidden=64, limit_train=400,
                       probe_size=100) for s in seeds]  # fmt: skip


def test_an_interrupted_study_resumes_without_rerunning_finished_units(tmp_path, monkeypatch):
    runs = _tiny_runs(seeds=(0, 1, 2))
    store = tmp_path / "results.sqlite"
    real = ld.run_pair
    calls = []

    def interrupted(run, **kw):
        calls.append(run.seed)
        if run.seed == 1:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the second unit
        return real(run, **kw)

    monkeypatch.setattr(ld, "run_pair", interrupted)
    with pytest.raises(SweepInterrupted):
        ld.study(runs, store)
    def by_seed(column):
        with Store(store) as db:
            table = db.runs()
        return dict(zip(table.spec.map(lambda s: json.loads(s)["seed"]), table[column]))

    assert by_seed("status") == {0: "done", 1: "pending", 2: "pending"}
    finished_first = by_seed("finished")[0]
    monkeypatch.setattr(ld, "run_pair", lambda run, **kw: calls.append(run.seed) or real(run, **kw))
    result = ld.study(runs, store)
    assert calls == [0, 1, 1, 2] and (result.summary.done, result.summary.skipped) == (2, 1)
    assert by_seed("finished")[0] == finished_first  # the finished unit was not run again
    assert [r.run.seed for r in result.records] == [0, 1, 2]
    again = ld.study(runs, store)
    assert (again.summary.done, again.summary.skipped) == (0, 3) and calls == [0, 1, 1, 2]
    # The resumed study holds what an uninterrupted one computes (same seeds: same numbers).
    fresh = ld.study(runs, tmp_path / "fresh" / "results.sqlite")

    def numbers(study):  # everything but the wall-clock column
        return [[{k: v for k, v in row.items() if k != "seconds"} for row in r.epochs] for r in study.records]

    assert numbers(fresh) == numbers(result)
    assert all(Path(r.artefacts["history"]).is_file() for r in result.records)


def test_a_failed_run_is_reported_and_the_others_are_kept(tmp_path, monkeypatch):
    runs = _tiny_runs(seeds=(0, 1))
    real = ld.run_pair

    def diverging(run, **kw):
        if run.seed == 1:
            raise TrainingDivergedError("fit: training diverged: the loss is nan at epoch 1, step 1")
        return real(run, **kw)

    monkeypatch.setattr(ld, "run_pair", diverging)
    with pytest.raises(UnitsFailedError, match=r"dynamics: 1 of 2 units of stage 1 failed \(first: .*training diverged"):
        ld.study(runs, tmp_path / "results.sqlite")
    with Store(tmp_path / "results.sqlite") as db:
        assert sorted(db.runs().status) == ["done", "failed"]


def test_snapshot_alignment_is_linear_cka_over_the_whole_training_subset(tmp_path):
    run = ld.PairRun(pair=(0, 1), lr=0.2, readout_lr=0.1, seed=0, epochs=2, hidden=64, limit_train=300,
                     probe_size=100, snapshot_every=1)  # fmt: skip
    result = ld.study([run], tmp_path / "results.sqlite")
    rows = ld.snapshot_alignment(tmp_path / "results.sqlite")
    assert sorted({r["epoch"] for r in rows}) == [0, 1, 2] and {r["layer"] for r in rows} == {"act1", "output"}
    assert set(rows[0]) == set(ld.SNAPSHOT_COLUMNS) and rows[0]["pair"] == "0-1"
    x, y = digit_pair_task(0, 1, limit_train=300).train
    target = nn.functional.one_hot(y, 2).double()
    path = result.records[0].artefacts["snapshot-00002"]
    model = ld.report_model(hidden=64, seed=0)
    model.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        expected = {"act1": float(linear_cka(torch.relu(model.fc1(x.flatten(1))), target)),
                    "output": float(linear_cka(model(x), target))}  # fmt: skip
    for r in rows:
        if r["epoch"] == 2:
            assert abs(r["value"] - expected[r["layer"]]) <= 1e-6  # float32 features, batched vs whole
    ld.study(_tiny_runs(seeds=(0,)), tmp_path / "plain.sqlite")
    with pytest.raises(ConfigError, match="no run in .* has snapshots"):
        ld.snapshot_alignment(tmp_path / "plain.sqlite")


def test_pair_run_specs_round_trip_and_are_checked():
    run = ld.PairRun(pair=(8, 9), lr=0.1, readout_lr=0.0001, seed=2, epochs=5)
    spec = run.to_spec()
    assert json.loads(json.dumps(spec)) == spec and ld.PairRun.from_spec(spec) == run and spec["pair"] == [8, 9]
    with pytest.raises(ConfigError, match="PairRun: lr must be a finite number in"):
        ld.PairRun(pair=(0, 1), lr=0, readout_lr=0.1, seed=0, epochs=1)
    with pytest.raises(UnknownNameError, match="protocol: unknown value 'paper'; available: report"):
        ld.PairRun(pair=(0, 1), lr=0.1, readout_lr=0.1, seed=0, epochs=1, protocol="paper")
    with pytest.raises(ConfigError, match="the two digits of pair must differ"):
        ld.PairRun(pair=(3, 3), lr=0.1, readout_lr=0.1, seed=0, epochs=1)
    with pytest.raises(UnknownNameError, match=r"unknown field\(s\) \['momentum'\]"):
        ld.PairRun.from_spec({**spec, "momentum": 0.9})


def test_the_default_and_full_sweeps():
    runs = ld.sweep_runs()
    assert len(runs) == 4 * 5 * 3 and {r.epochs for r in runs} == {ld.DEFAULT_SWEEP_EPOCHS}
    assert {r.pair for r in runs} == set(ld.REPORT_PAIRS) and {(r.lr, r.readout_lr) for r in runs} == set(ld.REPORT_RATES)
    full = ld.sweep_runs(full=True)
    assert {(r.epochs, r.probe_every, r.snapshot_every) for r in full} == {(3000, 10, 4)}
    with pytest.raises(ConfigError, match="each rate must be"):
        ld.sweep_runs(rates=[0.1])
