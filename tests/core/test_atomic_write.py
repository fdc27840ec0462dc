"""atomic_write: all or nothing, kill -9 included; leftovers of a killed writer are removed, live ones never;
file-system errors name the file written, not its temporary."""

import errno
import os
import signal
import subprocess
import sys
import threading

import pytest

from layer_sim import _io
from layer_sim._io import atomic_write

_KILLED_WRITER = """
import sys, time
from pathlib import Path
from layer_sim._io import atomic_write

def write(fh):
    fh.write(b"partial " * 1000)
    fh.flush()
    print("writing", flush=True)
    time.sleep(120)

atomic_write(Path(sys.argv[1]), write)
"""


def _kill_mid_write(path):
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "writing\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _write(data):
    return lambda fh: fh.write(data)


def test_kill_9_mid_write_keeps_the_old_file_and_the_next_write_removes_the_leftover(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write(path, _write(b"old"))
    _kill_mid_write(path)
    assert path.read_bytes() == b"old"
    leftovers = [p for p in os.listdir(tmp_path) if p != "summary.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".summary.json.") and leftovers[0].endswith(".part")
    atomic_write(path, _write(b"new"))
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["summary.json"]


def test_kill_9_of_a_first_write_leaves_no_file_under_the_final_name(tmp_path):
    _kill_mid_write(tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()  # never a truncated model.pt a later run could trust
    atomic_write(tmp_path / "model.pt", _write(b"weights"))
    assert os.listdir(tmp_path) == ["model.pt"]


def test_a_live_writers_temporary_file_is_never_taken(tmp_path):
    path = tmp_path / "m.png"
    started, go = threading.Event(), threading.Event()
    errors = []

    def slow(fh):
        fh.write(b"slow")
        started.set()
        go.wait(60)

    def run():
        try:
            atomic_write(path, slow)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writer = threading.Thread(target=run)
    writer.start()
    try:
        assert started.wait(60)
        atomic_write(path, _write(b"fast"))  # looks for leftovers: the slow one's file is locked
        assert path.read_bytes() == b"fast"
        assert len([p for p in os.listdir(tmp_path) if p.endswith(".part")]) == 1
    finally:
        go.set()
        writer.join(60)
    assert errors == [] and path.read_bytes() == b"slow" and os.listdir(tmp_path) == ["m.png"]


def test_temporaries_of_other_files_are_left_alone(tmp_path):
    other = tmp_path / ".table.csv.0123456789ab.part"  # stale, but not a temporary of table.json
    other.write_bytes(b"x")
    atomic_write(tmp_path / "table.json", _write(b"[]"))
    assert sorted(os.listdir(tmp_path)) == [other.name, "table.json"]


def test_a_directory_in_the_way_is_refused_before_writing_naming_it(tmp_path):
    (tmp_path / "out.csv").mkdir()
    called = []
    with pytest.raises(IsADirectoryError) as info:
        atomic_write(tmp_path / "out.csv", lambda fh: called.append(fh))
    assert info.value.filename == str(tmp_path / "out.csv") and called == []
    assert os.listdir(tmp_path) == ["out.csv"] and os.listdir(tmp_path / "out.csv") == []


def test_a_file_where_a_directory_is_expected_names_the_parent(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises((FileExistsError, NotADirectoryError)) as info:
        atomic_write(tmp_path / "file" / "sub" / "a.json", _write(b"{}"))
    assert str(tmp_path / "file") in str(info.value)


def test_permission_denied_names_the_target_not_the_temporary(tmp_path, monkeypatch):
    # Root ignores permission bits, so the refusal of a read-only directory is simulated at os.open.
    real_open = os.open

    def refuse_temporaries(file, flags, *args, **kwargs):
        if str(file).endswith(".part") and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(_io.os, "open", refuse_temporaries)
    with pytest.raises(PermissionError) as info:
        atomic_write(tmp_path / "a.json", _write(b"{}"))
    assert info.value.filename == str(tmp_path / "a.json") and os.listdir(tmp_path) == []


def test_a_full_disk_mid_write_keeps_the_old_file_and_names_it(tmp_path):
    path = tmp_path / "meta.json"
    atomic_write(path, _write(b"old"))

    def full(fh):
        fh.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as info:
        atomic_write(path, full)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["meta.json"]
