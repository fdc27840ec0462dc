"""CKA and NBS with gradients (Tang et al. 2020): every route against a direct n x n formula."""

import numpy as np
import pytest
import torch

from layer_sim import ConfigError, DegenerateInputError, InputError, linear_cka
from layer_sim.measures import get, gradient_cka, gradient_nbs, gram_cka, gram_gradient, gram_nbs
from layer_sim.measures import gradient as gmod

from _references import orthogonal, ref_center_gram, ref_cka, song_cka  # noqa: E402 (rootdir import, as test_cka.py)


def layer(seed, n=30, p=4, pg=None):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((n, p)) + 0.3, 0)  # ReLU-like, not centred
    g = rng.standard_normal((n, pg or p)) * (x > 0)[:, : pg or p]
    return x, g


def ref_product(x, g):
    n = x.shape[0]
    return np.array([[np.dot(x[i], x[j]) * np.dot(g[i], g[j]) for j in range(n)] for i in range(n)])


def ref_nbs(K, L):
    Kc, Lc = ref_center_gram(K, False), ref_center_gram(L, False)
    lam = np.clip(np.real(np.linalg.eigvals(Kc @ Lc)), 0, None)
    return np.sqrt(lam).sum() / np.sqrt(np.trace(Kc) * np.trace(Lc))


def test_gram_gradient_is_the_entrywise_formula():
    x, g = layer(0, n=7, p=3, pg=2)
    np.testing.assert_allclose(gram_gradient(x, g), ref_product(x, g), rtol=1e-13)


ROUTES = ["features", "gram", "blocks"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("debiased", [False, True])
def test_every_route_equals_the_direct_formula(route, debiased):
    (x, gx), (y, gy) = layer(1, p=3), layer(2, p=5)
    K, L = ref_product(x, gx), ref_product(y, gy)
    want = song_cka(K, L) if debiased else ref_cka(K, L)
    assert ref_cka(K, L, debiased=debiased) == pytest.approx(want, abs=1e-12)  # the two references agree
    states = [gmod._gradient_cka_state(torch.from_numpy(a), torch.from_numpy(b), unbiased=debiased, buckets=None,
                                       nonzeros=1, seed=0, block_size=7, route=route) for a, b in ((x, gx), (y, gy))]
    got = float(gmod._gradient_cka_score(*states, name="gradient_cka"))
    assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("pair", [("features", "gram"), ("features", "blocks"), ("gram", "blocks")])
@pytest.mark.parametrize("debiased", [False, True])
def test_mixed_routes_agree(pair, debiased):
    (x, gx), (y, gy) = layer(3, p=3), layer(4, p=6)
    want = ref_cka(ref_product(x, gx), ref_product(y, gy), debiased=debiased)
    for a, b in (pair, pair[::-1]):
        sx = gmod._gradient_cka_state(torch.from_numpy(x), torch.from_numpy(gx), unbiased=debiased, buckets=None,
                                      nonzeros=1, seed=0, block_size=4, route=a)
        sy = gmod._gradient_cka_state(torch.from_numpy(y), torch.from_numpy(gy), unbiased=debiased, buckets=None,
                                      nonzeros=1, seed=0, block_size=4, route=b)
        assert float(gmod._gradient_cka_score(sx, sy, name="gradient_cka")) == pytest.approx(want, abs=1e-12)


def test_public_function_matches_gram_cka_and_the_face_split_identity():
    (x, gx), (y, gy) = layer(5, n=50, p=6), layer(6, n=50, p=4)
    want = ref_cka(ref_product(x, gx), ref_product(y, gy))
    assert gradient_cka(x, y, gx, gy) == pytest.approx(want, abs=1e-12)
    assert gram_cka(gram_gradient(x, gx), gram_gradient(y, gy)) == pytest.approx(want, abs=1e-12)
    zx = np.einsum("ip,iq->ipq", x, gx).reshape(50, -1)  # rows x_i (outer) g_i
    zy = np.einsum("ip,iq->ipq", y, gy).reshape(50, -1)
    assert linear_cka(zx, zy) == pytest.approx(want, abs=1e-12)
    assert gradient_cka(x, y, gx, gy, block_size=9) == pytest.approx(want, abs=1e-12)


def test_invariances_of_the_product_kernel():
    (x, gx), (y, gy) = layer(7, n=40), layer(8, n=40)
    rng = np.random.default_rng(0)
    v = gradient_cka(x, y, gx, gy)
    q, r = orthogonal(rng, 4), orthogonal(rng, 4)
    assert gradient_cka(x @ q, y, gx @ r, gy) == pytest.approx(v, abs=1e-12)  # orthogonal maps of either factor
    assert gradient_cka(3.0 * x, y, -1e-5 * gx, gy) == pytest.approx(v, abs=1e-12)  # scale and sign
    assert gradient_cka(x, x, gx, gx) == pytest.approx(1.0, abs=1e-12)
    assert gradient_cka(x + 1.0, y, gx, gy) != pytest.approx(v, abs=1e-3)  # features are not centred: a shift matters


def test_large_n_takes_the_blockwise_route_and_matches_a_dense_reference():
    n = gmod.GRADIENT_DENSE_MAX_N + 300
    (x, gx), (y, gy) = layer(9, n=n, p=40), layer(10, n=n, p=30)
    m = get("gradient_cka")
    st = m.prepare(x, grad=gx)
    assert st.route == "blocks" and st.data is None  # nothing n x n is stored
    K, L = (x @ x.T) * (gx @ gx.T), (y @ y.T) * (gy @ gy.T)
    assert float(m(x, y, x_grad=gx, y_grad=gy)) == pytest.approx(ref_cka(K, L), abs=1e-12)


@pytest.mark.parametrize("route", ["features", "gram"])
def test_gradient_nbs_routes_equal_the_eigenvalue_formula(route):
    (x, gx), (y, gy) = layer(11, p=3), layer(12, p=4)
    want = ref_nbs(ref_product(x, gx), ref_product(y, gy))
    states = [gmod._gradient_nbs_state(torch.from_numpy(a), torch.from_numpy(b), buckets=None, nonzeros=1, seed=0,
                                       route=route) for a, b in ((x, gx), (y, gy))]
    assert float(gmod._gradient_nbs_score(*states, name="gradient_nbs")) == pytest.approx(want, abs=1e-6)
    assert gradient_nbs(x, y, gx, gy) == pytest.approx(gram_nbs(gram_gradient(x, gx), gram_gradient(y, gy)), abs=1e-10)
    assert 0.0 <= gradient_nbs(x, y, gx, gy) <= 1.0 and gradient_nbs(x, x, gx, gx) == pytest.approx(1.0, abs=1e-10)


def test_zero_gradients_and_bad_shapes_are_refused():
    x, g = layer(13)
    with pytest.raises(DegenerateInputError, match="gradient_cka: y has a constant product kernel"):
        gradient_cka(x, x, g, np.zeros_like(g))
    with pytest.raises(DegenerateInputError, match="gradient_nbs: x has a constant product kernel"):
        gradient_nbs(x, x, np.zeros_like(g), g)
    with pytest.raises(DegenerateInputError, match="constant product kernel"):
        gradient_cka(x, x, g, np.zeros_like(g), block_size=5)  # the blockwise route finds it in its pass
    with pytest.raises(InputError, match=r"x_grad has shape \(30, 3\), x has \(30, 4\)"):
        gradient_cka(x, x, g[:, :3], g)
    with pytest.raises(InputError, match="gradient_cka: needs the gradients of x"):
        get("gradient_cka")(x, x)
    with pytest.raises(ConfigError, match="debiased=True cannot be combined with buckets"):
        get("gradient_cka", debiased=True, buckets=64)
    with pytest.raises(ConfigError, match=r"buckets \(30\) must be a multiple of nonzeros \(4\)"):
        get("gradient_nbs", buckets=30, nonzeros=4)


def test_torch_input_is_differentiable_and_stays_on_its_device():
    (x, gx), (y, gy) = layer(14), layer(15)
    xt = torch.from_numpy(x).requires_grad_(True)
    v = gradient_cka(xt, y, gx, gy)
    v.backward()
    assert isinstance(v, torch.Tensor) and xt.grad is not None and torch.isfinite(xt.grad).all()
    # gradient check of the dense route against finite differences
    f = lambda a: gradient_cka(a, torch.from_numpy(y), torch.from_numpy(gx), torch.from_numpy(gy))  # noqa: E731
    assert torch.autograd.gradcheck(f, (torch.from_numpy(x).requires_grad_(True),))


@pytest.mark.parametrize("k", [-1000, -300, 0, 300, 1000])
@pytest.mark.parametrize("route", ["features", "gram", "blocks"])
def test_power_of_two_scale_of_features_or_gradients_gives_the_identical_value(k, route):
    (x, gx), (y, gy) = layer(16, p=3), layer(17, p=4)
    opts = {"block_size": 6} if route == "blocks" else {}
    f = lambda a, b, ga, gb: gmod._gradient_cka_score(  # noqa: E731
        gmod._gradient_cka_state(torch.from_numpy(a), torch.from_numpy(ga), unbiased=False, buckets=None, nonzeros=1,
                                 seed=0, block_size=opts.get("block_size"), route=route),
        gmod._gradient_cka_state(torch.from_numpy(b), torch.from_numpy(gb), unbiased=False, buckets=None, nonzeros=1,
                                 seed=0, block_size=opts.get("block_size"), route=route), name="gradient_cka")
    base = float(f(x, y, gx, gy))
    assert float(f(np.ldexp(x, k), y, gx, np.ldexp(gy, -k))) == base
    assert gradient_nbs(np.ldexp(x, k), y, gx, gy) == gradient_nbs(x, y, gx, gy)


def test_compare_takes_the_gradients_from_extract():
    from layer_sim import compare, extract, layer_identification
    from layer_sim.models.mlp import MLP

    gen = torch.Generator().manual_seed(0)
    data = torch.rand(60, 10, generator=gen, dtype=torch.float64)
    nets = [MLP((10, 6, 5, 3), seed=s).double() for s in range(3)]
    reps = [extract(net, data, gradients=True, objective="tang") for net in nets]
    s = compare(reps[0], reps[1], measure="gradient_cka")
    for i, a in enumerate(s.rows):
        for j, b in enumerate(s.cols):
            K = ref_product(reps[0][a].numpy(), reps[0].gradients[a].numpy())
            L = ref_product(reps[1][b].numpy(), reps[1].gradients[b].numpy())
            assert s.values[i, j] == pytest.approx(ref_cka(K, L), abs=1e-10)
    res = layer_identification(reps, "gradient_nbs")
    assert res.scores.shape == (3, 3, 2, 2) and 0 <= res.accuracy <= 1
    with pytest.raises(InputError, match="gradient_cka uses gradients, but a has none"):
        compare(extract(nets[0], data), measure="gradient_cka")
