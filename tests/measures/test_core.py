"""The pure HSIC/CKA core and the public kernels: vmap and grad through the core, CKA on Gram matrices.

References: the direct trace formula tr(HKH HLH) / sqrt(tr(HKH HKH) tr(HLH HLH)) with an explicit
centring matrix H, Song et al.'s HSIC_1 term by term, Kornblith et al.'s reference functions
(``_references``), finite differences (gradcheck), and autograd of the direct formula.
"""

import doctest

import numpy as np
import pytest
import torch
from _references import data, ref_center_gram, ref_cka, ref_gram_rbf, song_cka
from torch.func import grad, vmap

from layer_sim import ConfigError, DegenerateInputError, InputError, linear_cka, rbf_cka
from layer_sim.measures import _hsic as core
from layer_sim.measures import centre_gram, gram_cka, gram_linear, gram_rbf, kernels
from layer_sim.measures._features import centre


def direct_cka(K, L):
    """tr(HKH HLH) / sqrt(tr(HKH HKH) tr(HLH HLH)), H = I - 11^T/n: the textbook formula, NumPy."""
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    Kc, Lc = H @ K @ H, H @ L @ H
    return np.trace(Kc @ Lc) / np.sqrt(np.trace(Kc @ Kc) * np.trace(Lc @ Lc))


def direct_cka_torch(x, y):
    """The same formula in torch on linear kernels, for an autograd reference."""
    n = x.shape[0]
    H = torch.eye(n, dtype=x.dtype) - 1.0 / n
    K, L = H @ x @ x.T @ H, H @ y @ y.T @ H
    return torch.trace(K @ L) / torch.sqrt(torch.trace(K @ K) * torch.trace(L @ L))


def song_cka_torch(x, y):
    """Song et al. (2012) HSIC_1 ratio in torch (zeroed diagonals, term by term)."""
    def hsic1(K, L):
        n = K.shape[0]
        Kt, Lt = K - torch.diag(torch.diag(K)), L - torch.diag(torch.diag(L))
        one = torch.ones(n, dtype=K.dtype)
        return (torch.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3))

    K, L = x @ x.T, y @ y.T
    return hsic1(K, L) / torch.sqrt(hsic1(K, K) * hsic1(L, L))


def features_route(debiased):
    return lambda x, y: core.cka_features(centre(x), centre(y), debiased=debiased)


def gram_route(debiased):
    def f(x, y):
        kc = kernels._centre_gram(kernels._linear(x), debiased)
        lc = kernels._centre_gram(kernels._linear(y), debiased)
        return core.cka_gram(kc, lc)

    return f


ROUTES = [
    pytest.param(features_route(False), False, id="features"),
    pytest.param(features_route(True), True, id="features-debiased"),
    pytest.param(gram_route(False), False, id="gram"),
    pytest.param(gram_route(True), True, id="gram-debiased"),
]


def stack(seed, b=6, n=12, p=4, q=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, p, dtype=torch.float64, generator=g)
    y = x[..., :3] @ torch.randn(3, q, dtype=torch.float64, generator=g) + torch.randn(b, n, q, dtype=torch.float64, generator=g)
    return x * torch.logspace(-3, 3, b, dtype=torch.float64)[:, None, None], y  # very different scales per pair


# --------------------------------------------------------------------------- vmap and grad through the core


@pytest.mark.parametrize("f, debiased", ROUTES)
def test_vmap_over_a_stack_of_pairs_equals_the_loop_and_the_references(f, debiased):
    x, y = stack(0)
    batched = vmap(f)(x, y)
    loop = torch.stack([f(a, b) for a, b in zip(x, y)])
    torch.testing.assert_close(batched, loop, rtol=0, atol=1e-14)
    ref = [song_cka(a @ a.T, b @ b.T) if debiased else direct_cka(a @ a.T, b @ b.T) for a, b in zip(x.numpy(), y.numpy())]
    np.testing.assert_allclose(batched.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("f, debiased", ROUTES)
def test_grad_equals_autograd_of_the_direct_formula(f, debiased):
    x, y = stack(1, b=1)
    x, y = x[0], y[0]
    reference = song_cka_torch if debiased else direct_cka_torch
    xr = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(reference(xr, y), xr)
    got = grad(f)(x, y)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    # per-example gradients of a stack: vmap(grad) equals the loop of grads
    xs, ys = stack(2, b=4)
    torch.testing.assert_close(vmap(grad(f))(xs, ys), torch.stack([grad(f)(a, b) for a, b in zip(xs, ys)]))


@pytest.mark.parametrize("f, debiased", ROUTES)
def test_gradcheck_finite_differences(f, debiased):
    x, y = stack(3, b=1, n=9, p=3, q=5)
    assert torch.autograd.gradcheck(f, (x[0].clone().requires_grad_(), y[0].clone().requires_grad_()))


def test_unit_scale_is_an_exact_power_of_two():
    a = torch.tensor([[3.0, -0.1], [1e-3, 2.5]], dtype=torch.float64)
    for k in (-1000, -3, 0, 7, 1000):
        s = core.unit_scale(torch.ldexp(a, torch.tensor(k)))
        assert float(s.abs().max()) == 0.75  # 3 = 0.75 * 2**2
        torch.testing.assert_close(s, a / 4, rtol=0, atol=0)


# --------------------------------------------------------------------------- CKA on Gram matrices


def product_kernel(x, g):
    """(X X^T) o (G G^T): the kernel of gradient CKA (Tang et al. 2020), built by hand."""
    return (x @ x.T) * (g @ g.T)


@pytest.mark.parametrize("seed", range(4))
def test_gram_cka_equals_the_direct_formula_for_several_kernels(seed):
    x, y = data(seed, 30, 5, q=6)
    rng = np.random.default_rng(seed)
    gx, gy = rng.standard_normal((30, 5)), rng.standard_normal((30, 6))
    for K, L in [
        (x @ x.T, y @ y.T),
        (ref_gram_rbf(x, 0.5), ref_gram_rbf(y, 0.5)),
        (product_kernel(x, gx), product_kernel(y, gy)),
        (x @ x.T, ref_gram_rbf(y, 0.8)),
    ]:
        assert gram_cka(K, L) == pytest.approx(direct_cka(K, L), abs=1e-12)
        assert gram_cka(K, L, debiased=True) == pytest.approx(song_cka(K, L), abs=1e-11)
        assert gram_cka(K, L, debiased=True) == pytest.approx(ref_cka(K, L, debiased=True), abs=1e-11)


def test_gram_cka_equals_the_feature_route_and_rbf_cka():
    x, y = data(5, 40, 6, q=3)
    for debiased in (False, True):
        assert gram_cka(gram_linear(x), gram_linear(y), debiased=debiased) == pytest.approx(
            linear_cka(x, y, debiased=debiased), abs=1e-12
        )
        for sigma in (0.3, 0.8, 2.0):
            assert gram_cka(gram_rbf(x, sigma=sigma), gram_rbf(y, sigma=sigma), debiased=debiased) == pytest.approx(
                rbf_cka(x, y, sigma=sigma, debiased=debiased), abs=1e-12
            )


def test_gram_cka_invariant_to_positive_scale_and_shift_of_a_kernel():
    x, y = data(6, 25, 4)
    K, L = x @ x.T, y @ y.T
    for debiased in (False, True):
        v = gram_cka(K, L, debiased=debiased)
        assert gram_cka(1e-200 * K + 3e-200, 1e250 * L - 1e251, debiased=debiased) == pytest.approx(v, abs=1e-12)


def test_gram_cka_torch_is_differentiable():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randn(10, 4, dtype=torch.float64, generator=g)
    out = gram_cka(gram_linear(x), gram_linear(y))
    assert isinstance(out, torch.Tensor) and out.ndim == 0 and out.requires_grad
    assert torch.autograd.gradcheck(lambda a: gram_cka(gram_linear(a), gram_linear(y), debiased=True), (x,))


def test_gram_cka_errors():
    x, y = data(7, 10, 3)
    K, L = x @ x.T, y @ y.T
    with pytest.raises(InputError, match=r"gram_cka: K must be a square \(n, n\) matrix, got shape \(10, 3\)"):
        gram_cka(x, L)
    asym = K.copy()
    asym[0, 1] += 1.0
    with pytest.raises(InputError, match="gram_cka: L is not symmetric"):
        gram_cka(K, asym)
    with pytest.raises(InputError, match=r"same examples, got shapes \(10, 10\) and \(9, 9\)"):
        gram_cka(K, L[:9, :9])
    with pytest.raises(DegenerateInputError, match="gram_cka: K is a constant kernel"):
        gram_cka(np.full((10, 10), 2.0), L)
    with pytest.raises(InputError, match="minimum of 4 is required"):
        gram_cka(K[:3, :3], L[:3, :3], debiased=True)
    with pytest.raises(ConfigError, match="gram_cka: debiased must be True or False, got 'False'"):
        gram_cka(K, L, debiased="False")
    nan = K.copy()
    nan[2, 2] = np.nan
    with pytest.raises(InputError, match="K contains 1 NaN"):
        gram_cka(nan, L)


# --------------------------------------------------------------------------- public kernels


def test_gram_linear_and_rbf_equal_the_reference_functions():
    x, _ = data(8, 20, 4)
    np.testing.assert_allclose(gram_linear(x), x @ x.T, rtol=1e-14, atol=0)
    for sigma in (0.2, 0.8, 3.0):
        np.testing.assert_allclose(gram_rbf(x, sigma=sigma), ref_gram_rbf(x, sigma), rtol=0, atol=1e-13)
    t = gram_rbf(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    np.testing.assert_allclose(t.numpy(), ref_gram_rbf(x, 0.8), rtol=0, atol=1e-13)


@pytest.mark.parametrize("debiased", [False, True])
def test_centre_gram_equals_reference_and_hkh(debiased):
    x, _ = data(9, 15, 3)
    K = ref_gram_rbf(x, 0.5)
    np.testing.assert_allclose(centre_gram(K, debiased=debiased), ref_center_gram(K, debiased), rtol=0, atol=1e-14)
    if not debiased:
        H = np.eye(15) - 1 / 15
        np.testing.assert_allclose(centre_gram(K), H @ K @ H, rtol=0, atol=1e-14)
    else:
        # <K~, L~> = n (n - 3) HSIC_1 (Song et al.), with L = K
        from _references import song_hsic1

        Kt = centre_gram(K, debiased=True)
        assert (Kt * Kt).sum() == pytest.approx(15 * 12 * song_hsic1(K, K), rel=1e-12)


def test_kernel_errors():
    x, _ = data(10, 8, 2)
    with pytest.raises(ConfigError, match=r"gram_rbf: sigma must be a finite number in \(0, inf\], got -1"):
        gram_rbf(x, sigma=-1)
    with pytest.raises(DegenerateInputError, match="gram_rbf: x has median squared distance 0"):
        gram_rbf(np.r_[np.zeros((6, 2)), np.ones((2, 2))])
    with pytest.raises(InputError, match="gram_linear: the Gram matrix x x\\^T overflows float64"):
        gram_linear(np.full((3, 2), 1e200))
    with pytest.raises(InputError, match="underflows"):
        gram_linear(np.full((3, 2), 1e-200))
    assert float(gram_linear(np.full((3, 2), 1e150))[0, 0]) == pytest.approx(2e300, rel=1e-15)
    with pytest.raises(ConfigError, match="centre_gram: debiased must be True or False"):
        centre_gram(np.eye(3), debiased=1)
    with pytest.raises(InputError, match=r"centre_gram: K must be a square"):
        centre_gram(np.ones((3, 4)))


def test_docstring_examples():
    for mod in (kernels, core):
        failures, _ = doctest.testmod(mod)
        assert failures == 0, mod
    assert doctest.testmod(kernels).attempted >= 3
