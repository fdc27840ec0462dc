"""The driver as its own process: kill -9 it or press Ctrl-C mid-sweep, read the store meanwhile, rerun."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from _sweep_checks import expected_contents, store_contents
from layer_sim.cli import app
from layer_sim.runs import Unit, run_sweep
from layer_sim.store import Store

HERE = Path(__file__).resolve().parent
N, WORKERS, SLEEP = 6, 2, 0.3


def _units():
    return [Unit("test.compute", {"i": i, "sleep": SLEEP}) for i in range(N)]


def _driver(path, **kwargs):
    return subprocess.Popen([sys.executable, str(HERE / "_sweep_driver.py"), str(path), str(N), str(WORKERS), str(SLEEP)],
                            cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # an exited orphan may wait as a zombie for its new parent to reap it


def _wait_until(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _check_consistent_read(path, seen_done: list[int]) -> dict:
    """One read while the sweep writes: done runs are complete, and done never goes down."""
    with Store(path) as s, s.snapshot():
        runs, metrics, histories = s.runs(), s.metrics(), s.histories()
    done = set(runs.loc[runs["status"] == "done", "key"])
    assert set(metrics["key"]) == done and (metrics.groupby("key").size() == 2).all()
    assert set(histories["key"]) == done and (histories.groupby("key").size() == 3).all()
    assert not seen_done or len(done) >= seen_done[-1]
    seen_done.append(len(done))
    listed = CliRunner().invoke(app, ["runs", "list", "--store", str(path), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert {r["key"] for r in json.loads(listed.output) if r["status"] == "done"} >= done
    return dict(zip(runs["key"], zip(runs["status"], runs["worker"])))


def test_kill_9_of_the_driver_then_rerun_gives_the_uninterrupted_store_while_readers_read(tmp_path):
    path = tmp_path / "results.sqlite"
    proc = _driver(path)
    seen: list[int] = []
    try:
        _wait_until(path.exists, what="the store")
        state = _wait_until(lambda: (lambda st: st if sum(s == "done" for s, _ in st.values()) >= 2 else None)(
            _check_consistent_read(path, seen)), what="2 units done")
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
    assert len(set(seen)) > 1, "the reader never saw the sweep progress"
    workers = {int(w.rpartition(":")[2]) for s, w in state.values() if s == "running" and isinstance(w, str)}
    _wait_until(lambda: not any(map(_alive, workers)), timeout=10, what="the orphaned workers to exit")

    with Store(path) as s:
        before = s.runs()
    done_before = set(before.loc[before["status"] == "done", "key"])
    assert len(done_before) >= 2

    # resumed in this process: the store, not the executor or the driver process, carries the state
    rerun = run_sweep(_units(), path, retries=0)
    assert (rerun.done, rerun.skipped, rerun.failed) == (N - len(done_before), len(done_before), 0)
    assert store_contents(path) == expected_contents(_units())
    with Store(path) as s:
        after = s.runs()
    # nothing finished before the kill ran again
    assert (after.set_index("key").loc[sorted(done_before), "attempts"] == 1).all()


def test_ctrl_c_stops_the_sweep_cleanly_and_a_rerun_resumes(tmp_path):
    path = tmp_path / "results.sqlite"
    proc = _driver(path, start_new_session=True)  # its own process group, as a terminal's foreground job
    try:
        def progressed():
            if not path.exists():
                return None
            with Store(path) as s:
                counts = s.counts()
            return counts if counts["done"] >= 1 and counts["running"] >= 1 else None

        _wait_until(progressed, what="a unit done and one running")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the driver and its workers
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert out.startswith(f"interrupted: {N} units: ") and "not run (interrupted)" in out
    with Store(path) as s:
        counts, runs = s.counts(), s.runs()
    assert counts["running"] == 0 and counts["done"] >= 1 and counts["done"] + counts["pending"] == N
    workers = {int(w.rpartition(":")[2]) for w in runs["worker"] if isinstance(w, str)}
    _wait_until(lambda: not any(map(_alive, workers)), timeout=10, what="the workers to exit")

    rerun = run_sweep(_units(), path, retries=0)
    assert (rerun.done, rerun.skipped, rerun.failed) == (counts["pending"], counts["done"], 0)
    assert store_contents(path) == expected_contents(_units())
