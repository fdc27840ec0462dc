"""Through the installed console script: every expected failure is one line `error: ...`, exit status 2,
no traceback, and nothing is computed when the output location cannot be written."""

import os
import stat

import pytest
import torch

from layer_sim.cli import _one_line
from layer_sim.errors import ConfigError, DataError

from _script import run


def _assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def test_a_library_error_is_one_line(tmp_path):
    proc = run("train", "--seeds", "4-0", "--output", tmp_path / "o")
    _assert_one_line_error(proc, "seeds: cannot parse '4-0'")
    assert not (tmp_path / "o").exists()  # refused before anything was made


def test_a_device_this_machine_lacks_is_one_line_before_any_work(tmp_path):
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last: never exists
    _assert_one_line_error(run("train", "--device", missing, "--output", tmp_path / "t"), f"device='{missing}'")
    _assert_one_line_error(run("sanity-check", "--device", "gpu", "-o", tmp_path / "s"), "'gpu' is not a torch device")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command, sub", [("train", ""), ("sanity-check", "sub")])
def test_an_output_that_is_a_file_is_refused_before_computing(tmp_path, command, sub):
    f = tmp_path / "file"
    f.write_text("not a directory")
    out = f / sub if sub else f
    _assert_one_line_error(run(command, "--output", out), f"--output {out}: exists and is not a directory")
    assert f.read_text() == "not a directory"


@pytest.mark.parametrize("command, sub", [("train", ""), ("sanity-check", "new")])
def test_a_read_only_output_directory_is_refused_before_computing(tmp_path, command, sub):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    out = ro / sub if sub else ro
    proc = run(command, "--output", out, "--data-dir", tmp_path / "no-mnist-here", obey_permissions=True)
    # The data directory is empty: a command that computed before checking would fail on it.
    _assert_one_line_error(proc, f"--output {out}: cannot write there (Permission denied)")
    assert os.listdir(ro) == []


def test_an_os_error_inside_the_library_is_one_line(tmp_path):
    # MNIST files the user cannot read: the loader's open() raises PermissionError.
    data = tmp_path / "mnist"
    data.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):  # fmt: skip
        (data / name).write_bytes(b"\x1f\x8b")
        (data / name).chmod(0)
    proc = run("train", "--seeds", "0", "--output", tmp_path / "out", "--data-dir", data, obey_permissions=True)
    _assert_one_line_error(proc, "Permission denied", str(data))


def test_classification_of_failures():
    assert _one_line(ConfigError("bad")) == "bad"
    assert _one_line(DataError("damaged")) == "damaged"
    assert _one_line(PermissionError(13, "Permission denied", "/x/y")) == "Permission denied: '/x/y'"
    assert _one_line(OSError(28, "No space left on device")) == "No space left on device"
    assert _one_line(MemoryError()).startswith("out of memory")
    assert _one_line(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore")).startswith(
        "device error (OutOfMemoryError): CUDA out of memory. Tried to allocate 2 GiB"
    )
    assert _one_line(ZeroDivisionError("a bug")) is None  # a bug keeps its traceback
