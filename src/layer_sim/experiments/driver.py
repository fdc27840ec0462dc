"""What an experiment is, and the one way every experiment runs: stages of units through :func:`run_sweep`.

An experiment is four things, registered once with :func:`register_experiment`:

- a **spec**: a frozen object with ``to_dict()`` and a ``from_dict`` that inverts it (what a user
  chose: seeds, sizes, indexes, ...);
- ``plan(spec) -> stages``: a list of stages, each a list of :class:`~layer_sim.runs.Unit`, whose
  kinds are registered with :func:`~layer_sim.runs.unit_kind`; stage *k + 1* may use what stage
  *k* produced (e.g. identification after training), units within a stage are independent;
- ``collect(store, spec) -> result``: the typed result, read back from the store only (metrics,
  histories and the artefact files the store points to), never recomputed;
- a name (``"sanity-check"``), under which the experiment and its spec are recorded in the store,
  so that ``layer-sim report`` can find it, collect it and render the section registered for it
  in :mod:`layer_sim.report.sections`.

:func:`run_experiment` records the experiment, then runs each stage with
:func:`~layer_sim.runs.run_sweep` (which skips finished units, so a rerun after ``kill -9``
resumes), and stops with :class:`~layer_sim.errors.UnitsFailedError` after a stage whose units
failed every attempt, since the next stage would need them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from layer_sim._io import canonical_json, content_key
from layer_sim.errors import ConfigError, IncompleteError, UnitsFailedError, UnknownNameError
from layer_sim.runs import Executor, SerialExecutor, SweepSummary, Unit, run_sweep
from layer_sim.store import RunRecord, Store

__all__ = [
    "Experiment",
    "collect_experiment",
    "register_experiment",
    "get_experiment",
    "experiment_names",
    "experiment_key",
    "run_experiment",
    "done_runs",
    "KEY_VERSION",
]

#: Version of :func:`experiment_key`.
KEY_VERSION = 1


@dataclass(frozen=True)
class Experiment:
    """An experiment's name, how its spec is read back, how it is planned and how its result is collected.

    Attributes
    ----------
    name : str
        Recorded in the store's ``experiments`` table; a report section is registered under it.
    spec_from_dict : callable dict -> spec
        Inverse of the spec's ``to_dict()``.
    plan : callable spec -> sequence of sequences of Unit
        The stages, run in order.
    collect : callable (Store, spec) -> result
        The typed result from a store holding every planned unit done; raises
        :class:`~layer_sim.errors.IncompleteError` otherwise (:func:`done_runs` does).
    """

    name: str
    spec_from_dict: Callable[[dict], Any]
    plan: Callable[[Any], Sequence[Sequence[Unit]]]
    collect: Callable[[Store, Any], Any]

    def units(self, spec) -> list[Unit]:
        """Every unit of every stage, in order."""
        return [u for stage in self.plan(spec) for u in stage]


_EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment) -> Experiment:
    """Register ``experiment`` under its name (again the same object: no-op; another one: ConfigError)."""
    if not isinstance(experiment, Experiment) or not experiment.name:
        raise ConfigError(f"register_experiment: expected an Experiment with a name, got {experiment!r}")
    if _EXPERIMENTS.get(experiment.name, experiment) is not experiment:
        raise ConfigError(f"register_experiment: {experiment.name!r} is already registered")
    _EXPERIMENTS[experiment.name] = experiment
    return experiment


def _load_builtin() -> None:
    # The library's experiments register themselves on import; a store naming one must find it
    # even when nothing imported its module yet (e.g. ``layer-sim report``).
    import layer_sim.experiments.correlations  # noqa: F401
    import layer_sim.experiments.gradient_study  # noqa: F401
    import layer_sim.experiments.learning_dynamics  # noqa: F401
    import layer_sim.experiments.pruning  # noqa: F401
    import layer_sim.experiments.sanity  # noqa: F401
    import layer_sim.experiments.seeds  # noqa: F401
    import layer_sim.experiments.table2_study  # noqa: F401


def get_experiment(name: str) -> Experiment:
    """The experiment registered as ``name``."""
    _load_builtin()
    try:
        return _EXPERIMENTS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f"experiment: unknown experiment {name!r}; registered: "
                               f"{', '.join(experiment_names()) or 'none'}") from None


def experiment_names() -> list[str]:
    """The registered experiments, sorted."""
    _load_builtin()
    return sorted(_EXPERIMENTS)


def experiment_key(name: str, spec) -> str:
    """``content_key("experiment", KEY_VERSION, {"name": name, "spec": spec.to_dict()})``: 24 hex digits."""
    return content_key("experiment", KEY_VERSION, {"name": name, "spec": spec.to_dict()})


def run_experiment(
    experiment: Experiment | str,
    spec,
    store: Store | str | os.PathLike,
    executor: Executor | None = None,
    *,
    command: Sequence[str] | None = None,
    device: str = "cpu",
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    retries: int = 1,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> list[SweepSummary]:
    """Record ``experiment`` with ``spec`` in ``store`` and run its stages there, each with :func:`run_sweep`.

    Every stage is one sweep on the same executor (its workers start once), recorded with
    ``command`` and the experiment's key. Units already done are skipped, so calling this again
    after an interruption finishes the experiment without redoing anything. The result is then
    :func:`collect_experiment` ``(experiment, spec, store)``.

    Parameters
    ----------
    experiment : Experiment or str
        The experiment or its registered name.
    spec
        Its spec (``to_dict()`` is recorded).
    store : Store or path-like
        A store opened for writing, or its path (created if missing).
    executor : Executor or None
        Where units run (:func:`~layer_sim.runs.make_executor`); None: in this process.
    command, device, data_dir, cache_dir, retries, progress, log
        As in :func:`~layer_sim.runs.run_sweep`; ``log`` also gets one line per stage.

    Returns
    -------
    list of SweepSummary
        One per stage.

    Raises
    ------
    UnitsFailedError
        After a stage in which some units failed every attempt (their errors are in the store:
        ``layer-sim runs list --status failed``); later stages are not run.
    """
    if isinstance(experiment, str):
        experiment = get_experiment(experiment)
    key = experiment_key(experiment.name, spec)
    stages = [list(stage) for stage in experiment.plan(spec)]
    executor = executor or SerialExecutor()
    say = log or (lambda _line: None)
    sweep = dict(command=command, device=device, data_dir=data_dir, cache_dir=cache_dir, retries=retries,
                 progress=progress, log=log, experiment=key)

    def run(s: Store) -> list[SweepSummary]:
        s.record_experiment(key, name=experiment.name, spec_json=canonical_json(spec.to_dict()))
        summaries = []
        with executor:
            for k, units in enumerate(stages, start=1):
                say(f"{experiment.name}: stage {k} of {len(stages)}, {len(units)} units")
                summary = run_sweep(units, s, executor, **sweep)
                summaries.append(summary)
                if summary.failed:
                    first_key, first = next(iter(summary.failures.items()))
                    raise UnitsFailedError(
                        f"{experiment.name}: {summary.failed} of {summary.total} units of stage {k} failed "
                        f"(first: {first_key[:12]}: {first}); see layer-sim runs list --store {s.path} --status failed, "
                        "and rerun to retry them")
        return summaries

    if isinstance(store, Store):
        return run(store)
    with Store(store, write=True) as opened:
        return run(opened)


def collect_experiment(experiment: Experiment, spec, store: Store | str | os.PathLike):
    """``experiment.collect(store, spec)`` on an open Store as it is, or on the store at a path, opened for the call."""
    if isinstance(store, Store):
        return experiment.collect(store, spec)
    with Store(store) as opened:
        return experiment.collect(opened, spec)


def done_runs(store: Store, units: Sequence[Unit], *, what: str) -> list[RunRecord]:
    """The store's record of every unit, in order; :class:`IncompleteError` if any is not done.

    ``what`` names the result being collected, for the message.
    """
    records, missing = [], []
    with store.snapshot():
        statuses = dict(zip(*(store.runs()[c] for c in ("key", "status"))))
        for unit in units:
            if statuses.get(unit.key) != "done":
                missing.append((unit, statuses.get(unit.key, "not planned")))
            else:
                records.append(store.run(unit.key))
    if missing:
        unit, status = missing[0]
        raise IncompleteError(
            f"{what}: {len(missing)} of {len(units)} units are not done in {store.path} (first: {unit.kind} "
            f"{unit.key[:12]}, {status}); run the experiment's command again to finish it")
    return records
