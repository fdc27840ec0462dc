"""Units of work: a registered kind, a JSON spec and the content key of both.

A unit is everything a worker needs to run one piece of an experiment (one training run, one
comparison): ``kind`` names a function registered with :func:`unit_kind`, ``spec`` is the JSON
object it receives, and ``key`` hashes the two, so the same work always has the same key in the
store and a finished key is never run again.

The registry maps each kind to the function's import path ``"module:qualname"``. A worker process
(spawned, or on another machine under Ray) imports that path itself: it needs none of the
driver's state, only the same code installed.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import numbers
import os
import platform
import shutil
import socket
import time
import traceback as tb
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from layer_sim._io import canonical_json, content_key
from layer_sim._options import strict_signature
from layer_sim.errors import ConfigError, UnknownNameError
from layer_sim.store._schema import HISTORY_COLUMNS
from layer_sim.store.sqlite import now_utc

__all__ = [
    "VERSION",
    "Unit",
    "UnitResult",
    "UnitContext",
    "unit_kind",
    "kinds",
    "kind_target",
    "Task",
    "Outcome",
    "execute",
    "failed_outcome",
]

#: Version of the unit key: bump when the meaning of ``(kind, spec)`` changes for every kind.
VERSION = 1

UnitFunction = Callable[[dict, "UnitContext"], "UnitResult"]

_KINDS: dict[str, str] = {}  # kind -> "module:qualname"
_FUNCTIONS: dict[str, "UnitFunction"] = {}  # "module:qualname" -> the function registered in this process


# ---------------------------------------------------------------------------- the registry


@strict_signature
def unit_kind(name: str) -> Callable[[UnitFunction], UnitFunction]:
    """Register the decorated module-level function ``fn(spec, context) -> UnitResult`` as ``name``.

    The function is recorded by import path, so it must be importable (defined at module level,
    not in a function or ``__main__`` of a script that workers cannot import). Registering the
    same function again (a worker importing the module) is a no-op; another function under a
    taken name is a :class:`~layer_sim.errors.ConfigError`.

    Examples
    --------
    >>> @unit_kind("doc.square")
    ... def square(spec, context):
    ...     return UnitResult(metrics={"y": spec["x"] ** 2})
    >>> "doc.square" in kinds()
    True
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"unit_kind: name must be a non-empty string, got {name!r}")

    def register(fn: UnitFunction) -> UnitFunction:
        module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
        if not callable(fn) or module is None or "<" in qualname:
            raise ConfigError(f"unit_kind {name!r}: {fn!r} must be a module-level function (workers import it by name)")
        target = f"{module}:{qualname}"
        if _KINDS.get(name, target) != target:
            raise ConfigError(f"unit_kind {name!r}: already registered as {_KINDS[name]}, not {target}")
        _KINDS[name] = target
        _FUNCTIONS[target] = fn
        return fn

    return register


@strict_signature
def kinds() -> list[str]:
    """The registered kinds, sorted."""
    return sorted(_KINDS)


def kind_target(kind: str) -> str:
    """The ``"module:qualname"`` registered for ``kind``."""
    try:
        return _KINDS[kind]
    except (KeyError, TypeError):
        raise UnknownNameError(f"kind: unknown unit kind {kind!r}; registered: {', '.join(kinds()) or 'none'} "
                               "(import the module that defines it first)") from None


def _resolve(target: str) -> UnitFunction:
    # In the process that registered it (the driver, in-process) the function itself; in a worker,
    # importing its module registers it (and the import path is all a worker gets).
    if target in _FUNCTIONS:
        return _FUNCTIONS[target]
    module, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------- units


def _check_json_object(where: str, value: Any) -> dict:
    """``value`` as the dict its canonical JSON decodes to; refuse what JSON would change or cannot hold."""

    def walk(v, path):
        if isinstance(v, Mapping):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise ConfigError(f"{where}: key {k!r} at {path} is not a string (JSON object keys are strings)")
                walk(item, f"{path}.{k}")
        elif isinstance(v, (list, tuple)):
            for i, item in enumerate(v):
                walk(item, f"{path}[{i}]")
        elif isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{where}: {v!r} at {path} is not JSON (no NaN or infinity)")
        elif not (v is None or isinstance(v, (str, bool, int, float))):
            raise ConfigError(f"{where}: {type(v).__name__} value {v!r} at {path} is not JSON")

    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a JSON object (a dict), got {type(value).__name__}")
    walk(value, "$")
    return json.loads(canonical_json(value))


@strict_signature
@dataclass(frozen=True)
class Unit:
    """One unit of work: ``kind`` (registered with :func:`unit_kind`), a JSON ``spec`` and its ``key``.

    ``key = content_key("unit", VERSION, {"kind": kind, "spec": spec})``: 24 hex digits of SHA-256
    over the canonical JSON, so equal specs give equal keys whatever their key order. ``spec`` is
    stored as its JSON round trip (tuples become lists), exactly what the function will receive.

    Raises
    ------
    UnknownNameError
        ``kind`` is not registered.
    ConfigError
        ``spec`` is not a JSON object: a non-string key, NaN/infinity, or a value JSON cannot hold.

    Examples
    --------
    >>> @unit_kind("doc.add")
    ... def add(spec, context):
    ...     return UnitResult(metrics={"sum": spec["a"] + spec["b"]})
    >>> u = Unit("doc.add", {"b": 2, "a": 1})
    >>> u.key == Unit("doc.add", {"a": 1, "b": 2}).key, len(u.key)
    (True, 24)
    """

    kind: str
    spec: dict
    key: str = field(init=False)

    def __post_init__(self) -> None:
        kind_target(self.kind)
        spec = _check_json_object("spec", self.spec)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "key", content_key("unit", VERSION, {"kind": self.kind, "spec": spec}))

    @property
    def spec_json(self) -> str:
        """The spec in canonical JSON, as stored."""
        return canonical_json(self.spec)


@dataclass(frozen=True)
class UnitContext:
    """What a unit function gets besides its spec.

    Attributes
    ----------
    key : str
        The unit's key.
    output_dir : Path
        The unit's own, freshly emptied directory for artefacts (``<store dir>/artefacts/<key>``).
    device : str
        The torch device the sweep asked for (e.g. ``"cpu"``, ``"cuda"``).
    threads : int or None
        torch intra-op threads of this worker (set by the executor), ``None`` in-process, where the
        caller's setting is left alone.
    attempt : int
        1 for the first attempt, 2 for the first retry, ...
    data_dir, cache_dir : str or None
        Absolute MNIST directory and checkpoint cache of the sweep (``run_sweep(data_dir=...,
        cache_dir=...)``); None means the defaults of :mod:`layer_sim.settings` in the worker.
    """

    key: str
    output_dir: Path
    device: str = "cpu"
    threads: int | None = None
    attempt: int = 1
    data_dir: str | None = None
    cache_dir: str | None = None


@strict_signature
@dataclass(frozen=True)
class UnitResult:
    """What a unit function returns: scalar ``metrics``, per-step ``histories`` and ``artefacts``.

    ``histories`` maps a name to a table given as a list of rows (JSON objects, e.g. one per
    epoch); ``artefacts`` maps a name to a file the unit wrote, absolute or relative to its
    ``context.output_dir``. Checked in the worker (:func:`execute`): metrics must be finite numbers,
    rows JSON objects, artefacts existing files.
    """

    metrics: Mapping[str, float] = field(default_factory=dict)
    histories: Mapping[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    artefacts: Mapping[str, str | os.PathLike] = field(default_factory=dict)


def _check_result(result: Any, output_dir: Path) -> tuple[dict[str, float], dict[str, list[dict]], dict[str, str]]:
    if not isinstance(result, UnitResult):
        raise ConfigError(f"unit function returned {type(result).__name__}, expected UnitResult")
    metrics = {}
    for name, value in dict(result.metrics).items():
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if not isinstance(name, str) or not name or not ok:
            raise ConfigError(f"UnitResult.metrics: {name!r} = {value!r}; names are non-empty strings, values finite numbers")
        metrics[name] = float(value)
    histories = {}
    for name, table in dict(result.histories).items():
        if not isinstance(name, str) or not name or not isinstance(table, (list, tuple)):
            raise ConfigError(f"UnitResult.histories: {name!r} must be a non-empty name mapping to a list of rows")
        histories[name] = [_check_json_object(f"UnitResult.histories[{name!r}][{i}]", row) for i, row in enumerate(table)]
        reserved = sorted({k for row in histories[name] for k in row} & set(HISTORY_COLUMNS))
        if reserved:
            raise ConfigError(f"UnitResult.histories[{name!r}]: field name(s) {', '.join(reserved)} are reserved "
                              f"for the store's long format ({', '.join(HISTORY_COLUMNS)}); rename them")
    artefacts = {}
    for name, path in dict(result.artefacts).items():
        path = Path(path) if Path(path).is_absolute() else output_dir / path
        if not isinstance(name, str) or not name or not path.is_file():
            raise ConfigError(f"UnitResult.artefacts: {name!r} -> {path} is not an existing file")
        artefacts[name] = str(path)
    return metrics, histories, artefacts


# ---------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class Task:
    """What the driver sends a worker: the unit, the import path of its function and its context."""

    unit: Unit
    target: str
    context: UnitContext


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back: results (``ok``) or the error of one attempt, with timings and versions."""

    key: str
    ok: bool
    metrics: dict[str, float] = field(default_factory=dict)
    histories: dict[str, list[dict]] = field(default_factory=dict)
    artefacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    worker: str | None = None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _versions() -> tuple[tuple[str, str | None], ...]:
    found = {"layer_sim": _version("layer-sim"), "torch": _version("torch"), "numpy": _version("numpy"),
             "python": platform.python_version()}
    return tuple(found.items())


def versions() -> dict[str, str | None]:
    """Versions of layer_sim, torch, numpy and Python in this process (package metadata, read once; imports nothing)."""
    return dict(_versions())


def worker_name() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def failed_outcome(task: Task, error: str, *, worker: str | None = None) -> Outcome:
    """The outcome of an attempt that never reported back (its worker died or was lost)."""
    return Outcome(key=task.unit.key, ok=False, error=error, worker=worker)


def execute(task: Task) -> Outcome:
    """Run one task in this process and return its outcome; an exception becomes a failed outcome.

    The unit's output directory is emptied first, so what an interrupted earlier attempt left
    there cannot mix with this attempt's artefacts. ``KeyboardInterrupt`` and ``SystemExit`` are
    not caught: they stop the sweep, not the unit.
    """
    started, t0 = now_utc(), time.perf_counter()
    try:
        fn = _resolve(task.target)
        if task.context.threads is not None:  # pool workers also set it when they start; Ray workers only here
            import torch

            torch.set_num_threads(task.context.threads)
        out = Path(task.context.output_dir)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        metrics, histories, artefacts = _check_result(fn(task.unit.spec, task.context), out)
    except Exception as exc:
        return Outcome(key=task.unit.key, ok=False, error=_one_line(exc), traceback=tb.format_exc(),
                       started=started, finished=now_utc(), seconds=time.perf_counter() - t0,
                       versions=versions(), worker=worker_name())
    return Outcome(key=task.unit.key, ok=True, metrics=metrics, histories=histories, artefacts=artefacts,
                   started=started, finished=now_utc(), seconds=time.perf_counter() - t0,
                   versions=versions(), worker=worker_name())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
