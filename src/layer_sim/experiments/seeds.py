"""Across-seed accuracy of one network: one ``network.train`` unit per seed, then a one-sided t-test of the mean.

Planned as one stage of units (:func:`plan`), run by the sweep driver; :func:`collect` reads the
accuracies back from the results store and computes the statistics.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from layer_sim._options import Int, Real, check, strict_signature
from layer_sim.errors import ConfigError
from layer_sim.experiments.driver import Experiment, collect_experiment, done_runs, register_experiment, run_experiment
from layer_sim.experiments.networks import network_unit
from layer_sim.runs import Executor, Unit
from layer_sim.store import Store
from layer_sim.training.spec import DEFAULT_SPEC, NetworkSpec

if TYPE_CHECKING:
    from layer_sim.analysis.stats import SeedSummary

__all__ = ["NAME", "SeedsSpec", "SeedsResult", "plan", "collect", "SEEDS", "train_seeds", "THRESHOLD"]

#: What the threshold of the t-test may be: an accuracy.
THRESHOLD = Real(0, 1)

#: Registered name of the experiment (the store's ``experiments`` table, the report section).
NAME = "train"


@strict_signature
@dataclass(frozen=True)
class SeedsSpec:
    """One network trained from several seeds, and the threshold of the one-sided t-test.

    Examples
    --------
    >>> spec = SeedsSpec(seeds=(0, 2), threshold=0.5)
    >>> SeedsSpec.from_dict(spec.to_dict()) == spec, [u.spec["seed"] for u in plan(spec)[0]]
    (True, [0, 2])
    """

    network: NetworkSpec = DEFAULT_SPEC
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    threshold: float = 0.98

    def __post_init__(self) -> None:
        if not isinstance(self.network, NetworkSpec):
            raise ConfigError(f"train_seeds: spec must be a NetworkSpec, got {type(self.network).__name__}")
        seeds = self.seeds
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
            raise ConfigError(f"train_seeds: seeds must be a non-empty list of integers, got {seeds!r}")
        seeds = tuple(check("train_seeds", "seeds", Int(0), s) for s in seeds)
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"train_seeds: seeds must be distinct, got {list(seeds)}")
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "threshold", check("train_seeds", "threshold", THRESHOLD, self.threshold))

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network.to_dict(), "seeds": list(self.seeds), "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SeedsSpec:
        return cls(NetworkSpec.from_dict(d["network"]), tuple(d["seeds"]), d["threshold"])


@dataclass(frozen=True)
class SeedsResult:
    """Outcome of :func:`train_seeds`: per-seed accuracy and time, and the across-seed statistics."""

    spec: NetworkSpec
    seeds: list[int]
    test_accuracy: list[float]
    train_seconds: list[float]
    reused: list[bool]
    summary: SeedSummary | None  # None when all accuracies are equal (e.g. one seed): no t-test
    histories: list[list[dict]] = field(default_factory=list)  # per seed: fit's rows, one per epoch

    def to_dict(self) -> dict[str, Any]:
        """The content of ``summary.json``: per-seed lists, spec and key, and the summary's fields.

        Non-finite numbers become None, so the result is always valid JSON.
        """
        d: dict[str, Any] = {
            "seeds": self.seeds,
            "test_accuracy": [_finite(a) for a in self.test_accuracy],
            "train_seconds": [_finite(s) for s in self.train_seconds],
            "reused": self.reused,
            "spec": self.spec.to_dict(),
            "key": self.spec.key(),
        }
        stats = self.summary.to_dict() if self.summary is not None else {}
        stats.pop("values", None)  # already stored as test_accuracy
        for name in ("mean", "std", "ci_low", "ci_high", "confidence", "threshold", "t", "df", "p_value"):
            d[name] = _finite(stats.get(name))
        return d


@strict_signature
def plan(spec: SeedsSpec) -> list[list[Unit]]:
    """One stage: a ``network.train`` unit per seed."""
    return [[network_unit(spec.network, s) for s in spec.seeds]]


@strict_signature
def collect(store: Store, spec: SeedsSpec) -> SeedsResult:
    r"""Per-seed accuracies from ``store`` and their statistics (:func:`layer_sim.analysis.stats.summarize`).

    Mean, std, 95% t interval and the one-sided one-sample t-test of
    :math:`H_0\colon \mu \le` ``threshold``; no test (``summary`` None) when every accuracy is equal.
    """
    from layer_sim.analysis.stats import summarize  # scipy: imported only when needed

    records = done_runs(store, plan(spec)[0], what="train")
    accs = [r.metrics["test_accuracy"] for r in records]
    histories = [store.history(r.key, "train").to_dict("records") if r.histories.get("train") else [] for r in records]
    # A t-test needs two differing, finite values (a task without a test split has NaN accuracy);
    # report None rather than failing after training.
    testable = len(set(accs)) > 1 and all(math.isfinite(a) for a in accs)
    summary = summarize(accs, threshold=spec.threshold) if testable else None
    return SeedsResult(spec.network, list(spec.seeds), accs, [r.metrics["train_seconds"] for r in records],
                       [bool(r.metrics["reused"]) for r in records], summary, histories)


#: ``layer-sim train`` as a registered experiment.
SEEDS = register_experiment(Experiment(NAME, SeedsSpec.from_dict, plan, collect))


@strict_signature
def train_seeds(
    seeds: Sequence[int],
    *,
    store: Store | str | os.PathLike,
    spec: NetworkSpec = DEFAULT_SPEC,
    threshold: float = 0.98,
    cache_dir=None,
    executor: Executor | None = None,
    command: Sequence[str] | None = None,
    data_dir=None,
    device=None,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> SeedsResult:
    r"""Train (or reuse) ``spec``'s network for every seed, one unit each, and test mean accuracy > ``threshold``.

    Each seed is a ``network.train`` unit run by the sweep driver into ``store`` (so a rerun
    skips the seeds already done); the networks go to the checkpoint cache ``cache_dir`` in the
    layout of :func:`~layer_sim.training.train_or_load` (``cache_dir/<spec key>/seed-<k>/``,
    reused when present) and are trained by :func:`~layer_sim.training.fit`. The statistics are
    those of :func:`collect`.

    Parameters
    ----------
    seeds : sequence of int
        Distinct seeds >= 0 (parse text such as ``"0-4"`` in the CLI).
    store : Store or path-like
        Results store (created if missing).
    spec : NetworkSpec, default=DEFAULT_SPEC
    threshold : float in [0, 1], default=0.98
    cache_dir : path-like or None
        Checkpoint cache (None: :func:`layer_sim.settings.cache_dir`).
    executor, command, progress, log
        As in :func:`~layer_sim.experiments.run_experiment`.
    data_dir, device
        As in :func:`~layer_sim.training.train_or_load`.

    Returns
    -------
    SeedsResult
    """
    from layer_sim._device import resolve_device

    experiment_spec = SeedsSpec(spec, tuple(seeds) if isinstance(seeds, Sequence) and not isinstance(seeds, str)
                                else seeds, threshold)
    device = resolve_device("train_seeds", device)
    run_experiment(SEEDS, experiment_spec, store, executor, command=command, device=str(device or "cpu"),
                   data_dir=data_dir, cache_dir=cache_dir, progress=progress, log=log)
    return collect_experiment(SEEDS, experiment_spec, store)


def _finite(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x
