"""CKA family: invariances, hand-derived values, equal routes, independent reimplementations, gradients, errors.

Reference values come from code written here from the papers (Kornblith et al. 2019's
``gram_linear``/``gram_rbf``/``center_gram``/``cka``; Song et al. 2012's HSIC_1 formula), from
closed forms derived in comments, or from invariances; never from layer_sim's own output.
"""

import doctest

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layer_sim import (
    ConfigError,
    DegenerateInputError,
    InputError,
    UnknownNameError,
    linear_cka,
    linear_hsic,
    minibatch_cka,
    rbf_cka,
)
from layer_sim.measures import _cka as cka_module, get, kernels
from layer_sim.measures._features import centre
from layer_sim.measures._validation import check_range

FEW = settings(max_examples=20, deadline=None)


# --------------------------------------------------------------------------- independent references

from _references import (  # noqa: E402  (shared with test_core.py and test_scale.py)
    data,
    orthogonal,
    ref_cka,
    ref_gram_linear,
    ref_gram_rbf,
    song_cka,
    song_hsic1,
)

seeds = st.integers(0, 2**32 - 1)


# --------------------------------------------------------------------------- invariances and range


@FEW
@given(seed=seeds, n=st.integers(6, 30), p=st.integers(1, 12), debiased=st.booleans())
def test_linear_cka_invariant_to_orthogonal_scale_translation(seed, n, p, debiased):
    rng = np.random.default_rng(seed)
    x, y = data(seed, n, p, q=4)
    c, v = rng.uniform(0.1, 10), rng.normal(0, 5, size=p)
    x2 = c * x @ orthogonal(rng, p) + v
    assert linear_cka(x, x2, debiased=debiased) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x2, y, debiased=debiased) == pytest.approx(linear_cka(x, y, debiased=debiased), abs=1e-9)


@FEW
@given(seed=seeds, n=st.integers(6, 25), p=st.integers(1, 6), sigma=st.sampled_from([0.3, 0.8, 2.0]))
def test_rbf_cka_invariant_to_orthogonal_scale_translation(seed, n, p, sigma):
    # Distances scale by c, so the median bandwidth does too and K is unchanged.
    rng = np.random.default_rng(seed)
    x, y = data(seed, n, p, q=3)
    x2 = rng.uniform(0.1, 10) * x @ orthogonal(rng, p) + rng.normal(0, 5, size=p)
    assert rbf_cka(x, x2, sigma=sigma) == pytest.approx(1.0, abs=1e-9)
    assert rbf_cka(x2, y, sigma=sigma) == pytest.approx(rbf_cka(x, y, sigma=sigma), abs=1e-9)


def test_linear_cka_not_invariant_to_general_linear_map():
    # X^T X ~ n I, so CKA(X, XA) ~ ||A||_F^2 / (sqrt(p) ||A^2||_F) = 104 / (sqrt(5) * 100.02) ~ 0.47
    # for A = diag(10, 1, 1, 1, 1); an invertible map, under which CCA would stay at 1.
    x = np.random.default_rng(0).standard_normal((2000, 5))
    value = linear_cka(x, x * np.array([10.0, 1, 1, 1, 1]))
    assert value == pytest.approx(104 / (np.sqrt(5) * np.sqrt(10004)), abs=0.03)
    assert value < 0.6


@FEW
@given(seed=seeds, n=st.integers(4, 30), p=st.integers(1, 40), q=st.integers(1, 40))
def test_symmetric_and_in_range(seed, n, p, q):
    x, y = data(seed, n, p, q)
    for fn, lower in [
        (linear_cka, 0.0),
        (lambda a, b: linear_cka(a, b, debiased=True), -1.0),
        (rbf_cka, 0.0),
        (lambda a, b: rbf_cka(a, b, debiased=True), -1.0),
    ]:
        v = fn(x, y)
        assert v == pytest.approx(fn(y, x), abs=1e-12)
        assert lower <= v <= 1.0


# --------------------------------------------------------------------------- hand-derived values


def test_one_feature_linear_cka_is_squared_pearson_correlation():
    # p = 1: CKA = (x_c . y_c)^2 / (|x_c|^2 |y_c|^2). x_c = (-1.5, -.5, .5, 1.5), y_c = (-.5, .5, -.5, .5):
    # x_c . y_c = .75 - .25 - .25 + .75 = 1, |x_c|^2 = 5, |y_c|^2 = 1, so CKA = 1/5.
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([[0.0], [1.0], [0.0], [1.0]])
    assert linear_cka(x, y) == pytest.approx(0.2, abs=1e-15)


def test_one_hot_examples_versus_one_indicator():
    # X = I_3 (Gram route, p = n): K_c = H, <H, H> = tr H = 2. y = e_1 (feature route): y_c =
    # (2, -1, -1)/3, L_c = y_c y_c^T, <H, L_c> = |y_c|^2 = 2/3 = |L_c|_F. CKA = (2/3) / (sqrt 2 * 2/3).
    assert linear_cka(np.eye(3), np.array([[1.0], [0.0], [0.0]])) == pytest.approx(2**-0.5, abs=1e-15)


def test_linear_hsic_is_squared_cross_covariance():
    # x = (0, 1, 2, 3): var = 5/3, cov(x, 2x) = 10/3, HSIC = (10/3)^2 = 100/9 with the 1/(n-1)^2 scaling.
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert linear_hsic(x, 2 * x) == pytest.approx(100 / 9, rel=1e-14)
    assert linear_hsic(x, np.ones((4, 2))) == 0.0  # a constant has no covariance (not an error)


@FEW
@given(seed=seeds, n=st.integers(3, 20), p=st.integers(1, 30), q=st.integers(1, 30))
def test_linear_hsic_equals_frobenius_norm_of_numpy_cross_covariance(seed, n, p, q):
    x, y = data(seed, n, p, q)
    cov = np.cov(x.T, y.T)[:p, p:]
    assert linear_hsic(x, y) == pytest.approx((cov**2).sum(), rel=1e-10)


def test_rbf_two_clusters_with_np_median_convention():
    # x = (0, 0, 1, 1): the 16 squared distances are 8 zeros and 8 ones, np.median = 0.5 (the mean
    # of the middle two; the lower median 0 would make the bandwidth 0). K is 1 within a cluster,
    # exp(-1/sigma^2) across, so K_c is proportional to s s^T with s = (1, 1, -1, -1). A second
    # 2-cluster split with the same clusters gives CKA 1; the orthogonal split t = (1, -1, 1, -1)
    # gives <s s^T, t t^T> = (s . t)^2 = 0.
    x = np.array([[0.0], [0.0], [1.0], [1.0]])
    same = np.array([[3.0, 3.0], [3.0, 3.0], [-2.0, 5.0], [-2.0, 5.0]])
    crossed = np.array([[0.0], [1.0], [0.0], [1.0]])
    assert rbf_cka(x, same) == pytest.approx(1.0, abs=1e-14)
    assert rbf_cka(x, crossed) == pytest.approx(0.0, abs=1e-14)


def test_median_of_full_distance_matrix_by_hand():
    # Points 0, 1, 3: off-diagonal squared distances 1, 9, 4, each twice, plus 3 zeros:
    # 0 0 0 1 1 4 4 9 9 -> median 1. Points 0, 1, 3, 7 add 49, 36, 16: sorted 16 values
    # 0 0 0 0 1 1 4 4 | 9 9 16 16 36 36 49 49 -> median (4 + 9) / 2 = 6.5.
    for pts, expected in [([0, 1, 3], 1.0), ([0, 1, 3, 7], 6.5)]:
        xc = centre(torch.tensor(pts, dtype=torch.float64)[:, None])
        got = kernels.median_sq_dist(xc, xc.square().sum(1), rows=2)
        assert float(got) == pytest.approx(expected, abs=1e-13)


@pytest.mark.parametrize("sample_size", [3, 20, 10**9])
@pytest.mark.parametrize("rows", [1, 4, 100])
def test_exact_median_selection_equals_np_median(sample_size, rows):
    # Tiny samples make the first brackets miss, exercising the widening; ties stress the ranks.
    rng = np.random.default_rng(sample_size + rows)
    for n in [2, 3, 4, 9, 10, 37]:
        x = rng.standard_normal((n, 3))
        x[: n // 3] = x[0]
        d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
        xc = centre(torch.from_numpy(x))
        got = kernels.median_sq_dist(xc, xc.square().sum(1), rows=rows, sample_size=sample_size)
        assert float(got) == pytest.approx(np.median(d2), rel=1e-12, abs=1e-14)


# --------------------------------------------------------------------------- routes and reimplementations


@FEW
@given(seed=seeds, n=st.integers(5, 30), p=st.integers(1, 40), q=st.integers(1, 40), debiased=st.booleans())
def test_every_route_pair_equals_kornblith_reference(seed, n, p, q, debiased):
    x, y = data(seed, n, p, q)
    expected = ref_cka(ref_gram_linear(x), ref_gram_linear(y), debiased)
    m = get("linear_cka_debiased" if debiased else "linear_cka")
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    routes = ("features", "gram") if debiased else ("engine", "features", "gram")  # the engine is biased only
    for rx in routes:
        for ry in routes:
            px = cka_module._linear_state(X, unbiased=debiased, route=rx)
            py = cka_module._linear_state(Y, unbiased=debiased, route=ry)
            assert float(m.score(px, py)) == pytest.approx(expected, abs=1e-10), (rx, ry)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(expected, abs=1e-10)


@FEW
@given(seed=seeds, n=st.integers(5, 25), p=st.integers(1, 30), q=st.integers(1, 30))
def test_debiased_routes_equal_song_formula(seed, n, p, q):
    x, y = data(seed, n, p, q)
    expected = song_cka(x @ x.T, y @ y.T)  # uncentred inputs: HSIC_1 ignores translations itself
    m = get("linear_cka_debiased")
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    for route in ("features", "gram"):
        px = cka_module._linear_state(X, unbiased=True, route=route)
        py = cka_module._linear_state(Y, unbiased=True, route=route)
        assert float(m.score(px, py)) == pytest.approx(expected, abs=1e-9)


@FEW
@given(
    seed=seeds,
    n=st.integers(4, 30),
    p=st.integers(1, 8),
    sigma=st.sampled_from([0.2, 0.5, 0.8, 1.5]),
    debiased=st.booleans(),
)
def test_rbf_equals_kornblith_reference(seed, n, p, sigma, debiased):
    x, y = data(seed, n, p, q=3)
    expected = ref_cka(ref_gram_rbf(x, sigma), ref_gram_rbf(y, sigma), debiased)
    assert rbf_cka(x, y, sigma=sigma, debiased=debiased) == pytest.approx(expected, abs=1e-10)
    if debiased:
        assert expected == pytest.approx(song_cka(ref_gram_rbf(x, sigma), ref_gram_rbf(y, sigma)), abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_blockwise_equals_dense(debiased):
    x, y = data(3, 23, 4, q=6)
    dense = rbf_cka(x, y, debiased=debiased)
    for block in (1, 3, 7, 23, 50):
        assert rbf_cka(x, y, debiased=debiased, block_size=block) == pytest.approx(dense, abs=1e-12)
    # A stored-Gram state scored against a blockwise one (different block heights) agrees too.
    m = get("rbf_cka", debiased=debiased)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    px = cka_module._rbf_state(X, sigma=0.8, unbiased=debiased, block_size=None)
    py = cka_module._rbf_state(Y, sigma=0.8, unbiased=debiased, block_size=5, sample_size=7)
    assert px.gram is not None and py.gram is None
    assert float(m.score(px, py)) == pytest.approx(dense, abs=1e-12)


def test_prepare_once_score_many_equals_call():
    x, y = data(5, 40, 7, q=50)
    names = [("linear_cka", {}), ("linear_cka_debiased", {}), ("rbf_cka", {"sigma": 0.5}), ("linear_hsic", {})]
    for name, params in names:
        m = get(name, **params)
        assert float(m.score(m.prepare(x), m.prepare(y))) == pytest.approx(m(x, y), abs=1e-14)
    with pytest.raises(InputError, match="same number of examples"):
        m.score(m.prepare(x), m.prepare(y[:-1]))


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("block_size", [None, 4])
def test_rbf_matrix_fn_equals_pairwise_score(debiased, block_size):
    rng = np.random.default_rng(9)
    layers = [rng.standard_normal((17, p)) for p in (1, 3, 20)]
    m = get("rbf_cka", debiased=debiased, block_size=block_size)
    pa = [m.prepare(x) for x in layers]
    pb = [m.prepare(np.tanh(x)) for x in layers[:2]]
    for a, b in [(pa, pa), (pa, pb)]:
        expected = [[float(m.score(x, y)) for y in b] for x in a]
        np.testing.assert_allclose(m.matrix_fn(a, b).numpy(), expected, rtol=0, atol=1e-12)
    with pytest.raises(DegenerateInputError, match="y is constant"):
        m.matrix_fn(pa, [m.prepare(np.ones((17, 2)))])


# --------------------------------------------------------------------------- minibatch estimator


def test_minibatch_with_one_batch_is_debiased_full_data_cka():
    x, y = data(11, 60, 5, q=4)
    assert minibatch_cka(x, y, batch_size=60) == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-12)
    assert minibatch_cka(x, y, kernel="rbf", sigma=0.5, batch_size=60) == pytest.approx(
        ref_cka(ref_gram_rbf(x, 0.5), ref_gram_rbf(y, 0.5), debiased=True), abs=1e-10
    )


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_minibatch_equals_documented_batches_with_song_hsic(kernel):
    # The docstring's contract: randperm(n, seed) split by tensor_split into n // batch_size parts,
    # then sum_b HSIC_1(K_b, L_b) / sqrt(sum_b HSIC_1(K_b, K_b) sum_b HSIC_1(L_b, L_b)).
    x, y = data(12, 103, 4, q=3)
    perm = torch.randperm(103, generator=torch.Generator().manual_seed(7))
    gram = ref_gram_linear if kernel == "linear" else (lambda a: ref_gram_rbf(a, 0.8))
    kl = kk = ll = 0.0
    for idx in torch.tensor_split(perm, 103 // 25):
        K, L = gram(x[idx.numpy()]), gram(y[idx.numpy()])
        kl, kk, ll = kl + song_hsic1(K, L), kk + song_hsic1(K, K), ll + song_hsic1(L, L)
    expected = kl / np.sqrt(kk * ll)
    assert minibatch_cka(x, y, kernel=kernel, batch_size=25, seed=7) == pytest.approx(expected, abs=1e-10)


def test_minibatch_invariances():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((90, 6))
    x2 = 4.0 * x @ orthogonal(rng, 6) - 3.0
    assert minibatch_cka(x, x2, batch_size=20) == pytest.approx(1.0, abs=1e-10)
    assert minibatch_cka(x, x2, kernel="rbf", batch_size=20) == pytest.approx(1.0, abs=1e-10)


# --------------------------------------------------------------------------- torch, dtypes, gradients


def test_torch_input_equals_numpy_input_and_keeps_device_and_graph():
    x, y = data(4, 30, 6, q=40)
    for fn in (linear_cka, linear_hsic, rbf_cka, lambda a, b: linear_cka(a, b, debiased=True)):
        expected = fn(x, y)
        assert isinstance(expected, float)
        X = torch.from_numpy(x).requires_grad_()
        got = fn(X, torch.from_numpy(y))
        assert isinstance(got, torch.Tensor) and got.ndim == 0 and got.device == X.device
        assert got.requires_grad
        assert float(got.detach()) == pytest.approx(expected, abs=1e-14)


def test_float32_input_within_documented_bound():
    # Inputs are upcast before any arithmetic, so float32 only adds input rounding (6e-8 relative).
    x, y = data(8, 200, 10, q=12)
    for fn in (linear_cka, rbf_cka, lambda a, b: linear_cka(a, b, debiased=True)):
        v64 = fn(x, y)
        v32 = fn(x.astype(np.float32), y.astype(np.float32))
        assert abs(v32 - v64) < 1e-6
        assert fn(torch.from_numpy(x).float(), torch.from_numpy(y).float()).dtype == torch.float64


@pytest.mark.parametrize(
    "fn, q",
    [
        (linear_cka, 12),
        (lambda a, b: linear_cka(a, b, debiased=True), 12),
        (rbf_cka, 2),
        (lambda a, b: rbf_cka(a, b, sigma=0.5, debiased=True), 2),
        (lambda a, b: rbf_cka(a, b, block_size=3), 2),
        (lambda a, b: minibatch_cka(a, b, batch_size=4), 2),
    ],
    ids=["linear", "linear_debiased", "rbf", "rbf_debiased", "rbf_blockwise", "minibatch"],
)
def test_gradcheck(fn, q):
    # q = 12 > n puts y on the Gram route and x (p = 2) on the feature route.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randn(8, q, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x, y))


# --------------------------------------------------------------------------- bad input


def test_constant_representation_names_the_side():
    x, _ = data(0, 10, 3)
    const = np.full((10, 4), 2.5)
    for fn in (
        linear_cka,
        rbf_cka,
        lambda a, b: linear_cka(a, b, debiased=True),
        lambda a, b: minibatch_cka(a, b, batch_size=5),
    ):
        with pytest.raises(DegenerateInputError, match=r"x is constant \(zero variance"):
            fn(const, x)
        with pytest.raises(DegenerateInputError, match="y is constant"):
            fn(x, const)
    # A constant float32 column whose mean does not round-trip exactly is still constant.
    with pytest.raises(DegenerateInputError, match="y is constant"):
        linear_cka(x, np.full((10, 1), 0.1, dtype=np.float32))


def test_debiased_undefined_when_gram_is_additive():
    # x = (0, 0, 0, 1): centred x_i x_j = 1/16 among the first three and -3/16 with the fourth,
    # i.e. f_i + f_j + 1/16 with f = (0, 0, 0, -1/4): the U-centred Gram is exactly 0.
    x = np.array([[0.0], [0.0], [0.0], [1.0]])
    y = np.array([[0.0], [1.0], [2.0], [4.0]])
    assert linear_cka(x, y) > 0  # the biased estimator is fine
    with pytest.raises(DegenerateInputError, match="x has zero unbiased self-HSIC"):
        linear_cka(x, y, debiased=True)


def test_rbf_zero_median_bandwidth():
    # 3 equal rows of 4: 4 diagonal + 6 off-diagonal zeros = 10 of 16 entries, median 0.
    x = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    with pytest.raises(DegenerateInputError, match="y has median squared distance 0"):
        rbf_cka(np.arange(8.0).reshape(4, 2), x)


def test_input_errors_from_the_gate():
    x, y = data(0, 10, 3)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InputError, match="rbf_cka: x contains 1 NaN or Inf"):
        rbf_cka(bad, y)
    with pytest.raises(InputError, match="same number of examples .* got 10 and 9"):
        linear_cka(x, y[:9])
    with pytest.raises(InputError, match="minimum of 4 is required"):
        linear_cka(x[:3], y[:3], debiased=True)
    with pytest.raises(InputError, match="minimum of 2 is required"):
        linear_cka(x[:1], y[:1])
    with pytest.raises(InputError, match="minimum of 20 is required"):
        minibatch_cka(x, y, batch_size=20)


def test_option_errors():
    x, y = data(0, 10, 3)
    with pytest.raises(UnknownNameError, match="minibatch_cka: kernel: unknown value 'poly'; available: linear, rbf"):
        minibatch_cka(x, y, kernel="poly", batch_size=5)
    with pytest.raises(ConfigError, match=r"rbf_cka: sigma must be a finite number in \(0, inf\], got -1"):
        rbf_cka(x, y, sigma=-1)
    with pytest.raises(ConfigError, match="block_size must be an integer >= 1, got 0"):
        rbf_cka(x, y, block_size=0)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 4, got 3"):
        minibatch_cka(x, y, batch_size=3)
    with pytest.raises(ConfigError, match="batch_size is required"):
        get("minibatch_cka")
    with pytest.raises(ConfigError, match="debiased must be True or False"):
        rbf_cka(x, y, debiased="yes")


def test_excursions_beyond_rounding_raise_instead_of_clipping():
    # The one result check, shared by the per-pair routes and the all-pairs engine.
    one = torch.tensor(1.0, dtype=torch.float64)
    assert float(check_range("m", one + 1e-12, lower=0.0)) == 1.0  # rounding: clipped
    with pytest.raises(DegenerateInputError, match=r"value 1.001 lies outside \[0, 1\] by more than rounding"):
        check_range("m", one + 1e-3, lower=0.0)
    with pytest.raises(DegenerateInputError, match="value nan lies outside"):
        check_range("m", torch.tensor([0.5, float("nan")], dtype=torch.float64), lower=0.0)
    # products computed in float32 (the fp32 fast path) are allowed float32 rounding, not float64's
    assert float(check_range("m", one + 1e-6, rounding=torch.float32)) == 1.0
    with pytest.raises(DegenerateInputError):
        check_range("m", one + 1e-6)


def test_docstring_examples():
    failures, tried = doctest.testmod(cka_module)
    assert tried >= 10 and failures == 0
