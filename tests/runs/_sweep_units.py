"""Test-only unit kinds, importable by spawned and Ray workers (their module is found by name).

Every value a unit returns is a closed-form function of its spec, so a test can derive the
expected store contents without running any unit.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

from layer_sim.runs import UnitResult, unit_kind


def expected_metrics(spec: dict) -> dict[str, float]:
    """What ``test.compute`` returns for ``spec``: written out independently of the unit below."""
    i = spec["i"]
    return {"square": float(i * i), "harmonic": sum(1.0 / (k + 1) for k in range(i + 1))}


def expected_curve(spec: dict) -> list[dict]:
    return [{"step": s, "loss": 1.0 / (1 + s + spec["i"])} for s in range(spec.get("steps", 3))]


@unit_kind("test.compute")
def compute(spec, context):
    """Sleep ``spec["sleep"]`` seconds (default 0), then return closed-form metrics, a curve and an artefact."""
    time.sleep(spec.get("sleep", 0.0))
    i = spec["i"]
    harmonic = 0.0
    for k in range(i + 1):
        harmonic += 1.0 / (k + 1)
    (context.output_dir / "value.txt").write_text(f"{i}\n")
    curve = [{"step": s, "loss": 1.0 / (1 + s + i)} for s in range(spec.get("steps", 3))]
    return UnitResult(metrics={"square": i ** 2, "harmonic": harmonic}, histories={"curve": curve},
                      artefacts={"value": "value.txt"})


@unit_kind("test.fail")
def fail(spec, context):
    """Always raises."""
    raise ValueError(f"unit {spec['i']} refuses to run")


@unit_kind("test.flaky")
def flaky(spec, context):
    """Fails on its first attempt of a sweep, succeeds on the next."""
    if context.attempt == 1:
        raise RuntimeError("first attempt fails")
    return UnitResult(metrics={"attempt": context.attempt})


@unit_kind("test.die")
def die(spec, context):
    """Kills its own worker process with SIGKILL (as the OOM killer or ``kill -9`` would)."""
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # not reached: SIGKILL cannot be caught


@unit_kind("test.threads")
def threads(spec, context):
    """Reports the torch threads it runs with and the worker process id."""
    import torch

    return UnitResult(metrics={"torch_threads": torch.get_num_threads(), "pid": os.getpid(),
                               "context_threads": -1 if context.threads is None else context.threads})


@unit_kind("test.interrupt")
def interrupt(spec, context):
    """Raises KeyboardInterrupt when ``spec["interrupt"]``: Ctrl-C arriving while this unit runs."""
    if spec.get("interrupt"):
        raise KeyboardInterrupt
    return UnitResult(metrics={"i": spec["i"]})


@unit_kind("test.bad_result")
def bad_result(spec, context):
    """Returns what ``spec["what"]`` says: a NaN metric, a missing artefact, a non-object row, a dict."""
    what = spec["what"]
    if what == "nan":
        return UnitResult(metrics={"loss": math.nan})
    if what == "bool":
        return UnitResult(metrics={"ok": True})
    if what == "missing_artefact":
        return UnitResult(artefacts={"model": "model.pt"})
    if what == "row":
        return UnitResult(histories={"curve": [1.0, 2.0]})
    if what == "reserved":
        return UnitResult(histories={"curve": [{"history": 1, "key": 2, "loss": 0.5}]})
    if what == "leftover":  # reports what an earlier attempt left in its directory
        found = sorted(p.name for p in Path(context.output_dir).iterdir())
        (context.output_dir / f"attempt-{context.attempt}").write_text("x")
        if context.attempt == 1:
            raise RuntimeError("fail after writing")
        return UnitResult(metrics={"leftovers": len(found)})
    return {"loss": 1.0}
