"""The local process pool: same results as in-process, threads per worker, faults that fail one unit only."""

import os
import signal
import threading
import time

from _sweep_checks import expected_contents, store_contents
from layer_sim.runs import LocalPoolExecutor, Unit, run_sweep
from layer_sim.runs.executors import available_cores
from layer_sim.store import Store


def _kill_first_running_worker(path, only: set, killed: list, stop: threading.Event):
    """Poll the store as a reader; SIGKILL the worker of the first unit of ``only`` seen running."""
    while not stop.is_set():
        if path.exists():
            with Store(path) as s:
                running = s.runs(status="running")
            for key, worker in zip(running["key"], running["worker"]):
                if key in only and isinstance(worker, str):
                    pid = int(worker.rpartition(":")[2])
                    assert pid != os.getpid()
                    time.sleep(0.2)  # mid-unit: these units sleep 0.8 s
                    os.kill(pid, signal.SIGKILL)
                    killed.append(key)
                    return
        time.sleep(0.05)


def test_pool_results_threads_and_faults_then_a_rerun_completes(tmp_path):
    """One pool sweep (worker start-ups are the cost here) with every kind of fault, then a rerun.

    Units that compute (some slow), report their threads, raise, kill their own worker, and one
    whose worker the test kills with SIGKILL from outside while it runs.
    """
    path = tmp_path / "r.sqlite"
    compute = [Unit("test.compute", {"i": i}) for i in range(3)] + [Unit("test.compute", {"i": i, "sleep": 0.8}) for i in range(3, 6)]
    threads = [Unit("test.threads", {"n": n}) for n in range(4)]
    fail, die = Unit("test.fail", {"i": 1}), Unit("test.die", {})
    units = compute[:2] + [die] + threads + [fail] + compute[2:]
    killed, stop, lines = [], threading.Event(), []
    killer = threading.Thread(target=_kill_first_running_worker, args=(path, {u.key for u in compute[3:]}, killed, stop))
    killer.start()
    try:
        summary = run_sweep(units, path, LocalPoolExecutor(2), retries=0, log=lines.append)
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1
    assert (summary.total, summary.done, summary.failed) == (12, 9, 3)
    assert set(summary.failures) == {die.key, fail.key, killed[0]}

    contents = store_contents(path)
    assert {u.key: contents[u.key] for u in compute if u.key != killed[0]} == \
        expected_contents(u for u in compute if u.key != killed[0])
    # workers x threads = cores: each worker's torch runs cores // 2 threads
    per_worker = max(1, available_cores() // 2)
    for u in threads:
        m = contents[u.key]["metrics"]
        assert m["torch_threads"] == m["context_threads"] == per_worker
        assert m["pid"] != os.getpid()
    with Store(path) as s:
        dead, raised, shot = s.run(die.key), s.run(fail.key), s.run(killed[0])
    # a unit whose worker died failed, and only it; the sweep went on with a new worker
    for rec in (dead, shot):
        assert (rec.status, rec.attempts) == ("failed", 1)
        assert rec.error.startswith("worker process ") and rec.error.endswith("was killed by SIGKILL while running this unit")
    assert (raised.status, raised.attempts, raised.error) == ("failed", 1, "ValueError: unit 1 refuses to run")
    assert sorted(line.split(" failed: ")[1] for line in lines[:-1]) == sorted([dead.error, raised.error, shot.error])

    # a rerun (in-process) runs the failed units again and only them
    rerun = run_sweep(compute, path, retries=0)
    assert (rerun.done, rerun.skipped, rerun.failed) == (1, 5, 0)
    assert {u.key: store_contents(path)[u.key] for u in compute} == expected_contents(compute)
    with Store(path) as s:
        attempts = dict(zip(s.runs()["key"], s.runs()["attempts"]))
    assert {u.key: attempts[u.key] for u in compute} == {u.key: 2 if u.key == killed[0] else 1 for u in compute}


def test_a_pool_entered_around_two_sweeps_keeps_its_workers(tmp_path):
    with LocalPoolExecutor(1) as pool:
        run_sweep([Unit("test.threads", {"n": n}) for n in range(2)], tmp_path / "a.sqlite", pool)
        run_sweep([Unit("test.threads", {"n": n}) for n in range(2, 4)], tmp_path / "b.sqlite", pool)
        (worker,) = pool._workers
        assert worker.process.is_alive()
    workers = set()
    for name in ("a", "b"):
        with Store(tmp_path / f"{name}.sqlite") as s:
            workers |= set(s.runs()["worker"])
    assert workers == {worker.name}  # host:pid of the one worker, in both sweeps
    assert not worker.process.is_alive()  # the outermost exit stopped it
