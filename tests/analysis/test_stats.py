"""summarize(): one-sided one-sample t-test and t confidence interval, against scipy and by hand."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from layer_sim.errors import InputError
from layer_sim.analysis.stats import summarize


def test_hand_computed_case_with_two_degrees_of_freedom():
    # x = (0, 1, 2): mean 1, s = 1, se = 1/sqrt(3); H0: mu <= 0 -> t = sqrt(3), df = 2.
    # Student t with 2 df has closed forms: F(t) = 1/2 + t / (2 sqrt(2 + t^2)) and
    # F^{-1}(q) = (2q - 1) / sqrt(2 q (1 - q)).
    s = summarize([0.0, 1.0, 2.0], threshold=0.0)
    assert s.mean == 1.0 and s.std == 1.0 and s.df == 2
    assert s.t == pytest.approx(math.sqrt(3), rel=1e-12)
    assert s.p_value == pytest.approx(0.5 - math.sqrt(3) / (2 * math.sqrt(5)), rel=1e-10)
    q = 0.975
    half = (2 * q - 1) / math.sqrt(2 * q * (1 - q)) / math.sqrt(3)
    assert s.ci_low == pytest.approx(1 - half, rel=1e-10)
    assert s.ci_high == pytest.approx(1 + half, rel=1e-10)


def test_accuracy_like_case_matches_scipy():
    acc = [0.9841, 0.9835, 0.9852, 0.9829, 0.9847]
    s = summarize(acc, threshold=0.98)
    ref = stats.ttest_1samp(acc, 0.98, alternative="greater")
    assert s.t == pytest.approx(ref.statistic, rel=1e-12)
    assert s.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert s.df == ref.df == 4
    assert s.p_value < 0.05
    assert s.std == pytest.approx(np.std(acc, ddof=1), rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=12, unique=True),
    st.floats(-50, 50),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_matches_scipy_ttest_and_interval(values, threshold, confidence):
    if np.std(values) < 1e-6:
        return
    s = summarize(values, threshold=threshold, confidence=confidence)
    ref = stats.ttest_1samp(values, threshold, alternative="greater")
    assert s.t == pytest.approx(ref.statistic, rel=1e-9, abs=1e-9)
    assert s.p_value == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
    ci = stats.ttest_1samp(values, threshold).confidence_interval(confidence)
    assert s.ci_low == pytest.approx(ci.low, rel=1e-9, abs=1e-9)
    assert s.ci_high == pytest.approx(ci.high, rel=1e-9, abs=1e-9)


def test_to_dict_is_json_ready():
    d = summarize([1.0, 2.0, 4.0], threshold=1.0).to_dict()
    assert d["values"] == [1.0, 2.0, 4.0]
    assert set(d) >= {"mean", "std", "ci_low", "ci_high", "t", "df", "p_value", "threshold"}


@pytest.mark.parametrize(
    ("values", "kwargs", "match"),
    [
        ([0.99], {}, "at least 2 values"),
        ([0.99, float("nan")], {}, "NaN or Inf"),
        ([0.99, 0.99, 0.99], {}, "all 3 values equal"),
    ],
)
def test_degenerate_input_raises(values, kwargs, match):
    with pytest.raises(InputError, match=match):
        summarize(values, threshold=0.98, **kwargs)
