"""Executors: where units run. The driver (:func:`layer_sim.runs.run_sweep`) alone writes the store.

An executor takes up to :attr:`Executor.capacity` tasks at once (:meth:`~Executor.submit`) and
hands back one :class:`~layer_sim.runs.spec.Outcome` at a time (:meth:`~Executor.next_outcome`),
in whatever order units finish. A unit that raises comes back as a failed outcome from its
worker; a worker that dies (``kill -9``, out of memory, a segfault) comes back as a failed outcome
of exactly the unit it was running, and the executor replaces the worker.

- :class:`SerialExecutor`: in this process, one unit at a time (``--workers 1``).
- :class:`LocalPoolExecutor`: N spawned worker processes on this machine, one unit per task,
  ``torch.set_num_threads(cores // N)`` in each so that workers x threads = cores.
- :class:`layer_sim.runs.ray.RayExecutor`: Ray tasks, on a local Ray or a cluster (optional extra
  ``layer-sim[ray]``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import wait as wait_ready

from layer_sim._options import Choice, Int, Maybe, check_options, strict_signature
from layer_sim.errors import ConfigError
from layer_sim.runs.spec import Outcome, Task, execute, failed_outcome, worker_name

__all__ = ["Executor", "SerialExecutor", "LocalPoolExecutor", "make_executor", "BACKENDS", "DEFAULT_WORKERS",
           "DEFAULT_BACKEND", "available_cores"]

#: Where units can run (``--backend``).
BACKENDS = ("local", "ray")
#: ``--workers`` default: in-process.
DEFAULT_WORKERS = 1
#: ``--backend`` default.
DEFAULT_BACKEND = "local"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


class Executor:
    """Base class: runs tasks and returns their outcomes; used as a context manager by the driver.

    Subclasses implement :meth:`submit` and :meth:`next_outcome`, and :meth:`start`,
    :meth:`abort` and :meth:`close` where they hold resources. ``with executor:`` around several
    sweeps keeps the same workers for all of them (each sweep enters it again, which nests)::

        with LocalPoolExecutor(2) as pool:
            run_sweep(training_units, store, pool)
            run_sweep(comparison_units, store, pool)
    """

    #: How many tasks the driver keeps submitted at once.
    capacity: int = 1
    #: torch intra-op threads per worker, given to each unit as ``context.threads`` (None: untouched).
    threads: int | None = None

    def start(self) -> None:
        """Acquire workers (called once, before the first submit)."""

    def submit(self, task: Task) -> str | None:
        """Start ``task``; return the worker's ``host:pid`` when known (recorded in the store)."""
        raise NotImplementedError

    def next_outcome(self) -> Outcome:
        """Block until one submitted task has finished, failed, or lost its worker; return its outcome."""
        raise NotImplementedError

    def abort(self) -> None:
        """Stop every running task now (Ctrl-C); their outcomes are never returned."""

    def close(self) -> None:
        """Release the workers."""

    _depth = 0  # nesting of ``with``: workers start at the outermost enter and stop at its exit

    def __enter__(self) -> Executor:
        if self._depth == 0:
            self.start()
        self._depth += 1
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._depth -= 1
        if exc_type is not None:
            self.abort()
        if self._depth == 0:
            self.close()


class SerialExecutor(Executor):
    """Run units one at a time in this process (``--workers 1``); torch's thread setting is left alone.

    A worker death here is the driver's death; Ctrl-C interrupts the running unit itself.
    """

    capacity = 1
    threads = None

    def __init__(self) -> None:
        self._queue: list[Task] = []

    def submit(self, task: Task) -> str:
        self._queue.append(task)
        return worker_name()

    def next_outcome(self) -> Outcome:
        return execute(self._queue.pop(0))

    def abort(self) -> None:
        self._queue.clear()


def _worker_main(conn, threads: int, parent: int) -> None:
    """A pool worker: run tasks received on ``conn`` until ``None`` or the driver goes away."""
    # Ctrl-C reaches the whole process group; the driver decides what stops, so workers ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)

    def orphan_watch() -> None:  # a driver killed with -9 cannot stop us: stop ourselves
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=orphan_watch, daemon=True).start()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(execute(task))


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "lost its connection"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class _Worker:
    def __init__(self, ctx, threads: int) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, threads, os.getpid()), daemon=True,
                                   name="layer_sim-worker")
        self.process.start()
        child.close()
        self.task: Task | None = None

    @property
    def name(self) -> str:
        return f"{worker_name().rpartition(':')[0]}:{self.process.pid}"


class LocalPoolExecutor(Executor):
    """A pool of ``workers`` spawned processes on this machine, one unit per task.

    Each worker sets ``torch.set_num_threads(threads)`` when it starts, ``threads`` defaulting to
    ``max(1, cores // workers)`` so that the pool uses every core without oversubscribing them.
    The ``spawn`` start method gives every worker a fresh interpreter (no forked torch or CUDA
    state). Workers start when first needed. When a worker dies, only the unit it was running
    fails; the other workers go on undisturbed, and a new worker takes the dead one's place when
    there is work for it. Workers ignore SIGINT (the driver stops them) and exit by
    themselves when the driver dies.

    Parameters
    ----------
    workers : int
        Number of worker processes, >= 1.
    threads : int or None, default=None
        torch intra-op threads per worker; None for ``max(1, cores // workers)``.
    """

    def __init__(self, workers: int, *, threads: int | None = None) -> None:
        opts = check_options("LocalPoolExecutor", {"workers": Int(1), "threads": Maybe(Int(1))},
                             {"workers": workers, "threads": threads})
        self.capacity = opts["workers"]
        self.threads = opts["threads"] or max(1, available_cores() // self.capacity)
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []

    def submit(self, task: Task) -> str:
        # Workers start on first need (a sweep of fewer units than workers starts fewer) and a dead
        # worker is replaced only when there is work for it.
        for w in [w for w in self._workers if w.task is None and not w.process.is_alive()]:
            self._drop(w)  # died while idle
        idle = [w for w in self._workers if w.task is None]
        if idle:
            w = idle[0]
            try:
                w.conn.send(task)
            except OSError:  # died since the check: a new worker takes the task
                self._drop(w)
                idle = []
        if not idle:
            if len(self._workers) >= self.capacity:
                raise ConfigError(f"LocalPoolExecutor: all {self.capacity} workers are busy; submit at most capacity tasks")
            w = _Worker(self._ctx, self.threads)
            self._workers.append(w)
            w.conn.send(task)
        w.task = task
        return w.name

    def _drop(self, w: _Worker) -> None:
        w.process.join(timeout=5)
        w.conn.close()
        self._workers.remove(w)

    def next_outcome(self) -> Outcome:
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            raise ConfigError("LocalPoolExecutor: next_outcome() with no task submitted")
        ready = set(wait_ready([w.conn for w in busy] + [w.process.sentinel for w in busy]))
        w = next(w for w in busy if {w.conn, w.process.sentinel} & ready)
        task, w.task = w.task, None
        if w.conn.poll():
            try:
                return w.conn.recv()
            except (EOFError, OSError):  # died while sending: reported as a death below
                pass
        self._drop(w)
        return failed_outcome(task, f"worker process {w.process.pid} {_describe_exit(w.process.exitcode)} "
                                    "while running this unit", worker=w.name)

    def abort(self) -> None:
        for w in self._workers:
            if w.task is not None:
                w.process.kill()
                w.task = None

    def close(self) -> None:
        for w in self._workers:
            if w.process.is_alive() and w.task is None:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for w in self._workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        self._workers = []


@strict_signature
def make_executor(*, workers: int = DEFAULT_WORKERS, backend: str = DEFAULT_BACKEND,
                  ray_address: str | None = None) -> Executor:
    """The executor for the shared sweep options ``--workers N --backend local|ray --ray-address``.

    ``local`` with one worker runs in-process (:class:`SerialExecutor`), with more a
    :class:`LocalPoolExecutor`; ``ray`` gives a :class:`~layer_sim.runs.ray.RayExecutor` that joins
    ``ray_address`` (or starts a local Ray) and keeps ``workers`` units in flight when ``workers``
    is above 1 (else one per CPU of the cluster).

    Examples
    --------
    >>> type(make_executor()).__name__, type(make_executor(workers=2)).__name__
    ('SerialExecutor', 'LocalPoolExecutor')
    """
    opts = check_options("make_executor", {"workers": Int(1), "backend": Choice(*BACKENDS)},
                         {"workers": workers, "backend": backend})
    if ray_address is not None and (not isinstance(ray_address, str) or not ray_address.strip()):
        raise ConfigError(f"make_executor: ray_address must be a non-empty string such as 'auto' or "
                          f"'ray://host:10001', got {ray_address!r}")
    if opts["backend"] == "ray":
        from layer_sim.runs.ray import RayExecutor

        return RayExecutor(address=ray_address, capacity=opts["workers"] if opts["workers"] > 1 else None)
    if ray_address is not None:
        raise ConfigError(f"make_executor: ray_address={ray_address!r} needs backend='ray', got backend='local'")
    return SerialExecutor() if opts["workers"] == 1 else LocalPoolExecutor(opts["workers"])

