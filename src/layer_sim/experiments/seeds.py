"""Across-seed accuracy of one network: train (or reuse) every seed, then a one-sided t-test of the mean."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layer_sim._io import atomic_write, writable_dir
from layer_sim._options import Int, Real, check, strict_signature
from layer_sim.errors import ConfigError
from layer_sim.training.cache import train_or_load
from layer_sim.training.spec import DEFAULT_SPEC, NetworkSpec

if TYPE_CHECKING:
    from layer_sim.analysis.stats import SeedSummary

__all__ = ["SeedsResult", "train_seeds", "THRESHOLD"]

#: What the threshold of the t-test may be: an accuracy.
THRESHOLD = Real(0, 1)


@dataclass(frozen=True)
class SeedsResult:
    """Outcome of :func:`train_seeds`: per-seed accuracy and time, and the across-seed statistics."""

    spec: NetworkSpec
    seeds: list[int]
    test_accuracy: list[float]
    train_seconds: list[float]
    reused: list[bool]
    summary: SeedSummary | None  # None when all accuracies are equal (e.g. one seed) or one is NaN: no t-test

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
def train_seeds(
    seeds: Sequence[int],
    *,
    output,
    spec: NetworkSpec = DEFAULT_SPEC,
    threshold: float = 0.98,
    data_dir=None,
    device=None,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> SeedsResult:
    r"""Train (or reuse) ``spec``'s network for every seed and test mean accuracy > ``threshold``.

    ``output`` is the checkpoint cache of these runs (the layout of
    :func:`~layer_sim.training.train_or_load`: ``output/<spec key>/seed-<k>/``, reused when
    present) and receives ``output/summary.json`` (:meth:`SeedsResult.to_dict`). Networks are
    trained sequentially by :func:`~layer_sim.training.fit`. The statistics are those of
    :func:`layer_sim.analysis.stats.summarize`: mean, std, 95% t interval and the one-sided
    one-sample t-test of :math:`H_0\colon \mu \le` ``threshold``.

    Parameters
    ----------
    seeds : sequence of int
        Distinct seeds >= 0 (parse text such as ``"0-4"`` in the CLI).
    output : path-like
        Output directory (created if needed).
    spec : NetworkSpec, default=DEFAULT_SPEC
    threshold : float in [0, 1], default=0.98
    data_dir, device, progress
        As in :func:`~layer_sim.training.train_or_load`.
    log : callable or None
        Called with one line of text per finished seed.

    Returns
    -------
    SeedsResult
    """
    from layer_sim.analysis.stats import summarize  # scipy: imported only when needed

    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ConfigError(f"train_seeds: seeds must be a non-empty list of integers, got {seeds!r}")
    seeds = [check("train_seeds", "seeds", Int(0), s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"train_seeds: seeds must be distinct, got {seeds}")
    threshold = check("train_seeds", "threshold", THRESHOLD, threshold)
    output = writable_dir(output, what="train_seeds: output")
    accs, secs, reused = [], [], []
    for seed in seeds:
        start = time.perf_counter()
        ckpt = train_or_load(spec, seed, cache_dir=output, data_dir=data_dir, device=device, progress=progress)
        accs.append(float(ckpt.meta["metrics"]["test_accuracy"]))
        secs.append(float(ckpt.meta["metrics"]["train_seconds"]))
        reused.append(bool(ckpt.meta["reused"]))
        if log is not None:
            how = "reused" if reused[-1] else f"trained in {time.perf_counter() - start:.0f} s"
            log(f"seed {seed}: test accuracy {accs[-1]:.4f} ({how})")
    # A t-test needs two differing, finite values (a task without a test split has NaN accuracy);
    # report None rather than failing after training.
    testable = len(set(accs)) > 1 and all(math.isfinite(a) for a in accs)
    summary = summarize(accs, threshold=threshold) if testable else None
    result = SeedsResult(spec, seeds, accs, secs, reused, summary)
    text = json.dumps(result.to_dict(), indent=2, allow_nan=False)
    atomic_write(output / "summary.json", lambda fh: fh.write(text.encode()))
    return result


def _finite(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x
