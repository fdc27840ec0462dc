"""`layer-sim dynamics run|sweep|snapshots` end to end on real MNIST digit pairs (tiny subsets), through
typer's CliRunner, and their one-line errors through the console script."""

import csv
import gzip

from typer.testing import CliRunner

from layer_sim.cli import app, main

from _script import run as run_script

runner = CliRunner()
TINY = ["--epochs", "1", "--limit-train", "400", "--probe-size", "100"]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_writes_epochs_history_finals_and_figures_then_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["dynamics", "run", "--pair", "2", "7", "--lr", "0.2", "--readout-lr", "0.1", "--seeds", "0-1",
            "--snapshot-every", "1", *TINY, "--output", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 units: 2 done, 0 skipped" in result.output
    rows = _rows(out / "epochs.csv")
    required = ["seed", "epoch", "train_loss", "train_accuracy", "test_accuracy", "batch_alignment"]
    assert all(c in rows[0] for c in required)
    assert [(r["seed"], r["epoch"]) for r in rows] == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    assert all(r["pair"] == "2-7" and r["lr"] == "0.2" and r["readout_lr"] == "0.1" for r in rows)
    assert 0 < float(rows[1]["batch_alignment"]) < 1 and rows[0]["batch_alignment"] == ""  # epoch 0: no batches
    with gzip.open(out / "history.csv.gz", "rt", newline="") as fh:
        history = list(csv.DictReader(fh))
    assert {h["split"] for h in history} == {"batch", "train", "test"} and {h["seed"] for h in history} == {"0", "1"}
    for name in ("final.md", "final.csv", "final.json", "curves-2-7.png"):
        assert (out / name).stat().st_size > 0, name
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "2 units: 0 done, 2 skipped" in again.output

    snap = runner.invoke(app, ["dynamics", "snapshots", str(out)])
    assert snap.exit_code == 0, snap.output
    values = _rows(out / "snapshots.csv")
    assert list(values[0]) == ["pair", "lr", "readout_lr", "seed", "epoch", "layer", "value"]
    assert len(values) == 2 * 2 * 2  # seeds x snapshots (epochs 0, 1) x layers
    assert (out / "snapshots.png").stat().st_size > 0


def test_sweep_over_a_small_grid(tmp_path):
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["dynamics", "sweep", "--pairs", "0-1,4-6", "--rates", "0.2:0.1,0.1:0.01",
                                 "--seeds", "0", *TINY, "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 runs (1 epochs each)" in result.output and "4 units: 4 done" in result.output
    assert (out / "results.sqlite").is_file()
    finals = _rows(out / "final.csv")
    assert {(f["pair"], f["lr"], f["readout_lr"]) for f in finals} == {
        ("[0 1]", "0.2", "0.1"), ("[0 1]", "0.1", "0.01"), ("[4 6]", "0.2", "0.1"), ("[4 6]", "0.1", "0.01")}
    for name in ("curves-0-1.png", "curves-4-6.png", "final_alignment.png"):
        assert (out / name).stat().st_size > 0, name


def _error_line(capsys, *args):
    """``main(args)`` in this process: the exit status and the one stderr line (as the console script prints)."""
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.code == 2 and len(err) == 1 and "Traceback" not in err[0], err
        return err[0]
    raise AssertionError("no error")


def test_errors_are_one_line(tmp_path, capsys):
    line = _error_line(capsys, "dynamics", "sweep", "--rates", "0.1-0.01", "--output", tmp_path / "s")
    assert line.startswith("error: --rates: cannot parse '0.1-0.01'")
    line = _error_line(capsys, "dynamics", "run", "--protocol", "paper", "--output", tmp_path / "r")
    assert "protocol: unknown value 'paper'; available: report" in line
    line = _error_line(capsys, "dynamics", "run", "--pair", "3", "3", "--output", tmp_path / "r")
    assert "the two digits of pair must differ" in line
    # Once through the installed console script, as a user sees it.
    proc = run_script("dynamics", "snapshots", tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: store "), proc.stderr
    assert "results.sqlite: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr
