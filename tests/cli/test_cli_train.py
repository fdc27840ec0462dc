"""`layer-sim train` through typer's CliRunner on tiny synthetic MNIST files (one honest tiny run)."""

import gzip
import hashlib
import json
import struct

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from layer_sim.cli import app
from layer_sim.data import mnist as mnist_mod
from layer_sim.store import Store
from layer_sim.training import DEFAULT_SPEC, checkpoint_dir

runner = CliRunner()


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """120 train / 40 test images: class k is a bright horizontal bar at row 2k+4 plus noise."""
    rng = np.random.default_rng(0)
    sums = {}
    for stem, n in (("train", 120), ("t10k", 40)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 * k + 4, 4:24] = 255
        files = {
            f"{stem}-images-idx3-ubyte.gz": struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes(),
            f"{stem}-labels-idx1-ubyte.gz": struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes(),
        }
        for name, raw in files.items():
            payload = gzip.compress(raw)
            (tmp_path / name).write_bytes(payload)
            sums[name] = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(mnist_mod, "SHA256", sums)
    monkeypatch.setattr(mnist_mod, "_fetch", lambda url: pytest.fail(f"network access {url}"))
    return tmp_path


def test_help_has_an_example():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert "Example: layer-sim train --seeds 0-4" in result.output


def test_train_two_seeds_writes_summary_and_checkpoints(tiny_mnist, tmp_path):
    out = tmp_path / "out"
    args = ["train", "--seeds", "0,3", "--epochs", "2", "--limit-train", "100", "--threshold", "0.5",
            "--data-dir", str(tiny_mnist), "--output", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 3]
    accs = summary["test_accuracy"]
    assert len(accs) == 2 and all(0 <= a <= 1 for a in accs)
    # The statistics agree with scipy on the reported accuracies.
    assert accs[0] != accs[1]  # different seeds -> different nets (else no t-test)
    ref = stats.ttest_1samp(accs, 0.5, alternative="greater")
    assert summary["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert summary["t"] == pytest.approx(ref.statistic, rel=1e-9)
    assert summary["df"] == 1
    assert summary["mean"] == pytest.approx(np.mean(accs))
    assert summary["spec"]["recipe"]["epochs"] == 2 and summary["spec"]["task"]["limit_train"] == 100
    assert summary["spec"]["model"]["widths"] == list(DEFAULT_SPEC.model.widths)
    spec = DEFAULT_SPEC.replace(epochs=2, limit_train=100)
    assert summary["key"] == spec.key()
    for seed in (0, 3):
        # The cache layout, with the output directory as the cache root.
        ckpt = checkpoint_dir(spec, seed, cache_dir=out)
        meta = json.loads((ckpt / "meta.json").read_text())
        assert meta["seed"] == seed and meta["trainer"] == "fit" and (ckpt / "model.pt").is_file()
        assert len(meta["metrics"]["history"]) == 2
    for text in ("mean", "95% CI", "t =", "df = 1", "p ="):
        assert text in result.output
    assert summary["reused"] == [False, False]

    with Store(out / "results.sqlite") as st:
        runs, sweeps = st.runs(), st.sweeps()
    assert sorted(runs["kind"]) == ["network.train"] * 2 and set(runs["status"]) == {"done"}
    assert sweeps["command"].tolist() == [["layer-sim", "train", "--output", str(out), "--seeds", "0,3", "--epochs",
                                           "2", "--threshold", "0.5", "--data-dir", str(tiny_mnist),
                                           "--limit-train", "100"]]

    # A second invocation finds both units done in the store: nothing runs, same summary.
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "2 units: 0 done, 2 skipped" in again.output
    assert json.loads((out / "summary.json").read_text()) == summary

    # Another store: the units run again and find the checkpoints in the output directory.
    third = runner.invoke(app, [*args, "--store", str(tmp_path / "other.sqlite")])
    assert third.exit_code == 0, third.output
    summary3 = json.loads((out / "summary.json").read_text())
    assert summary3["test_accuracy"] == accs and summary3["reused"] == [True, True] and "reused" in third.output


def test_bad_seed_spec_is_a_one_line_error(tiny_mnist, tmp_path):
    from layer_sim.errors import ConfigError

    result = runner.invoke(app, ["train", "--seeds", "4-0", "--output", str(tmp_path / "o"),
                                 "--data-dir", str(tiny_mnist)])  # fmt: skip
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError) and "4-0" in str(result.exception)
