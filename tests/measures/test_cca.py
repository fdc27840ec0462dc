"""CCA family (CCA, SVCCA, PWCCA, linear regression), Procrustes and StreamingCCA.

Expected values come from closed forms on constructed data, invariances, or a second algorithm
written here with NumPy (whitened cross-covariance, lstsq, nuclear norm of X^T Y), never from
the library's own output.
"""

import doctest
import importlib
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import layer_sim
from layer_sim import (
    ConfigError,
    DegenerateInputError,
    InputError,
    StreamingCCA,
    UnknownNameError,
    canonical_correlations,
    cca,
    linear_regression,
    procrustes,
    pwcca,
    svcca,
)
from layer_sim.measures import available, get

FEW = settings(max_examples=20, deadline=None)
CCA_NAMES = ["cca_rho", "cca_r2", "svcca_rho", "svcca_r2", "pwcca", "linear_regression", "procrustes"]
PUBLIC = [cca, svcca, pwcca, linear_regression, procrustes]


# --- independent references -----------------------------------------------------------------


def centred(a):
    return a - a.mean(axis=0)


def inv_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v / np.sqrt(w)) @ v.T


def cc_whitened(x, y):
    """Canonical correlations as singular values of Sxx^-1/2 Sxy Syy^-1/2 (full-rank inputs)."""
    xc, yc = centred(x), centred(y)
    m = inv_sqrt(xc.T @ xc) @ (xc.T @ yc) @ inv_sqrt(yc.T @ yc)
    return np.linalg.svd(m, compute_uv=False)[: min(x.shape[1], y.shape[1])]


def orthonormal_centred(rng, n, k):
    """n x k orthonormal columns orthogonal to the ones vector (i.e. centred)."""
    q, _ = np.linalg.qr(np.c_[np.ones(n), rng.standard_normal((n, k))])
    return q[:, 1:]


def well_conditioned(rng, k):
    """Random invertible k x k matrix with condition number <= e^2."""
    q1, _ = np.linalg.qr(rng.standard_normal((k, k)))
    q2, _ = np.linalg.qr(rng.standard_normal((k, k)))
    return (q1 * np.exp(rng.uniform(-1, 1, k))) @ q2


@st.composite
def pair(draw, max_p=6):
    p = draw(st.integers(1, max_p))
    q = draw(st.integers(1, max_p))
    n = draw(st.integers(p + q + 3, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, p)) + rng.uniform(-5, 5, p)
    # y shares some signal with x so correlations are spread over (0, 1)
    y = x @ rng.standard_normal((p, q)) * rng.uniform(0, 1) + rng.standard_normal((n, q))
    return x, y, rng


# --- CCA --------------------------------------------------------------------------------------


@FEW
@given(pair())
def test_canonical_correlations_equal_whitened_covariance_route(data):
    x, y, _ = data
    np.testing.assert_allclose(canonical_correlations(x, y), cc_whitened(x, y), atol=1e-9)


@pytest.mark.parametrize("rho", [[0.9, 0.5, 0.2], [1.0, 0.7, 0.0]])
def test_constructed_canonical_correlations_closed_form(rho):
    rng = np.random.default_rng(1)
    n, k = 60, 3
    q = orthonormal_centred(rng, n, 2 * k + 1)
    u, f, w = q[:, :k], q[:, k : 2 * k], q[:, 2 * k :]
    rho = np.array(rho)
    v = u * rho + f * np.sqrt(1 - rho**2)  # orthonormal with U^T V = diag(rho)
    x = u @ well_conditioned(rng, k) + 3.0
    y = np.c_[v, w] @ well_conditioned(rng, k + 1) - 1.0  # an extra column uncorrelated with x
    np.testing.assert_allclose(canonical_correlations(x, y), rho, atol=1e-12)
    assert cca(x, y) == pytest.approx(rho.mean(), abs=1e-12)
    assert cca(x, y, statistic="r2") == pytest.approx((rho**2).mean(), abs=1e-12)


@FEW
@given(pair())
def test_cca_invariant_to_invertible_linear_maps_and_translation(data):
    x, y, rng = data
    x2 = x @ well_conditioned(rng, x.shape[1]) + rng.uniform(-100, 100, x.shape[1])
    y2 = y @ well_conditioned(rng, y.shape[1]) + rng.uniform(-100, 100, y.shape[1])
    np.testing.assert_allclose(canonical_correlations(x2, y2), canonical_correlations(x, y), atol=1e-9)


@FEW
@given(pair())
def test_symmetric_measures_are_symmetric(data):
    x, y, _ = data
    for f in (cca, svcca, procrustes):
        assert f(x, y) == pytest.approx(f(y, x), abs=1e-12)
    assert cca(x, y, statistic="r2") == pytest.approx(cca(y, x, statistic="r2"), abs=1e-12)
    assert [get(m).symmetric for m in CCA_NAMES] == [True, True, True, True, False, False, True]


@FEW
@given(pair(), st.booleans())
def test_every_measure_in_unit_interval(data, wide):
    x, y, rng = data
    if wide:  # more features than examples: the trivial regime must stay in range too
        x = rng.standard_normal((x.shape[0], x.shape[0] + 3))
    for name in CCA_NAMES:
        v = get(name)(x, y)
        assert 0.0 <= v <= 1.0, (name, v)


def test_p_at_least_n_makes_cca_trivially_one():
    rng = np.random.default_rng(2)
    n = 12
    x, y = rng.standard_normal((n, 15)), rng.standard_normal((n, n - 1))
    rho = canonical_correlations(x, y)
    assert len(rho) == n - 1  # rank capped at n - 1 by centring
    np.testing.assert_allclose(rho, 1.0, atol=1e-9)
    assert linear_regression(x, rng.standard_normal((n, 4))) == pytest.approx(1.0, abs=1e-9)
    # partial overlap: ranks 7 + 7 > n - 1 = 11 forces at least 3 correlations to be 1
    rho = canonical_correlations(rng.standard_normal((n, 7)), rng.standard_normal((n, 7)))
    assert (rho > 1 - 1e-9).sum() >= 3


def test_rank_tolerance_is_max_n_p_eps_relative_to_s_max():
    rng = np.random.default_rng(3)
    n = 50  # rtol = 50 * 2.2e-16 = 1.1e-14
    u = orthonormal_centred(rng, n, 3)
    w, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    y = rng.standard_normal((n, 3))
    assert len(canonical_correlations(u @ np.diag([1.0, 1e-12, 1e-16]) @ w, y)) == 2
    assert len(canonical_correlations(u @ np.diag([1.0, 1e-12, 1e-13]) @ w, y)) == 3
    # An exact linear dependence is rank deficient; a tiny independent direction is not, and
    # CCA (scale invariant) finds the perfect correlation hidden in it.
    a, b, c = rng.standard_normal((3, n, 1))
    assert len(canonical_correlations(np.c_[a, b, a + b], y)) == 2
    assert canonical_correlations(np.c_[a, b, a + 1e-8 * c], c)[0] == pytest.approx(1.0, abs=1e-6)


def test_large_constant_column_adds_no_rank():
    # A single-pass mean leaves ~eps * 1e10 in this column, well above the rank tolerance.
    rng = np.random.default_rng(4)
    x = np.c_[rng.standard_normal((50, 2)), np.full(50, 1e10 / 3)]
    t = torch.tensor(x)
    assert (t - t.mean(0))[:, 2].abs().max() > 1e-7  # the one-pass residue this test is about
    assert len(canonical_correlations(x, rng.standard_normal((50, 3)))) == 2


# --- SVCCA ------------------------------------------------------------------------------------


@FEW
@given(pair())
def test_svcca_with_all_variance_is_cca(data):
    x, y, _ = data
    for stat in ("rho", "r2"):
        assert svcca(x, y, variance=1.0, statistic=stat) == pytest.approx(cca(x, y, statistic=stat), abs=1e-12)


@pytest.mark.parametrize(
    "variance, dx, dy",
    [(0.4, 1, 1), (0.6, 2, 1), (0.85, 3, 2), (0.92, 3, 3), (0.97, 4, 3), (0.995, 5, 3)],
)
def test_svcca_keeps_fewest_directions_reaching_variance(variance, dx, dy):
    rng = np.random.default_rng(5)
    n = 80
    ux, uy = orthonormal_centred(rng, n, 5), orthonormal_centred(rng, n, 3)
    sx = np.sqrt([0.5, 0.3, 0.15, 0.04, 0.01])  # cumulative shares .5 .8 .95 .99 1
    sy = np.sqrt([0.7, 0.2, 0.1])  # cumulative shares .7 .9 1
    wx, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    wy, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    x, y = (ux * sx) @ wx + 2.0, (uy * sy) @ wy - 1.0
    expected = np.linalg.svd(ux[:, :dx].T @ uy[:, :dy], compute_uv=False)
    assert svcca(x, y, variance=variance) == pytest.approx(expected.mean(), abs=1e-10)
    assert svcca(x, y, variance=variance, statistic="r2") == pytest.approx((expected**2).mean(), abs=1e-10)


# --- PWCCA ------------------------------------------------------------------------------------


def test_pwcca_hand_case():
    rng = np.random.default_rng(6)
    h1, h2, g1, g2 = orthonormal_centred(rng, 40, 4).T
    x = np.c_[h1, h1 + h2, 2 * h2] + 7.0  # variates h1, h2; sum_j |<h_i, x_j>| = 2, 3
    y = np.c_[0.8 * h1 + 0.6 * g1, 0.3 * h2 + math.sqrt(1 - 0.09) * g2]  # rho = 0.8, 0.3
    assert pwcca(x, y) == pytest.approx((2 * 0.8 + 3 * 0.3) / 5, abs=1e-12)
    # y's variates are its own (unit, orthogonal) columns: equal weights
    assert pwcca(y, x) == pytest.approx((0.8 + 0.3) / 2, abs=1e-12)


@FEW
@given(pair())
def test_pwcca_between_min_and_max_correlation_and_translation_invariant(data):
    x, y, rng = data
    rho = cc_whitened(x, y)
    v = pwcca(x, y)
    assert rho.min() - 1e-12 <= v <= rho.max() + 1e-12
    assert pwcca(x + rng.uniform(-50, 50, x.shape[1]), y) == pytest.approx(v, abs=1e-9)


def _pwcca_from_variates(xc, h, rho):
    # PWCCA's definition with explicit variates h (n x k, orthonormal columns): weights sum_j |<h_i, x_j>|
    w = np.abs(h.T @ xc).sum(axis=1)
    return float((w / w.sum() * rho).sum())


def test_pwcca_with_forced_ties_has_no_unique_value_so_it_raises():
    # n = 30 rows, p = 20, q = 15: centred, 20 + 15 - 29 = 6 correlations are 1 whatever the data.
    # Two equally valid sets of canonical variates (the SVD's, and the same with the six tied ones
    # rotated among themselves) give different PWCCA by its own formula: no value is the right one.
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 20)), rng.standard_normal((30, 15))
    xc, yc = centred(x), centred(y)
    ux, uy = np.linalg.svd(xc, full_matrices=False)[0][:, :20], np.linalg.svd(yc, full_matrices=False)[0][:, :15]
    a, rho, _ = np.linalg.svd(ux.T @ uy, full_matrices=False)
    assert np.sum(rho > 1 - 1e-9) == 6
    h = ux @ a[:, :15]
    turn, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    h2 = h.copy()
    h2[:, :6] = h[:, :6] @ turn
    np.testing.assert_allclose(h2.T @ h2, np.eye(15), atol=1e-12)  # still orthonormal canonical variates
    first, second = _pwcca_from_variates(xc, h, rho), _pwcca_from_variates(xc, h2, rho)
    assert abs(first - second) > 1e-4
    with pytest.raises(DegenerateInputError, match="pwcca: x has rank 20 and y rank 15 on 30 examples, so 6 canonical "
                                                   "correlations are forced to 1 .* use at least 36 examples"):
        pwcca(x, y)


@pytest.mark.parametrize("n, p, q", [(36, 20, 15), (35, 20, 15), (25, 30, 8), (40, 3, 50)])
def test_pwcca_is_defined_without_ties_with_one_forced_tie_or_when_every_correlation_is_forced(n, p, q):
    # n >= p + q + 1: no tie; n = p + q: one forced correlation, its variate unique; p >= n - 1 or
    # q >= n - 1: every correlation is 1, and so is PWCCA whatever the weights.
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal((n, p)), rng.standard_normal((n, q))
    value = pwcca(x, y)
    if min(p, n - 1) + min(q, n - 1) - (n - 1) >= min(p, q):
        assert value == pytest.approx(1.0, abs=1e-10)
    # and then the neuron order of x does not matter (it would under ties)
    assert pwcca(x[:, rng.permutation(p)], y) == pytest.approx(value, abs=1e-10)


# --- linear regression ------------------------------------------------------------------------


@FEW
@given(pair())
def test_linear_regression_is_r2_of_least_squares(data):
    x, y, rng = data
    design = np.c_[np.ones(len(x)), x]  # intercept explicitly, no centring
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    r2 = 1 - ((y - design @ coef) ** 2).sum() / (centred(y) ** 2).sum()
    assert linear_regression(x, y) == pytest.approx(r2, abs=1e-10)
    assert linear_regression(x, x @ rng.standard_normal((x.shape[1], 3)) + 4.0) == pytest.approx(1.0, abs=1e-10)


def test_linear_regression_closed_form_on_constructed_data():
    rng = np.random.default_rng(7)
    rho = np.array([0.9, 0.4])
    u, f = orthonormal_centred(rng, 30, 4).reshape(30, 2, 2).transpose(1, 0, 2)
    v = u * rho + f * np.sqrt(1 - rho**2)
    b = well_conditioned(rng, 2)
    # Q_x^T Y = diag(rho) B and ||Y||_F = ||B||_F
    expected = ((rho[:, None] * b) ** 2).sum() / (b**2).sum()
    assert linear_regression(u @ well_conditioned(rng, 2), v @ b) == pytest.approx(expected, abs=1e-12)


# --- Procrustes -------------------------------------------------------------------------------


def procrustes_reference(x, y):
    xc, yc = centred(x), centred(y)
    return np.linalg.svd(xc.T @ yc, compute_uv=False).sum() / (np.linalg.norm(xc) * np.linalg.norm(yc))


@FEW
@given(pair(), st.booleans())
def test_procrustes_equals_nuclear_norm_closed_form(data, wide):
    x, y, rng = data
    if wide:  # p > n takes the row-space route
        x = rng.standard_normal((x.shape[0], x.shape[0] + 5))
    assert procrustes(x, y) == pytest.approx(procrustes_reference(x, y), abs=1e-12)


@FEW
@given(pair())
def test_procrustes_one_for_orthogonal_maps_and_invariant(data):
    x, y, rng = data
    p, q = x.shape[1], y.shape[1]
    qx, _ = np.linalg.qr(rng.standard_normal((p, p)))
    qy, _ = np.linalg.qr(rng.standard_normal((q, q)))
    assert procrustes(x, 3.0 * x @ qx - 2.0) == pytest.approx(1.0, abs=1e-12)
    moved = procrustes(0.1 * x @ qx + 5.0, 7.0 * y @ qy - 1.0)
    assert moved == pytest.approx(procrustes(x, y), abs=1e-12)
    if p > 1:  # not invariant to general linear maps (unlike CCA): a stretch lowers it
        assert procrustes(x, x @ np.diag(np.linspace(1, 20, p))) < 1 - 1e-3


@pytest.mark.parametrize("p", [3, 12])
def test_procrustes_gradcheck(p):
    rng = np.random.default_rng(8)
    x = torch.tensor(rng.standard_normal((8, p)), requires_grad=True)
    y = torch.tensor(rng.standard_normal((8, 4)), requires_grad=True)
    assert torch.autograd.gradcheck(procrustes, (x, y))


# --- StreamingCCA -----------------------------------------------------------------------------


@FEW
@given(pair(), st.lists(st.integers(1, 9), min_size=1, max_size=6))
def test_streaming_equals_one_shot(data, sizes):
    x, y, rng = data
    n = len(x)
    # drifting means: each chunk of rows is shifted, and the whole set sits far from 0
    shift = np.repeat(rng.uniform(-1e3, 1e3, (len(sizes) + 1, 1)), n // (len(sizes) + 1) + 1, 0)[:n]
    x, y = x + shift + 1e4, y - 3 * shift
    bounds = np.minimum(np.cumsum(sizes), n)
    acc = StreamingCCA()
    for rows in np.split(np.arange(n), bounds):
        if len(rows):
            acc.update(x[rows], y[rows])
    assert acc.n_examples == n
    np.testing.assert_allclose(acc.canonical_correlations(), canonical_correlations(x, y), atol=1e-10)
    assert acc.value() == pytest.approx(cca(x, y), abs=1e-10)
    assert acc.value(statistic="r2") == pytest.approx(cca(x, y, statistic="r2"), abs=1e-10)


def test_streaming_torch_batches_give_tensors():
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((30, 3)), rng.standard_normal((30, 2))
    acc = StreamingCCA().update(torch.tensor(x[:13]), torch.tensor(y[:13])).update(x[13:], y[13:])
    out = acc.value()
    assert isinstance(out, torch.Tensor) and out.ndim == 0
    assert float(out) == pytest.approx(cca(x, y), abs=1e-10)


def test_streaming_errors():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    acc = StreamingCCA().update(x[:1], y[:1])
    with pytest.raises(InputError, match="1 example.*minimum of 2"):
        acc.value()
    with pytest.raises(InputError, match=r"widths \(x: 4, y: 2\) differ from the first batch \(x: 3, y: 2\)"):
        acc.update(np.ones((2, 4)), y[:2])
    with pytest.raises(InputError, match="same number of examples"):
        acc.update(x[:3], y[:2])
    bad = x[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="x contains 1 NaN"):
        acc.update(bad, y[:2])
    acc.update(x[1:], y[1:])
    with pytest.raises(UnknownNameError, match="StreamingCCA.value: statistic: unknown value 'mean'; available: rho, r2"):
        acc.value(statistic="mean")
    const = StreamingCCA().update(np.full((4, 2), 3.3), y[:4]).update(np.full((5, 2), 3.3), y[4:9])
    with pytest.raises(DegenerateInputError, match="x is constant"):
        const.value()


# --- torch, dtypes, registry ------------------------------------------------------------------


def test_torch_equals_numpy_and_returns_0d_tensors():
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 3)) + rng.standard_normal((40, 1))
    for name in CCA_NAMES:
        m = get(name)
        t = m(torch.tensor(x), torch.tensor(y))
        assert isinstance(t, torch.Tensor) and t.ndim == 0 and t.dtype == torch.float64
        assert isinstance(m(x, y), float)
        assert float(t) == pytest.approx(m(x, y), abs=1e-13)
    rho_t = canonical_correlations(torch.tensor(x), y)
    assert isinstance(rho_t, torch.Tensor)
    np.testing.assert_allclose(rho_t.numpy(), canonical_correlations(x, y), atol=1e-13)


def test_float32_input_within_documented_bound():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((200, 6))
    y = x[:, :3] + 0.5 * rng.standard_normal((200, 3))
    for name in CCA_NAMES:
        m = get(name)
        assert abs(m(x.astype(np.float32), y.astype(np.float32)) - m(x, y)) < 1e-5, name


def test_prepare_score_split_and_registry():
    rng = np.random.default_rng(13)
    x, y = rng.standard_normal((30, 4)), rng.standard_normal((30, 6))
    assert set(CCA_NAMES) <= set(available())
    for name in CCA_NAMES:
        m = get(name)
        assert float(m.score(m.prepare(x), m.prepare(y))) == m(x, y)
        with pytest.raises(InputError, match="same number of examples"):
            m.score(m.prepare(x), m.prepare(y[:20]))
    assert get("svcca_r2", variance=0.5).params == {"variance": 0.5}
    assert svcca(x, y, variance=0.5, statistic="r2") == get("svcca_r2", variance=0.5)(x, y)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("f", PUBLIC + [canonical_correlations])
def test_bad_input_messages(f):
    rng = np.random.default_rng(14)
    x, y = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    bad = x.copy()
    bad[2, 1] = np.inf
    with pytest.raises(InputError, match="x contains 1 NaN or Inf"):
        f(bad, y)
    bad = y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="y contains 1 NaN or Inf"):
        f(x, bad)
    with pytest.raises(InputError, match="same number of examples.*10 and 9"):
        f(x, y[:9])
    with pytest.raises(InputError, match="1 example.*minimum of 2"):
        f(x[:1], y[:1])
    with pytest.raises(DegenerateInputError, match="x is constant"):
        f(np.full((10, 3), 0.1), y)
    with pytest.raises(DegenerateInputError, match="y is constant"):
        f(x, np.zeros((10, 2)))


@pytest.mark.parametrize("f", [cca, svcca])
def test_unknown_statistic_lists_options(f):
    x = np.random.default_rng(15).standard_normal((10, 2))
    with pytest.raises(UnknownNameError, match=r"statistic: unknown value 'mean'; available: rho, r2"):
        f(x, x, statistic="mean")


@pytest.mark.parametrize("variance", [0, -0.1, 1.5, float("nan"), True, "0.9"])
def test_svcca_variance_out_of_range(variance):
    # A bad option value is a ConfigError (one error type per kind of mistake, layer_sim._options).
    x = np.random.default_rng(16).standard_normal((10, 2))
    with pytest.raises(ConfigError, match=r"svcca: variance must be a finite number in \(0, 1\], got"):
        svcca(x, x, variance=variance)
    with pytest.raises(ConfigError, match=r"svcca_rho: variance must be a finite number in \(0, 1\]"):
        get("svcca_rho", variance=variance)


def test_docstring_examples_run():
    for mod in ("layer_sim.measures._cca", "layer_sim.measures.streaming"):
        result = doctest.testmod(importlib.import_module(mod))
        assert result.attempted > 0 and result.failed == 0, mod
    assert layer_sim.StreamingCCA is StreamingCCA
