"""Summary statistics across seeds: mean, standard deviation, t confidence interval, one-sided t-test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st

from layer_sim._options import Real, check, strict_signature
from layer_sim.errors import InputError

__all__ = ["SeedSummary", "summarize"]


@dataclass(frozen=True)
class SeedSummary:
    r"""Mean of :math:`n` per-seed values with a t confidence interval and a one-sided t-test.

    Attributes
    ----------
    values : tuple of float
        The per-seed values :math:`x_1, \dots, x_n`.
    mean, std : float
        :math:`\bar x` and the sample standard deviation :math:`s` (``ddof=1``).
    ci_low, ci_high : float
        :math:`\bar x \mp t_{1-\alpha/2,\,n-1}\, s/\sqrt n` at level ``confidence``.
    threshold : float
        :math:`\mu_0` of :math:`H_0\colon \mu \le \mu_0` against :math:`H_1\colon \mu > \mu_0`.
    t, df, p_value : float, int, float
        :math:`t = (\bar x - \mu_0)/(s/\sqrt n)`, :math:`n - 1`, and
        :math:`p = P(T_{n-1} \ge t)`.
    """

    values: tuple[float, ...]
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float
    threshold: float
    t: float
    df: int
    p_value: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["values"] = list(self.values)
        return d


@strict_signature
def summarize(values: Sequence[float], *, threshold: float, confidence: float = 0.95) -> SeedSummary:
    r"""One-sample summary of per-seed values: mean, std, t CI and one-sided t-test against ``threshold``.

    Tests :math:`H_0\colon \mu \le \mu_0` against :math:`H_1\colon \mu > \mu_0` with

    .. math::

        t = \frac{\bar x - \mu_0}{s / \sqrt n}, \qquad p = 1 - F_{t,\,n-1}(t),

    and reports the two-sided interval :math:`\bar x \pm t_{1-\alpha/2,\,n-1}\, s / \sqrt n`
    (Student, 1908). Equivalent to ``scipy.stats.ttest_1samp(values, threshold,
    alternative="greater")``.

    Parameters
    ----------
    values : sequence of float
        At least two finite values (e.g. test accuracy per seed).
    threshold : float
        :math:`\mu_0`.
    confidence : float in (0, 1), default=0.95
        Level of the confidence interval.

    Returns
    -------
    SeedSummary

    Raises
    ------
    InputError
        ``values`` is not a 1-D sequence of numbers, has fewer than two values, non-finite
        values, or all values equal (then :math:`s = 0` and :math:`t` is undefined).
    ConfigError
        ``threshold`` is not a finite number (NaN would make t and p NaN), or ``confidence`` is
        not in (0, 1).

    References
    ----------
    Student. The probable error of a mean. Biometrika 6(1), 1908.
    """
    threshold = check("summarize", "threshold", Real(), threshold)
    confidence = check("summarize", "confidence", Real(0, 1, low_open=True, high_open=True), confidence)
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"summarize: values must be a sequence of numbers, got {values!r}") from None
    if x.ndim != 1:
        raise InputError(f"summarize: values must be one number per seed (a 1-D sequence), got shape {x.shape}")
    if x.size < 2:
        raise InputError(f"summarize: need at least 2 values for a t-test, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"summarize: values contain NaN or Inf: {x.tolist()}")
    n = x.size
    mean = float(x.mean())
    std = float(x.std(ddof=1))
    # Compare values, not std: the mean of equal floats can be an ulp off, giving std ~ 1e-17.
    if np.ptp(x) == 0.0:
        raise InputError(f"summarize: all {n} values equal {mean}; the t statistic is undefined")
    se = std / math.sqrt(n)
    df = n - 1
    t = (mean - threshold) / se
    p = float(_st.t.sf(t, df))
    half = float(_st.t.ppf(0.5 + confidence / 2, df)) * se
    return SeedSummary(
        values=tuple(float(v) for v in x), mean=mean, std=std, ci_low=mean - half, ci_high=mean + half,
        confidence=confidence, threshold=float(threshold), t=float(t), df=df, p_value=p,
    )  # fmt: skip
