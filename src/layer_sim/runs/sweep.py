"""The one sweep driver: run units not yet done, record each result as it finishes, retry, resume."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from layer_sim import settings
from layer_sim._options import Int, check_options, strict_signature
from layer_sim._progress import progress_bar
from layer_sim.errors import ConfigError
from layer_sim.runs.executors import Executor, SerialExecutor
from layer_sim.runs.spec import Outcome, Task, Unit, UnitContext, kind_target, versions
from layer_sim.store.sqlite import Store

__all__ = ["run_sweep", "SweepSummary", "SweepInterrupted", "ARTEFACTS_DIR"]

#: Directory beside the store holding ``<key>/`` artefact directories, one per unit.
ARTEFACTS_DIR = "artefacts"


@dataclass(frozen=True)
class SweepSummary:
    """How a sweep went.

    Attributes
    ----------
    total : int
        Distinct units asked for (units with equal keys count once).
    done : int
        Units finished by this sweep.
    skipped : int
        Units already done in the store before this sweep.
    failed : int
        Units that failed every attempt of this sweep (their errors are in the store).
    not_run : int
        Units left pending because the sweep was interrupted.
    seconds : float
        Wall time of the sweep.
    failures : dict
        ``{key: error}`` of the failed units.
    """

    total: int
    done: int
    skipped: int
    failed: int
    not_run: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.total} units: {self.done} done, {self.skipped} skipped (already done), {self.failed} failed"
        if self.not_run:
            text += f", {self.not_run} not run (interrupted)"
        return f"{text} in {self.seconds:.1f} s"


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep: finished units are in the store, the rest are pending for a rerun."""

    def __init__(self, summary: SweepSummary) -> None:
        super().__init__(str(summary))
        self.summary = summary


@strict_signature
def run_sweep(
    units: Iterable[Unit],
    store: Store | str | os.PathLike,
    executor: Executor | None = None,
    *,
    retries: int = 1,
    device: str = "cpu",
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    command: Sequence[str] | None = None,
    experiment: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Run every unit whose key is not done in ``store``, recording each result as it finishes.

    Units already ``done`` are skipped, so rerunning the same sweep after a crash, a ``kill -9``
    or Ctrl-C resumes it: nothing finished is lost or run twice. Each finished unit's results and
    its ``done`` status are committed in one transaction as soon as it returns. The sweep itself
    is recorded too (table ``sweeps``: command line, working directory, driver, versions, start,
    end and counts), and every run names the sweep of its last attempt, so a report can say which
    command produced each result. A failed attempt
    (the unit raised, or its worker died) is retried up to ``retries`` times, then the unit is
    marked ``failed`` with the error text and the sweep goes on; a later sweep tries it again.

    Parameters
    ----------
    units : iterable of Unit
        The work; equal keys are run once.
    store : Store or path-like
        A store opened with ``write=True``, or its path (opened, created if missing, and closed).
    executor : Executor or None, default=None
        Where units run; None for :class:`~layer_sim.runs.executors.SerialExecutor` (in-process).
    retries : int, default=1
        Extra attempts for a failed unit within this sweep.
    device : str, default="cpu"
        torch device handed to every unit as ``context.device``.
    data_dir, cache_dir : path-like or None, default=None
        MNIST directory and checkpoint cache handed to every unit as ``context.data_dir`` and
        ``context.cache_dir``, resolved here (:mod:`layer_sim.settings`) to absolute paths, so
        every worker reads the same place whatever its environment. They locate inputs and never
        change a result, so they are not part of any unit's key.
    command : sequence of str or None, default=None
        The command line recorded for this sweep; None: this Python and ``sys.argv`` (``python
        script.py ...``; a CLI command passes the ``layer-sim ...`` line it was invoked with).
    experiment : str or None, default=None
        Key of the experiment this sweep belongs to, recorded with the sweep (see
        :func:`layer_sim.experiments.run_experiment`, which passes it).
    progress : bool or None, default=None
        Progress bar on stderr (None: only on a terminal).
    log : callable or None
        Called with one line per failed attempt and the summary line at the end.

    Returns
    -------
    SweepSummary

    Raises
    ------
    SweepInterrupted
        On Ctrl-C, after stopping the workers and marking the units they were running pending
        (a ``KeyboardInterrupt`` subclass carrying the summary).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from layer_sim.runs import UnitResult, unit_kind
    >>> @unit_kind("doc.double")
    ... def double(spec, context):
    ...     return UnitResult(metrics={"y": 2 * spec["x"]})
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.sqlite"
    >>> units = [Unit("doc.double", {"x": x}) for x in range(3)]
    >>> print(run_sweep(units, path))  # doctest: +ELLIPSIS
    3 units: 3 done, 0 skipped (already done), 0 failed in ... s
    >>> print(run_sweep(units, path))  # doctest: +ELLIPSIS
    3 units: 0 done, 3 skipped (already done), 0 failed in ... s
    """
    retries = check_options("run_sweep", {"retries": Int(0)}, {"retries": retries})["retries"]
    if not isinstance(device, str) or not device:
        raise ConfigError(f"run_sweep: device must be a torch device name such as 'cpu' or 'cuda', got {device!r}")
    command = [Path(sys.executable).name, *sys.argv] if command is None else list(command)
    if not all(isinstance(a, str) for a in command):
        raise ConfigError(f"run_sweep: command must be a list of strings (an argv), got {command!r}")
    paths = {"data_dir": str(settings.data_dir(data_dir).absolute()),
             "cache_dir": str(settings.cache_dir(cache_dir).absolute())}
    options = dict(retries=retries, device=device, paths=paths, command=command, experiment=experiment,
                   progress=progress, log=log)
    todo: dict[str, Unit] = {}
    for unit in units:
        if not isinstance(unit, Unit):
            raise ConfigError(f"run_sweep: units must be Unit objects, got {type(unit).__name__}")
        todo.setdefault(unit.key, unit)
    if isinstance(store, Store):
        if not store.write:
            raise ConfigError(f"run_sweep: {store!r} is read-only; open it with Store(path, write=True)")
        return _sweep(list(todo.values()), store, executor or SerialExecutor(), **options)
    with Store(store, write=True) as opened:
        return _sweep(list(todo.values()), opened, executor or SerialExecutor(), **options)


def _sweep(units: list[Unit], store: Store, executor: Executor, *, retries: int, device: str, paths: dict[str, str],
           command: list[str], experiment: str | None, progress: bool | None,
           log: Callable[[str], None] | None) -> SweepSummary:
    t0 = time.perf_counter()
    statuses = store.plan((u.key, u.kind, u.spec_json) for u in units)
    sweep = store.begin_sweep(units=len(units), command=command, versions=versions(), experiment=experiment,
                              settings={"device": device, **paths, "executor": type(executor).__name__,
                                        "threads": executor.threads})
    queue = deque(u for u in units if statuses[u.key] != "done")
    skipped = len(units) - len(queue)
    artefacts = store.root / ARTEFACTS_DIR
    attempts: Counter[str] = Counter()
    running: dict[str, Unit] = {}
    done, failures = 0, {}

    def summary(not_run: int = 0) -> SweepSummary:
        return SweepSummary(total=len(units), done=done, skipped=skipped, failed=len(failures), not_run=not_run,
                            seconds=time.perf_counter() - t0, failures=dict(failures))

    try:
        with progress_bar(progress, len(queue), "sweep") as advance:
            if queue:
                with executor:
                    while queue or running:
                        while queue and len(running) < executor.capacity:
                            unit = queue.popleft()
                            attempts[unit.key] += 1
                            context = UnitContext(key=unit.key, output_dir=artefacts / unit.key, device=device,
                                                  threads=executor.threads, attempt=attempts[unit.key], **paths)
                            running[unit.key] = unit
                            worker = executor.submit(Task(unit, kind_target(unit.kind), context))
                            store.mark_running(unit.key, worker=worker)
                        outcome = executor.next_outcome()
                        unit = running[outcome.key]
                        final = outcome.ok or attempts[unit.key] > retries
                        if outcome.ok:
                            _record_done(store, outcome, sweep)
                            done += 1
                        else:
                            _record_failure(store, outcome, sweep, final=final)
                            if log is not None:
                                log(f"unit {unit.key} ({unit.kind}) attempt {attempts[unit.key]} failed: {outcome.error}"
                                    + ("" if final else "; retrying"))
                            if final:
                                failures[unit.key] = outcome.error or "failed"
                            else:
                                queue.append(unit)
                        del running[outcome.key]
                        if final:
                            advance()
    except KeyboardInterrupt:
        store.mark_pending(list(running))
        result = summary(not_run=len(running) + len(queue))
        _end(store, sweep, result)
        if log is not None:
            log(f"interrupted: {result}")
        raise SweepInterrupted(result) from None
    except BaseException:
        store.mark_pending(list(running))
        raise
    result = summary()
    _end(store, sweep, result)
    if log is not None:
        log(str(result))
    return result


def _end(store: Store, sweep: int, s: SweepSummary) -> None:
    store.end_sweep(sweep, done=s.done, skipped=s.skipped, failed=s.failed, not_run=s.not_run)


def _record_done(store: Store, o: Outcome, sweep: int) -> None:
    store.record_done(o.key, metrics=o.metrics, histories=o.histories, artefacts=o.artefacts, started=o.started,
                      finished=o.finished, seconds=o.seconds, versions=o.versions, worker=o.worker, sweep=sweep)


def _record_failure(store: Store, o: Outcome, sweep: int, *, final: bool) -> None:
    store.record_failure(o.key, error=o.error or "failed", traceback=o.traceback, final=final, started=o.started,
                         finished=o.finished, seconds=o.seconds, versions=o.versions, worker=o.worker, sweep=sweep)
