"""End-to-end sanity check on a tiny budget: as units in a store, resumed after kill -9, through the CLI."""

import importlib
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _tiny import ARCHS, K, ROWS, TINY
from layer_sim.cli import app
from layer_sim.data import load_mnist
from layer_sim.errors import ConfigError, IncompleteError
from layer_sim.experiments.sanity import TABLE2_ROWS, SanityCheckSpec, Timings, collect, plan, sanity_check
from layer_sim.report.sanity import write_sanity_check
from layer_sim.store import Store
from layer_sim.training import checkpoint_dir
from layer_sim.training.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent
experiment = importlib.import_module("layer_sim.experiments.sanity")
COMMAND = ["layer-sim", "sanity-check", "--nets", "3"]


def _spec():
    return SanityCheckSpec.make(nets=3, examples=K, network=TINY, rows=ROWS, architectures=ARCHS)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ckpt")


@pytest.fixture(scope="module")
def run(cache, tmp_path_factory):
    lines = []
    out = tmp_path_factory.mktemp("out")
    res = sanity_check(store=out / "results.sqlite", nets=3, examples=K, config=TINY, rows=ROWS, architectures=ARCHS,
                       cache_dir=cache, command=COMMAND, log=lines.append)
    return res, write_sanity_check(res, out), out, lines


def _numpy_linear_cka(x, y):
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_table_records_and_files(run):
    res, written, out, lines = run
    assert res.nets == 3 and res.layers == ("act1", "act2") and res.examples == K and res.reused == (False,) * 3
    recs = json.loads((out / "table.json").read_text())
    assert [set(r) for r in recs] == [{"measure", "accuracy", "stderr", "paper"}] * 3
    assert [r["measure"] for r in recs] == ["CKA (Linear)", "PWCCA", "CKA (RBF 0.4)"]
    assert [r["paper"] for r in recs] == [99.3, 11.1, 99.1]
    for r, row in zip(recs, res.rows):
        assert r["accuracy"] == pytest.approx(100 * row.identification.accuracy, abs=1e-3)
        assert r["stderr"] == pytest.approx(100 * row.identification.stderr, abs=1e-3)
    md = (out / "table.md").read_text()
    assert "| CKA (Linear) |" in md and "99.3" in md
    for name in ["heatmaps/linear_cka.png", "heatmaps/pwcca.png", "heatmaps/rbf_cka_sigma0.4.png",
                 "heatmaps/grid.png", "heatmaps/per_layer_accuracy.png", "table.csv", "per_layer.csv",
                 "architectures/deep_linear_cka.png", "architectures/deep_svcca_rho.csv",
                 "architectures/deep_best_match.md"]:
        assert (out / name).is_file() and (out / name) in written, name
    assert lines == ["sanity-check: stage 1 of 2, 2 units", lines[1], "sanity-check: stage 2 of 2, 4 units", lines[3]]
    assert lines[1].startswith("2 units: 2 done, 0 skipped") and lines[3].startswith("4 units: 4 done, 0 skipped")
    t = res.timings
    assert isinstance(t, Timings)
    assert t.identification == pytest.approx(sum(r.seconds for r in res.rows))
    assert 0 < t.extract < t.total and t.train_or_load + t.extract + t.identification + t.architectures <= t.total


def test_the_store_holds_one_unit_per_piece_the_experiment_and_its_command(run):
    _, _, out, _ = run
    with Store(out / "results.sqlite") as s:
        runs, sweeps, exps = s.runs(), s.sweeps(), s.experiments()
    assert sorted(runs["kind"]) == sorted(["network.ensemble", "network.train", "sanity.identify", "sanity.identify",
                                           "sanity.identify", "sanity.architecture"])
    assert set(runs["status"]) == {"done"} and set(runs["attempts"]) == {1}
    assert exps["name"].tolist() == ["sanity-check"] and SanityCheckSpec.from_dict(exps["spec"][0]) == _spec()
    assert [c for c in sweeps["command"]] == [COMMAND, COMMAND] and set(sweeps["experiment"]) == {exps["key"][0]}


def test_heatmap_values_match_an_independent_computation(run, cache):
    res, _, out, _ = run
    # Rebuild the probe set and the layers by hand from the saved checkpoints.
    x_test = load_mnist("test")[0]
    probe = x_test[torch.randperm(len(x_test), generator=torch.Generator().manual_seed(0))[:K]].flatten(1)
    layers = []
    for seed in (0, 1):
        net = load_checkpoint(checkpoint_dir(TINY, seed, cache_dir=cache)).model
        with torch.no_grad():
            h1 = torch.relu(net.fc1(probe))
            layers.append([h1.double().numpy(), torch.relu(net.fc2(h1)).double().numpy()])
    want = np.array([[_numpy_linear_cka(a, b) for b in layers[1]] for a in layers[0]])
    saved = np.loadtxt(out / "heatmaps/linear_cka.csv", delimiter=",", skiprows=1, usecols=(1, 2))
    np.testing.assert_allclose(saved, want, rtol=1e-5)
    # Accuracy of linear CKA re-derived from the three networks' matrices.
    ident = res.rows[0].identification
    hits = [ident.scores[a, b].argmax(1) == np.arange(2) for a in range(3) for b in range(3) if a != b]
    assert ident.accuracy == pytest.approx(np.mean(hits))


def test_architecture_comparison(run):
    res, _, out, _ = run
    (arch,) = res.architectures
    assert arch.name == "deep" and arch.widths == (784, 16, 16, 16, 10)
    cka = arch.matrices[0]
    assert cka.rows == ("act1", "act2", "act3", "output") and cka.cols == ("act1", "act2", "output")
    best = arch.best_matches()
    assert [b["layer"] for b in best] == list(cka.rows)
    assert all(b["CKA (Linear)"] == cka.cols[int(np.argmax(cka.values[i]))] for i, b in enumerate(best))


def test_a_rerun_skips_every_unit_and_a_new_store_reuses_the_checkpoints(run, cache, tmp_path):
    res, _, out, _ = run
    lines = []
    again = sanity_check(store=out / "results.sqlite", nets=3, examples=K, config=TINY, rows=ROWS,
                         architectures=ARCHS, cache_dir=cache, log=lines.append)
    assert [line for line in lines if "skipped" in line][0].startswith("2 units: 0 done, 2 skipped")
    assert again.records() == res.records() and again.test_accuracies == res.test_accuracies
    fresh = sanity_check(store=tmp_path / "new.sqlite", nets=3, examples=K, config=TINY, rows=ROWS[:1],
                         architectures={}, cache_dir=cache)
    assert fresh.reused == (True,) * 3 and fresh.records()[0] == res.records()[0]


def test_kill_9_of_the_driver_then_rerun_finishes_with_the_same_table(run, cache, tmp_path):
    res, _, out, _ = run
    store = tmp_path / "results.sqlite"
    proc = subprocess.Popen([sys.executable, str(HERE / "_sanity_driver.py"), str(store), str(cache), "1.0"],
                            cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if store.exists():
                with Store(store) as s:
                    runs = s.runs()
                identified = runs[(runs["kind"] == "sanity.identify") & (runs["status"] == "done")]
                if len(identified) >= 1:
                    break
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        _, err = proc.communicate()
    assert proc.returncode == -9, f"the driver was not killed mid-run: {err[-2000:]}"
    with Store(store) as s:
        before = s.runs().set_index("key")
        with pytest.raises(IncompleteError, match="units are not done"):
            collect(s, _spec())
    done_before = before.index[before["status"] == "done"]
    assert 3 <= len(done_before) < 6  # both networks and some identification, not everything
    again = sanity_check(store=store, nets=3, examples=K, config=TINY, rows=ROWS, architectures=ARCHS, cache_dir=cache)
    written = write_sanity_check(again, tmp_path / "out")
    assert (tmp_path / "out/table.md").read_bytes() == (out / "table.md").read_bytes()
    assert tmp_path / "out/table.md" in written
    with Store(store) as s:
        after = s.runs().set_index("key")
        sweeps = s.sweeps()
    assert (after.loc[done_before, "attempts"] == 1).all()  # nothing finished before the kill ran again
    assert set(after["status"]) == {"done"} and len(after) == 6
    assert sweeps["finished"].isna().sum() == 1  # the killed sweep never finished


def test_cli_runs_on_two_workers_writes_files_and_the_store(run, cache, tmp_path, monkeypatch):
    # The CLI runs the default experiment; point its defaults at the tiny, already-cached setup.
    monkeypatch.setattr(experiment, "DEFAULT_SPEC", TINY)
    monkeypatch.setattr(experiment, "DEFAULT_ARCHITECTURES", {})
    body = inspect.unwrap(sanity_check)  # the function itself, under its argument-checking wrapper
    monkeypatch.setattr(body, "__kwdefaults__", {**body.__kwdefaults__, "rows": ROWS[:2]})
    store = tmp_path / "elsewhere" / "s.sqlite"
    result = CliRunner().invoke(app, ["sanity-check", "--nets", "3", "--examples", str(K), "--output",
                                      str(tmp_path / "o"), "--cache-dir", str(cache), "--store", str(store),
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "CKA (Linear)" in result.output and "Paper" in result.output and "reused" in result.output
    # pool workers (one torch thread each) find what the in-process run found
    assert json.loads((tmp_path / "o/table.json").read_text()) == run[0].records()[:2]
    with Store(store) as s:
        sweeps = s.sweeps()
        workers = set(s.runs()["worker"])
    # the options given, in the command's order
    assert sweeps["command"][0] == ["layer-sim", "sanity-check", "--output", str(tmp_path / "o"), "--nets", "3",
                                    "--examples", str(K), "--cache-dir", str(cache), "--store", str(store),
                                    "--workers", "2"]
    assert len(workers) == 2  # two worker processes ran the units
    assert not (tmp_path / "o" / "results.sqlite").exists()  # --store was obeyed


def test_bad_settings_are_config_errors(cache, tmp_path):
    with pytest.raises(ConfigError, match="nets must be"):
        sanity_check(store=tmp_path / "s.sqlite", nets=1, config=TINY, architectures={}, cache_dir=cache)
    with pytest.raises(ConfigError, match="larger than every layer width"):
        sanity_check(store=tmp_path / "s.sqlite", nets=2, examples=20, config=TINY, architectures={}, cache_dir=cache)
    assert not (tmp_path / "s.sqlite").exists()  # refused before any store was made
    result = CliRunner().invoke(app, ["sanity-check", "--nets", "1", "--output", str(tmp_path / "x"),
                                      "--cache-dir", str(cache)])
    assert isinstance(result.exception, ConfigError)


def test_plan_puts_only_what_changes_the_result_in_unit_keys():
    spec = _spec()
    relabelled = SanityCheckSpec.make(nets=3, examples=K, network=TINY, architectures={"renamed": ARCHS["deep"]},
                                      rows=[type(r)(r.label + "!", r.measure, r.params, None) for r in ROWS])
    assert [u.key for stage in plan(relabelled) for u in stage] == [u.key for stage in plan(spec) for u in stage]
    more = SanityCheckSpec.make(nets=3, examples=K + 1, network=TINY, rows=ROWS, architectures=ARCHS)
    assert plan(more)[0][0].key == plan(spec)[0][0].key and plan(more)[1][0].key != plan(spec)[1][0].key


def test_paper_values_are_table2():
    assert {r.label: r.paper for r in TABLE2_ROWS if r.paper is not None} == {
        "CCA (ρ̄)": 1.4, "CCA (R²_CCA)": 10.6, "SVCCA (ρ̄)": 9.9, "SVCCA (R²_CCA)": 15.1, "PWCCA": 11.1,
        "Linear Reg.": 45.4, "Linear HSIC": 22.2, "CKA (Linear)": 99.3, "CKA (RBF 0.2)": 80.6,
        "CKA (RBF 0.4)": 99.1, "CKA (RBF 0.8)": 99.3,
    }
