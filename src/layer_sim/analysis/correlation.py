r"""Pearson correlations with p-values and seeded bootstrap confidence intervals, one pair or a whole table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st

from layer_sim._options import Int, Real, check_options, strict_signature
from layer_sim.errors import DegenerateInputError, InputError, UnknownNameError

__all__ = ["Correlation", "pearson", "correlation_table"]


@strict_signature
@dataclass(frozen=True)
class Correlation:
    r"""Pearson's :math:`r` of :math:`n` pairs, its two-sided p-value and a bootstrap interval.

    Attributes
    ----------
    r : float
        :math:`r = \sum (x_i - \bar x)(y_i - \bar y) / \sqrt{\sum (x_i - \bar x)^2 \sum (y_i - \bar y)^2}`.
    p_value : float
        Two-sided p-value of :math:`H_0\colon \rho = 0` for bivariate normal data
        (``scipy.stats.pearsonr``: the exact distribution of :math:`r` under :math:`H_0`).
    ci_low, ci_high : float
        Percentile bootstrap interval at level ``confidence``: the :math:`\alpha/2` and
        :math:`1 - \alpha/2` quantiles of :math:`r` over ``n_boot`` resamples of the n pairs
        with replacement (Efron & Tibshirani 1993, ch. 13).
    n, n_boot : int
        Pairs, and resamples for which :math:`r` is defined (a resample in which x or y is
        constant has no :math:`r` and is left out).
    confidence : float
    """

    r: float
    p_value: float
    ci_low: float
    ci_high: float
    n: int
    n_boot: int
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def _check(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise InputError(f"pearson: {name} must be one-dimensional, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"pearson: {name} contains {int((~np.isfinite(a)).sum())} NaN or infinite values")
    return a


def _boot_r(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Pearson r of every resample (rows of ``idx``), NaN where x or y is constant in the resample."""
    xs, ys = x[idx], y[idx]
    xs = xs - xs.mean(axis=1, keepdims=True)
    ys = ys - ys.mean(axis=1, keepdims=True)
    den = np.sqrt((xs * xs).sum(axis=1) * (ys * ys).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xs * ys).sum(axis=1) / den
    r[~(den > 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


@strict_signature
def pearson(x, y, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> Correlation:
    """Pearson correlation of ``x`` and ``y`` with its p-value and a seeded percentile bootstrap interval.

    Parameters
    ----------
    x, y : array-like of shape (n,)
        Paired observations, n >= 3, finite, neither constant.
    n_boot : int >= 100, default=2000
        Bootstrap resamples.
    confidence : float in (0, 1), default=0.95
    seed : int >= 0, default=0
        Seeds ``numpy.random.default_rng`` for the resamples: the same seed gives the same interval.

    Returns
    -------
    Correlation

    Raises
    ------
    InputError
        Unequal lengths, fewer than 3 pairs, NaN/Inf, not one-dimensional.
    DegenerateInputError
        ``x`` or ``y`` is constant (r is undefined).

    References
    ----------
    K. Pearson (1895). B. Efron, R. Tibshirani (1993). An introduction to the bootstrap.

    Examples
    --------
    >>> c = pearson([1, 2, 3, 4, 5], [2, 4, 5, 4, 5], n_boot=200)
    >>> round(c.r, 4), round(c.p_value, 4)
    (0.7746, 0.124)
    """
    opts = check_options("pearson", {"n_boot": Int(100), "confidence": Real(0, 1, low_open=True, high_open=True),
                                     "seed": Int(0)}, {"n_boot": n_boot, "confidence": confidence, "seed": seed})  # fmt: skip
    x, y = _check(x, "x"), _check(y, "y")
    if len(x) != len(y):
        raise InputError(f"pearson: x and y must have the same length, got {len(x)} and {len(y)}")
    if len(x) < 3:
        raise InputError(f"pearson: needs at least 3 pairs, got {len(x)}")
    for name, a in (("x", x), ("y", y)):
        if np.ptp(a) == 0:
            raise DegenerateInputError(f"pearson: {name} is constant ({a[0]:g}); the correlation is undefined")
    res = _st.pearsonr(x, y)
    rng = np.random.default_rng(opts["seed"])
    idx = rng.integers(0, len(x), size=(opts["n_boot"], len(x)))
    boot = _boot_r(x, y, idx)
    boot = boot[np.isfinite(boot)]
    alpha = 1.0 - opts["confidence"]
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2]) if len(boot) else (math.nan, math.nan)
    return Correlation(float(res.statistic), float(res.pvalue), float(low), float(high), len(x), len(boot),
                       opts["confidence"])


@strict_signature
def correlation_table(columns: Mapping[str, Sequence[float]], rows: Sequence[str], cols: Sequence[str], *,
                      n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> list[dict]:  # fmt: skip
    """:func:`pearson` of every ``rows`` variable with every ``cols`` variable of ``columns``.

    Returns
    -------
    list of dict
        One record per (row, col) in order: ``row, col`` and the fields of :class:`Correlation`.
        A variable paired with itself has r = 1 and p = 0 (scipy's value) and the interval [1, 1].

    Examples
    --------
    >>> t = correlation_table({"a": [1, 2, 3, 4], "b": [1, 3, 2, 4]}, ["a", "b"], ["b"], n_boot=200)
    >>> [(d["row"], d["col"], round(d["r"], 2)) for d in t]
    [('a', 'b', 0.8), ('b', 'b', 1.0)]
    """
    missing = sorted((set(rows) | set(cols)) - set(columns))
    if missing:
        raise UnknownNameError(f"correlation_table: no column(s) {missing}; available: {', '.join(columns)}")
    out = []
    for row in rows:
        for col in cols:
            c = pearson(columns[row], columns[col], n_boot=n_boot, confidence=confidence, seed=seed)
            out.append({"row": row, "col": col, **c.to_dict()})
    return out
