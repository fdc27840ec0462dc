"""Generic execution of experiments: units of work, one sweep driver, executors (in-process, local pool, Ray).

Knows no experiment: an experiment registers its unit kinds with :func:`unit_kind`, plans
:class:`Unit` objects and hands them to :func:`run_sweep` with a store and an executor; it then reads
its results back from the store. The Ray executor lives in :mod:`layer_sim.runs.ray` (optional extra).
"""

from layer_sim.runs.executors import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_WORKERS,
    Executor,
    LocalPoolExecutor,
    SerialExecutor,
    make_executor,
)
from layer_sim.runs.spec import Unit, UnitContext, UnitResult, kinds, unit_kind
from layer_sim.runs.sweep import SweepInterrupted, SweepSummary, run_sweep

__all__ = [
    "Unit",
    "UnitResult",
    "UnitContext",
    "unit_kind",
    "kinds",
    "run_sweep",
    "SweepSummary",
    "SweepInterrupted",
    "Executor",
    "SerialExecutor",
    "LocalPoolExecutor",
    "make_executor",
    "BACKENDS",
    "DEFAULT_WORKERS",
    "DEFAULT_BACKEND",
]
