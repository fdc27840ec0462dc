"""Units of work run once, recorded on disk, skipped when done: a stand-in for ``layer_sim.runs``.

Until the results store and its sweep driver (``layer_sim.runs.run_sweep``) are merged, the
dynamics experiments run their units here, with the same shape: a unit is ``(kind, spec)``, its
key is ``content_key("unit", 1, {"kind": kind, "spec": spec})`` (the key ``runs.Unit`` gives),
and a unit function ``fn(spec, context) -> UnitOutput`` writes its artefacts into
``context.output_dir``. Each finished unit is one directory ``<root>/units/<key>/`` whose
``result.json`` is written last and atomically, so an interrupted sweep resumes: a directory
without ``result.json`` is run again from scratch.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layer_sim._io import atomic_write, canonical_json, content_key
from layer_sim._progress import progress_bar

__all__ = ["UnitContext", "UnitOutput", "unit_key", "run_units", "finished"]

UNITS_DIR = "units"
_RESULT = "result.json"


@dataclass(frozen=True)
class UnitContext:
    """What a unit function gets besides its spec (the fields of ``runs.UnitContext`` it uses)."""

    key: str
    output_dir: Path
    device: str | None = None


@dataclass(frozen=True)
class UnitOutput:
    """What a unit function returns: scalar ``metrics``, row ``histories`` and ``artefacts`` (file names)."""

    metrics: Mapping[str, float] = field(default_factory=dict)
    histories: Mapping[str, list[dict]] = field(default_factory=dict)
    artefacts: Mapping[str, str] = field(default_factory=dict)


def unit_key(kind: str, spec: Mapping[str, Any]) -> str:
    """24 hex digits naming the unit ``(kind, spec)``, whatever the key order of ``spec``."""
    return content_key("unit", 1, {"kind": kind, "spec": json.loads(canonical_json(spec))})


def run_units(kind: str, fn: Callable[[dict, UnitContext], UnitOutput], specs: Iterable[Mapping[str, Any]],
              root, *, device=None, progress: bool | None = None,
              log: Callable[[str], Any] | None = None) -> dict[str, int]:  # fmt: skip
    """Run ``fn`` on every spec not finished under ``root``; returns ``{"done", "skipped", "seconds"}``."""
    root = Path(root)
    todo, seen = [], set()
    for spec in specs:
        spec = json.loads(canonical_json(spec))
        key = unit_key(kind, spec)
        if key not in seen:
            seen.add(key)
            todo.append((key, spec))
    pending = [(k, s) for k, s in todo if not (root / UNITS_DIR / k / _RESULT).is_file()]
    t0 = time.perf_counter()
    with progress_bar(progress, len(pending), kind) as advance:
        for key, spec in pending:
            out = root / UNITS_DIR / key
            if out.exists():  # an interrupted attempt: start again from an empty directory
                shutil.rmtree(out)
            out.mkdir(parents=True)
            start = time.perf_counter()
            result = fn(spec, UnitContext(key, out, device))
            record = {"kind": kind, "key": key, "spec": spec, "seconds": time.perf_counter() - start,
                      "metrics": dict(result.metrics), "histories": dict(result.histories),
                      "artefacts": dict(result.artefacts)}  # fmt: skip
            text = json.dumps(record, indent=1, allow_nan=False)
            atomic_write(out / _RESULT, lambda fh, text=text: fh.write(text.encode()))
            if log is not None:
                log(f"{kind} {key[:12]}: done in {record['seconds']:.0f} s")
            advance()
    return {"done": len(pending), "skipped": len(todo) - len(pending), "seconds": time.perf_counter() - t0}


def finished(root, kind: str) -> list[dict]:
    """The records of every finished unit of ``kind`` under ``root`` (``spec``, ``metrics``, ``histories``,
    ``artefacts`` as absolute paths), sorted by key."""
    out = []
    for path in sorted((Path(root) / UNITS_DIR).glob(f"*/{_RESULT}")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("kind") == kind:
            record["artefacts"] = {k: str(path.parent / v) for k, v in record["artefacts"].items()}
            out.append(record)
    return out
