"""The CLI as a hostile but realistic user drives it, through the installed console script: every
refusal is exit status 2 with one line `error: ...` (or click's usage error for a value click
itself cannot parse), never a traceback, and a refused command creates nothing."""

import json
import os
import shutil
import stat

import pytest
import torch

from _script import run

QUICK = ("--limit-train", "64", "--epochs", "1")


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def _usage_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    for f in fragments:
        assert f in proc.stderr, (f, proc.stderr)


# (argv with {out} for a fresh output directory, fragments of the one error line). None of these
# reaches training: the data directory is empty, so a command that computed first would fail on it.
REFUSED = [
    (["train", "-o", "{out}", "--threshold", "nan"], ["--threshold must be a finite number in [0, 1], got nan"]),
    (["train", "-o", "{out}", "--threshold", "1.5"], ["--threshold must be a finite number in [0, 1], got 1.5"]),
    (["train", "-o", "{out}", "--epochs", "0"], ["Recipe: epochs must be an integer >= 1, got 0"]),
    (["train", "-o", "{out}", "--seeds", "0-99999999999999"], ["seeds: '0-99999999999999' names more than 10000 seeds"]),
    (["train", "-o", "{out}", "--seeds", "99999999999999999999"], ["train_seeds: seeds must be an integer >= 0"]),
    (["train", "-o", "{out}", "--device", "gpu"], ["--device: device='gpu' is not a torch device name"]),
    (["train", "-o", "{out}", "--device", "cuda"], ["--device: device='cuda' but CUDA is not available"]),
    (["train", "-o", "{out}", "--device", "mps"], ["--device: device='mps' but MPS is not available"]),
    (["train", "-o", "/dev/null"], ["--output /dev/null: exists and is not a directory"]),
    (["train", "-o", "/proc/version/sub"], ["--output /proc/version/sub: exists and is not a directory"]),
    (["sanity-check", "-o", "{out}", "--nets", "99999999999999999999"], [r"sanity_check: nets must be an integer in [2, 1000]"]),
    (["sanity-check", "-o", "{out}", "--examples", "0"], ["sanity_check: examples must be an integer larger than every layer width"]),
    (["table2-study", "-o", "{out}", "--flatten-max-features", "wide"], ["--flatten-max-features: expected an integer or 'none', got 'wide'"]),
    (["table2-study", "-o", "{out}", "--flatten-max-features", "0"], ["Table2StudySpec: flatten_max_features must be"]),
    (["runs", "list", "--store", "{out}"], ["no such file (a sweep creates it)"]),
    (["train", "-o", "{out}", "--store", "/dev/null"], ["store /dev/null: is an empty file, not a layer_sim results store"]),
    (["sanity-check", "-o", "{out}", "--store", "/proc/version/x"], ["store /proc/version/x: cannot be opened for writing"]),
    (["gradient-study", "-o", "{out}", "--widths", "784,a,10"], ["--widths: cannot parse '784,a,10'"]),
    (["gradient-study", "-o", "{out}", "--beta", "1"], ["Tang: beta must not be 1"]),
    (["gradient-study", "-o", "{out}", "--beta", "nan"], ["GradientStudySpec: beta must be a finite number"]),
    (["gradient-study", "-o", "{out}", "--nets", "1"], ["GradientStudySpec: nets must be an integer >= 3, got 1"]),
    (["gradient-study", "-o", "{out}", "--trajectory-seeds", "0"], ["GradientStudySpec: trajectory_seeds must be 2 or more"]),
    (["gradient-study", "-o", "{out}", "--examples", "5"], ["GradientStudySpec: examples must exceed the widest hidden layer"]),
    (["gradient-study", "-o", "{out}", "--device", "cuda"], ["--device: device='cuda' but CUDA is not available"]),
    (["pruning-study", "-o", "{out}", "--rate", "nan"], ["PruningStudySpec: rate must be a finite number in (0, 1), got nan"]),
    (["pruning-study", "-o", "{out}", "--rate", "1"], ["PruningStudySpec: rate must be a finite number in (0, 1), got 1"]),
    (["pruning-study", "-o", "{out}", "--cca-layout", "pixels"], ["PruningStudySpec: cca_layout: unknown value 'pixels'"]),
    (["pruning-study", "-o", "{out}", "--iterations", "0"], ["PruningStudySpec: iterations must be an integer >= 1"]),
    (["pruning-study", "-o", "{out}", "--seeds", "0-99999999999999"], ["seeds: '0-99999999999999' names more than 10000 seeds"]),
    (["pruning-study", "-o", "/dev/null"], ["--output /dev/null: exists and is not a directory"]),
    (["pruning-study", "-o", "{out}", "--device", "gpu"], ["--device: device='gpu' is not a torch device name"]),
    (["report", "--store", "{out}/results.sqlite", "-o", "{out}"], ["no such file (a sweep creates it)"]),
    (["report", "--store", "/dev/null", "-o", "{out}"], ["store /dev/null: is an empty file, not a layer_sim results store"]),
    (["report", "--store", "/etc/hostname", "-o", "/dev/null"], ["--output /dev/null: exists and is not a directory"]),
]


@pytest.mark.parametrize("argv, fragments", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refused_before_any_work_in_one_line(tmp_path, argv, fragments):
    out = tmp_path / "out"
    argv = [a.replace("{out}", str(out)) for a in argv]
    proc = run(*argv, env={"LAYER_SIM_DATA": str(tmp_path / "no-mnist"), "LAYER_SIM_CACHE": str(tmp_path / "cache")})
    _one_line_error(proc, *fragments)
    assert os.listdir(tmp_path) == []  # no output, cache or data directory was made


@pytest.mark.parametrize("argv, option", [
    (["train", "-o", ""], "'--output' / '-o'"),
    (["train", "-o", "{out}", "--data-dir", ""], "'--data-dir'"),
    (["sanity-check", "-o", ""], "'--output' / '-o'"),
    (["sanity-check", "-o", "{out}", "--cache-dir", ""], "'--cache-dir'"),
    (["runs", "list", "--store", ""], "'--store'"),
    (["runs", "export", "--store", "{out}", "-o", ""], "'--output' / '-o'"),
    (["report", "--store", "", "-o", "{out}"], "'--store'"),
    (["report", "--store", "{out}", "-o", ""], "'--output' / '-o'"),
    (["gradient-study", "-o", ""], "'--output' / '-o'"),
    (["pruning-study", "-o", "{out}", "--store", ""], "'--store'"),
])
def test_an_empty_path_is_refused_not_taken_for_the_current_directory(tmp_path, argv, option):
    proc = run(*[a.replace("{out}", str(tmp_path / "out")) for a in argv])
    _usage_error(proc, f"Invalid value for {option}: the path is empty")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv, fragment", [
    (["train", "-o", "{out}", "--threshold", "high"], "Invalid value for '--threshold'"),
    (["train", "-o", "{out}", "--epochs", "2.5"], "Invalid value for '--epochs'"),
    (["train", "-o", "{out}", "--sed", "0"], "No such option: --sed"),
    (["sanity-check"], "Missing option '--output' / '-o'"),
    (["sanity-chek", "-o", "{out}"], "No such command 'sanity-chek'"),
])
def test_what_click_cannot_parse_is_a_usage_error_without_traceback(tmp_path, argv, fragment):
    _usage_error(run(*[a.replace("{out}", str(tmp_path / "out")) for a in argv]), fragment)
    assert os.listdir(tmp_path) == []


def test_a_data_directory_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "mnist").write_text("not a directory")
    proc = run("train", "-o", tmp_path / "out", "--data-dir", tmp_path / "mnist", *QUICK)
    _one_line_error(proc, f"MNIST: the data directory {tmp_path / 'mnist'} is a file, not a directory")


def test_a_garbage_results_store_is_one_line_and_untouched(tmp_path):
    store = tmp_path / "results.sqlite"
    store.write_bytes(b"\x00garbage" * 100)
    for argv in (("runs", "list", "--store", store), ("runs", "export", "--store", store, "-o", tmp_path / "e")):
        _one_line_error(run(*argv), f"store {store}: is not a layer_sim results store")
    assert store.read_bytes() == b"\x00garbage" * 100 and sorted(os.listdir(tmp_path)) == ["results.sqlite"]


def test_a_read_only_cache_directory_is_refused_before_training(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    proc = run("sanity-check", "-o", tmp_path / "out", "--nets", "2", "--examples", "300", "--cache-dir", ro,
               obey_permissions=True)  # fmt: skip
    _one_line_error(proc, f"checkpoint directory {ro}/", "cannot write there (Permission denied)")
    # Refused by the network unit before it trains (the run's store, in --output, records the failure).
    assert os.listdir(ro) == []


def test_a_read_only_output_directory_is_refused_before_the_store_is_read(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    proc = run("report", "--store", tmp_path / "no-store.sqlite", "-o", ro / "report", obey_permissions=True)
    _one_line_error(proc, f"--output {ro / 'report'}: cannot write there (Permission denied)")
    assert os.listdir(ro) == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two quickly trained seeds in a train output directory (their checkpoints are the cache)."""
    out = tmp_path_factory.mktemp("train") / "out"
    proc = run("train", "-o", out, "--seeds", "0,1", *QUICK)
    assert proc.returncode == 0, proc.stderr
    return out


def _checkpoints(out):
    return sorted(p.parent for p in out.rglob("seed-*/meta.json"))


def _copy_without_store(trained, out):
    """The trained output with its checkpoints only (no store, no summary): the next run reads them again."""
    shutil.copytree(trained, out)
    (out / "results.sqlite").unlink()
    (out / "summary.json").unlink()


def test_a_checkpoint_whose_accuracy_is_not_a_number_is_one_line_and_no_summary(trained, tmp_path):
    out = tmp_path / "out"
    _copy_without_store(trained, out)
    meta_path = _checkpoints(out)[1] / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["metrics"]["test_accuracy"] = float("nan")  # e.g. a task without a test split
    meta_path.write_text(json.dumps(meta))
    proc = run("train", "-o", out, "--seeds", "0,1", *QUICK)
    _one_line_error(proc, "1 of 2 units of stage 1 failed", "test_accuracy", "nan")
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize("damage, fragment", [
    ("nan weights", "holds NaN or Inf in"),
    ("no metrics", "has no numeric metrics.test_accuracy"),
])
def test_a_damaged_checkpoint_in_the_output_is_one_line_naming_the_file(trained, tmp_path, damage, fragment):
    out = tmp_path / "out"
    _copy_without_store(trained, out)
    ckpt = _checkpoints(out)[0]
    if damage == "nan weights":
        state = torch.load(ckpt / "model.pt", weights_only=True)
        torch.save({k: v * float("nan") for k, v in state.items()}, ckpt / "model.pt")
    else:
        meta = json.loads((ckpt / "meta.json").read_text())
        del meta["metrics"]
        (ckpt / "meta.json").write_text(json.dumps(meta))
    _one_line_error(run("train", "-o", out, "--seeds", "0,1", *QUICK), str(ckpt), fragment)
