"""pearson / correlation_table against scipy.stats.pearsonr, on data with a known correlation, and the
bootstrap interval against Fisher's interval and its coverage."""

import numpy as np
import pytest
from scipy import stats

from layer_sim.analysis.correlation import correlation_table, pearson
from layer_sim.errors import ConfigError, DegenerateInputError, InputError, UnknownNameError


def _bivariate(rho, n, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    return z[:, 0], rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1]


@pytest.mark.parametrize("n, rho, seed", [(5, 0.3, 0), (40, -0.7, 1), (400, 0.05, 2)])
def test_r_and_p_are_scipys(n, rho, seed):
    x, y = _bivariate(rho, n, seed)
    ours, ref = pearson(x, y, n_boot=200), stats.pearsonr(x, y)
    assert abs(ours.r - ref.statistic) <= 1e-15 and abs(ours.p_value - ref.pvalue) <= 1e-15
    xc, yc = x - x.mean(), y - y.mean()
    assert abs(ours.r - xc @ yc / np.sqrt((xc @ xc) * (yc @ yc))) <= 1e-12  # the definition


def test_known_correlation_is_recovered_and_the_interval_matches_fishers():
    x, y = _bivariate(0.6, 3000, seed=3)
    c = pearson(x, y, n_boot=4000, seed=1)
    assert abs(c.r - 0.6) < 0.03 and c.ci_low < 0.6 < c.ci_high and c.p_value < 1e-100
    fisher = stats.pearsonr(x, y).confidence_interval(0.95)  # normal theory, for large n
    assert abs(c.ci_low - fisher.low) < 0.01 and abs(c.ci_high - fisher.high) < 0.01
    assert (c.n, c.n_boot, c.confidence) == (3000, 4000, 0.95)


def test_bootstrap_interval_covers_the_true_correlation_about_95_percent_of_the_time():
    intervals = [pearson(*_bivariate(0.5, 60, seed=100 + k), n_boot=1000, seed=k) for k in range(150)]
    covered = sum(c.ci_low < 0.5 < c.ci_high for c in intervals)
    # Percentile intervals undercover slightly at n = 60; 150 trials: 95 % +- 2 sd is about 90-99 %.
    assert 0.88 <= covered / 150 <= 0.99


def test_the_interval_is_the_percentile_of_resampled_r_and_is_seeded():
    x, y = _bivariate(0.4, 30, seed=5)
    c = pearson(x, y, n_boot=300, seed=7)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 30, size=(300, 30))
    boot = [np.corrcoef(x[i], y[i])[0, 1] for i in idx]  # plain loop, numpy's own r
    assert np.isclose(c.ci_low, np.quantile(boot, 0.025), atol=1e-12)
    assert np.isclose(c.ci_high, np.quantile(boot, 0.975), atol=1e-12)
    assert pearson(x, y, n_boot=300, seed=7) == c and pearson(x, y, n_boot=300, seed=8) != c


def test_resamples_with_a_constant_variable_are_left_out():
    x = np.array([0, 0, 0, 0, 0, 0, 0, 1.0])  # many resamples contain no 1
    y = np.arange(8.0)
    c = pearson(x, y, n_boot=1000, seed=0)
    assert c.n_boot < 1000 and np.isfinite(c.ci_low) and c.ci_low <= c.r <= c.ci_high


def test_bad_input_is_refused():
    with pytest.raises(DegenerateInputError, match="pearson: y is constant"):
        pearson([1, 2, 3], [4, 4, 4])
    with pytest.raises(InputError, match="same length, got 3 and 2"):
        pearson([1, 2, 3], [1, 2])
    with pytest.raises(InputError, match="at least 3 pairs, got 2"):
        pearson([1, 2], [2, 1])
    with pytest.raises(InputError, match="x contains 1 NaN or infinite values"):
        pearson([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ConfigError, match="n_boot must be an integer >= 100, got 10"):
        pearson([1, 2, 3], [1, 3, 2], n_boot=10)
    with pytest.raises(ConfigError, match="confidence must be a finite number in"):
        pearson([1, 2, 3], [1, 3, 2], confidence=1.0)


def test_correlation_table_rows_columns_and_diagonal():
    x, y = _bivariate(0.3, 50, seed=9)
    cols = {"x": x, "y": y, "z": x + y}
    table = correlation_table(cols, ["x", "y", "z"], ["x", "z"], n_boot=200)
    assert [(t["row"], t["col"]) for t in table] == [("x", "x"), ("x", "z"), ("y", "x"), ("y", "z"), ("z", "x"),
                                                     ("z", "z")]  # fmt: skip
    diag = table[0]
    assert diag["r"] == pytest.approx(1.0) and diag["ci_low"] == pytest.approx(1.0) and diag["p_value"] == 0.0
    assert table[2]["r"] == pytest.approx(stats.pearsonr(y, x).statistic, abs=1e-15)
    with pytest.raises(UnknownNameError, match=r"no column\(s\) \['w'\]"):
        correlation_table(cols, ["w"], ["x"])
