"""``layer-sim gradient-study`` end to end on a tiny configuration: files written, rerun resumes from the store."""

import json

from typer.testing import CliRunner

from layer_sim.cli import app

ARGS = ["--nets", "3", "--examples", "40", "--trajectory-seeds", "0,1", "--widths", "784,12,12,10", "--epochs", "2",
        "--limit-train", "300"]


def test_gradient_study_writes_its_files_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYER_SIM_CACHE", str(tmp_path / "not-this-cache"))  # --cache-dir wins, in every unit
    args = [*ARGS, "--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["gradient-study", "--output", str(out), *args])
    assert first.exit_code == 0, first.output
    for name in ("table.md", "table.json", "per_layer.csv", "heatmaps/grid.png", "heatmaps/gradient_cka_tang.csv",
                 "curves.png", "curves.csv", "results.sqlite"):
        assert (out / name).is_file(), name
    table = json.loads((out / "table.json").read_text())
    assert [r["index"] for r in table][:3] == ["CKA (linear)", "CKA (RBF 0.4)", "NBS"]
    assert "gradient CKA (Tang)" in first.output and "jackknife SE" in first.output
    assert len(list((tmp_path / "cache").rglob("model.pt"))) == 3 and not (tmp_path / "not-this-cache").exists()
    again = runner.invoke(app, ["gradient-study", "--output", str(out), *args])
    assert again.exit_code == 0 and "0 done" in again.output and json.loads((out / "table.json").read_text()) == table
    bad = runner.invoke(app, ["gradient-study", "--output", str(out), "--beta", "1"])
    assert bad.exit_code != 0 and "beta must not be 1" in str(bad.exception)
