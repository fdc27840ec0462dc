"""End-to-end sanity check on a tiny budget: through the library and through the CLI."""

import importlib
import inspect
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import layer_sim.training.spec
from layer_sim.training.checkpoint import load_checkpoint
from layer_sim.cli import app
from layer_sim.data import load_mnist
from layer_sim.errors import ConfigError
from layer_sim.experiments.sanity import TABLE2_ROWS, Row, Timings, sanity_check
from layer_sim.report.sanity import write_sanity_check
from layer_sim.training import NetworkSpec, checkpoint_dir

experiment = importlib.import_module("layer_sim.experiments.sanity")
TINY = NetworkSpec().replace(widths=(784, 24, 20, 10), epochs=1, limit_train=1500)
ARCHS = {"deep": (784, 16, 16, 16, 10)}
ROWS = (
    Row("CKA (Linear)", "linear_cka", {}, 99.3),
    Row("PWCCA", "pwcca", {}, 11.1),
    Row("CKA (RBF 0.4)", "rbf_cka", {"sigma": 0.4}, 99.1),
)
K = 60


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ckpt")


@pytest.fixture(scope="module")
def run(cache, tmp_path_factory):
    lines = []
    res = sanity_check(nets=3, examples=K, config=TINY, rows=ROWS, architectures=ARCHS,
                       cache_dir=cache, log=lines.append)
    out = tmp_path_factory.mktemp("out")
    return res, write_sanity_check(res, out), out, lines


def _numpy_linear_cka(x, y):
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_table_records_and_files(run):
    res, written, out, lines = run
    assert res.nets == 3 and res.layers == ("act1", "act2") and res.examples == K
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
    assert sum("trained" in line for line in lines) == 4  # 3 networks + 1 other architecture
    t = res.timings
    assert isinstance(t, Timings)
    assert t.identification == pytest.approx(sum(r.seconds for r in res.rows))
    assert 0 < t.extract < t.total and t.train_or_load + t.extract + t.identification + t.architectures <= t.total


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


def test_second_run_reuses_checkpoints_and_reproduces(run, cache):
    res, *_ = run
    lines = []
    again = sanity_check(nets=3, examples=K, config=TINY, rows=ROWS[:1], architectures={},
                         cache_dir=cache, log=lines.append)
    assert sum("reused" in line for line in lines) == 3
    assert again.records()[0] == res.records()[0]
    assert again.test_accuracies == res.test_accuracies


def test_cli_prints_table_and_writes_files(run, cache, tmp_path, monkeypatch):
    # The CLI runs the default experiment; point its defaults at the tiny, already-cached setup.
    monkeypatch.setattr(layer_sim.training.spec, "DEFAULT_SPEC", TINY)
    monkeypatch.setattr(experiment, "DEFAULT_ARCHITECTURES", {})
    body = inspect.unwrap(sanity_check)  # the function itself, under its argument-checking wrapper
    monkeypatch.setattr(body, "__kwdefaults__", {**body.__kwdefaults__, "rows": ROWS[:2]})
    result = CliRunner().invoke(app, ["sanity-check", "--nets", "3", "--examples", str(K),
                                      "--output", str(tmp_path / "o"), "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    assert "CKA (Linear)" in result.output and "Paper" in result.output and "reused" in result.output
    assert json.loads((tmp_path / "o/table.json").read_text())[0] == run[0].records()[0]


def test_bad_settings_are_config_errors(cache):
    with pytest.raises(ConfigError, match="nets must be"):
        sanity_check(nets=1, config=TINY, architectures={}, cache_dir=cache)
    with pytest.raises(ConfigError, match="larger than every layer width"):
        sanity_check(nets=2, examples=20, config=TINY, architectures={}, cache_dir=cache)
    result = CliRunner().invoke(app, ["sanity-check", "--nets", "1", "--output", "x", "--cache-dir", str(cache)])
    assert isinstance(result.exception, ConfigError)


def test_paper_values_are_table2():
    assert {r.label: r.paper for r in TABLE2_ROWS if r.paper is not None} == {
        "CCA (ρ̄)": 1.4, "CCA (R²_CCA)": 10.6, "SVCCA (ρ̄)": 9.9, "SVCCA (R²_CCA)": 15.1, "PWCCA": 11.1,
        "Linear Reg.": 45.4, "Linear HSIC": 22.2, "CKA (Linear)": 99.3, "CKA (RBF 0.2)": 80.6,
        "CKA (RBF 0.4)": 99.1, "CKA (RBF 0.8)": 99.3,
    }
