"""Values right at any scale (issue 10 §1): c * x gives the value of x wherever c * x is representable.

The reference is the measure's own value at unit scale, which is legitimate here because the
property under test is invariance: a scale-invariant index must not change when its input is
multiplied by c. For exact powers of two the scaled input holds exactly the same digits, so the
value must be identical to the bit; for c = 10**k the input itself is rounded and the values
agree to that rounding. Non-invariant linear HSIC must scale as c^2 or refuse clearly.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import layer_sim as ls
from layer_sim import DegenerateInputError, InputError
from layer_sim.measures import available, gram_cka, gram_linear, gram_rbf, get

FEW = settings(max_examples=15, deadline=None)
# Gradient-aware measures take four arrays; their scale tests are in test_gradient.py.
PARAMS = {"minibatch_cka": {"batch_size": 12}}
INVARIANT = [n for n in available() if n != "linear_hsic" and not get(n, **PARAMS.get(n, {})).uses_gradients]


def bounded(v):
    """Every magnitude moved into [1/4, 4] (monotone, sign kept), so 2**k * v stays normal for
    k in [-1020, 1020] in float64 and [-124, 125] in float32: the scaled input holds the same digits."""
    return np.sign(v) * np.exp2(np.clip(np.log2(np.abs(v) + 1e-300), -2, 2))


def pair(seed, n=36, p=5, q=4, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) + rng.uniform(-3, 3, p)
    y = x[:, :3] @ rng.standard_normal((3, q)) + rng.standard_normal((n, q))
    return bounded(x).astype(dtype), bounded(y).astype(dtype)


def routes(name):
    """The measure as a single call, through compare, and (linear CKA) the all-pairs and streaming engines."""
    m = get(name, **PARAMS.get(name, {}))
    out = {"call": lambda x, y: float(m(x, y)), "compare": lambda x, y: float(ls.compare({"x": x}, {"y": y}, measure=m).values[0, 0])}
    if name == "linear_cka":
        out["linear_cka_matrix"] = lambda x, y: float(ls.linear_cka_matrix([x], [y])[0, 0])
        out["linear_cka_matrix fp32"] = lambda x, y: float(ls.linear_cka_matrix([x], [y], precision="fp32")[0, 0])
        out["streaming"] = lambda x, y: float(_stream(ls.StreamingLinearCKA(), x, y).value())
        # gram_linear itself is not scale invariant (its entries are c^2 x.y); gram_cka on its scaled
        # output is checked in test_gram_cka_at_any_kernel_scale below.
    if name == "cca_rho":
        out["streaming"] = lambda x, y: float(_stream(ls.StreamingCCA(), x, y).value())
    if name == "rbf_cka":
        out["blockwise"] = lambda x, y: float(ls.rbf_cka(x, y, block_size=5))
        out["gram_cka"] = lambda x, y: float(gram_cka(gram_rbf(x), gram_rbf(y)))
    return out


def _stream(acc, x, y):
    for s in range(0, x.shape[0], 10):
        acc.update(x[s : s + 10], y[s : s + 10])
    return acc


# float64: 2**k * x stays normal for |k| <= 1020 (see bounded); the samples include the ends.
K64 = st.one_of(st.sampled_from([-1020, -1019, 1019, 1020]), st.integers(-1020, 1020))
# float32: max |x| from 2**-122 (about 2e-37) to 2**127 (about 1.7e38).
K32 = st.one_of(st.sampled_from([-124, 125]), st.integers(-124, 125))


@FEW
@given(k=K64, both=st.booleans(), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("name", INVARIANT)
def test_power_of_two_scale_gives_the_identical_value(name, k, both, seed):
    x, y = pair(seed)
    for route, f in routes(name).items():
        base = f(x, y)
        scaled = f(np.ldexp(x, k), np.ldexp(y, -k) if both else y)
        tol = 1e-6 if route.endswith("fp32") else 0.0  # fp32 GEMMs of differently scaled data round differently
        assert abs(scaled - base) <= tol, (route, k, scaled, base)


@FEW
@given(e=st.integers(-300, 300), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("name", INVARIANT)
def test_decimal_scales_agree_to_input_rounding(name, e, seed):
    x, y = pair(seed)
    c = 10.0**e
    for route, f in routes(name).items():
        assert f(c * x, y) == pytest.approx(f(x, y), abs=1e-6 if route.endswith("fp32") else 1e-9), (route, e)


@FEW
@given(k=K32, seed=st.integers(0, 2**16))
@pytest.mark.parametrize("name", ["linear_cka", "linear_cka_debiased", "rbf_cka", "cca_rho", "procrustes", "pwcca"])
def test_float32_scales_up_to_1e37(name, k, seed):
    # float32 activations of a diverging network (1e37 = 2**123) or a vanishing one; torch input.
    x, y = pair(seed, dtype=np.float32)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for route, f in routes(name).items():
        base = f(tx, ty)
        assert abs(f(torch.ldexp(tx, torch.tensor(k)), ty) - base) <= (1e-6 if route.endswith("fp32") else 0.0), route


@FEW
@given(k=st.integers(-1000, 1000), seed=st.integers(0, 2**16))
def test_gram_cka_at_any_kernel_scale(k, seed):
    x, y = pair(seed)
    K, L = gram_linear(x), gram_linear(y)
    for debiased in (False, True):
        assert gram_cka(np.ldexp(K, k), L, debiased=debiased) == gram_cka(K, L, debiased=debiased)


def test_the_reported_failures_are_gone():
    # Issue 10 §1: float32 ~1e37 gave 0.0; float64 * 1e150 gave 0.0, * 1e-150 "outside [0, 1]",
    # * 1e+-300 "x is constant".
    x, y = pair(0)
    want = ls.linear_cka(x, y)
    x32 = (x / np.abs(x).max() * 3e37).astype(np.float32)
    assert ls.linear_cka(x32, y) == pytest.approx(ls.linear_cka(x32.astype(np.float64) / 3e37, y), abs=1e-12)
    for c in (1e150, 1e-150, 1e300, 1e-300):
        assert ls.linear_cka(c * x, c * y) == pytest.approx(want, abs=1e-12)
        assert ls.linear_cka_matrix([c * x], [c * y])[0, 0] == pytest.approx(want, abs=1e-12)
        assert ls.cca(c * x, y) == pytest.approx(ls.cca(x, y), abs=1e-12)


@pytest.mark.parametrize("c", [1e-300, 1e300])
def test_streaming_rescales_when_a_later_batch_is_far_larger(c):
    # The first batch fixes the state's scale; later batches 1e+-600 times larger force an exact rescale.
    x, y = pair(3, n=40)
    xs = np.r_[c * x[:20], x[20:] / c] if c > 1 else np.r_[c * x[:20], x[20:]]
    ys = np.r_[y[:20], y[20:]]
    one_shot = ls.linear_cka(xs, ys)
    acc = ls.StreamingLinearCKA().update(xs[:20], ys[:20]).update(xs[20:], ys[20:])
    assert acc.value() == pytest.approx(one_shot, abs=1e-12)
    acc = ls.StreamingCCA().update(xs[:20], ys[:20]).update(xs[20:], ys[20:])
    assert acc.value() == pytest.approx(ls.cca(xs, ys), abs=1e-10)


# --------------------------------------------------------------------------- linear HSIC: scales or refuses


@FEW
@given(k=st.integers(-600, 600), seed=st.integers(0, 2**16))
def test_linear_hsic_scales_as_c_squared_or_refuses(k, seed):
    x, y = pair(seed)
    base = ls.linear_hsic(x, y)
    log2 = math.log2(base) + 2 * k
    if math.log2(np.finfo(np.float64).tiny) <= log2 < 1024 - 1e-9:
        assert ls.linear_hsic(np.ldexp(x, k), y) == math.ldexp(base, 2 * k)  # exact: scaling is exact
        s = ls.compare({"x": np.ldexp(x, k)}, {"y": y}, measure="linear_hsic").values[0, 0]
        assert s == pytest.approx(math.ldexp(base, 2 * k), rel=1e-12)
    else:
        with pytest.raises(InputError, match=r"linear_hsic: the value \(about 2\^-?\d+ = 1e-?\d+\) is outside the float64 range"):
            ls.linear_hsic(np.ldexp(x, k), y)
        with pytest.raises(InputError, match="HSIC is not scale invariant"):
            ls.compare({"x": np.ldexp(x, k)}, {"y": y}, measure="linear_hsic")


def test_linear_hsic_of_1e300_inputs_is_an_error_not_inf():
    x, y = pair(1)
    with pytest.raises(InputError, match=r"about 2\^\d+ = 1e120\d\)"):
        ls.linear_hsic(1e300 * x, 1e300 * y)
    t = ls.linear_hsic(torch.from_numpy(1e150 * x).requires_grad_(), torch.from_numpy(y))
    t = float(t.detach())
    assert math.isfinite(t) and t == pytest.approx(1e300 * ls.linear_hsic(x, y), rel=1e-12)


# --------------------------------------------------------------------------- RBF bandwidth extremes


def test_rbf_huge_sigma_is_linear_cka_the_exact_limit():
    # K = 1 - D / (2 s^2) + O(s^-4); centring removes the 1 and -H D H / 2 = H X X^T H, so as
    # sigma -> inf RBF CKA -> linear CKA (biased and debiased alike).
    x, y = pair(4)
    for sigma in (1e6, 1e150, 1e300, 1.7e308):
        for debiased in (False, True):
            assert ls.rbf_cka(x, y, sigma=sigma, debiased=debiased) == pytest.approx(
                ls.linear_cka(x, y, debiased=debiased), abs=1e-9 if sigma == 1e6 else 1e-12
            )
        assert ls.rbf_cka(x, y, sigma=sigma, block_size=7) == pytest.approx(ls.linear_cka(x, y), abs=1e-9)


def test_minibatch_rbf_huge_sigma_limit():
    # Per batch b, K_b -> 1 - D_b / (2 s^2 m_b) with m_b the batch's median squared distance, and
    # HSIC_1 ignores constants and additive terms f_i + f_j, so HSIC_1(K_b, L_b) ->
    # HSIC_1(X_b X_b^T / m_b, Y_b Y_b^T / m'_b) / (2 s^2)^2: linear minibatch CKA with batch weights
    # 1 / (m_b m'_b) (not the unweighted linear minibatch CKA).
    from _references import song_hsic1

    x, y = pair(7, n=48)
    perm = torch.randperm(48, generator=torch.Generator().manual_seed(0)).numpy()
    kl = kk = ll = 0.0
    for idx in np.array_split(perm, 4):
        a, b = x[idx], y[idx]
        ma = np.median(((a[:, None] - a[None]) ** 2).sum(-1))
        mb = np.median(((b[:, None] - b[None]) ** 2).sum(-1))
        K, L = a @ a.T / ma, b @ b.T / mb
        kl, kk, ll = kl + song_hsic1(K, L), kk + song_hsic1(K, K), ll + song_hsic1(L, L)
    expected = kl / np.sqrt(kk * ll)
    for sigma in (1e150, 1e300):
        assert ls.minibatch_cka(x, y, kernel="rbf", sigma=sigma, batch_size=12) == pytest.approx(expected, abs=1e-12)


def test_rbf_tiny_sigma_limit_or_an_error_naming_sigma():
    # As sigma -> 0, K -> I for distinct rows, so biased CKA(I, I) = 1; the unbiased HSIC_1 of I
    # is 0 (U-centring zeroes the diagonal), so debiased CKA is undefined there.
    x, y = pair(5)
    for sigma in (1e-5, 1e-300, 5e-324):
        assert ls.rbf_cka(x, y, sigma=sigma) == pytest.approx(1.0, abs=1e-12)
        assert ls.rbf_cka(x, y, sigma=sigma, block_size=4) == pytest.approx(1.0, abs=1e-12)
        with pytest.raises(DegenerateInputError, match=f"zero unbiased self-HSIC with the RBF kernel at sigma={sigma:g}"):
            ls.rbf_cka(x, y, sigma=sigma, debiased=True)
    assert np.array_equal(gram_rbf(x, sigma=1e-300), np.eye(36))
    assert np.array_equal(gram_rbf(x, sigma=1e300), np.ones((36, 36)))


def test_rbf_is_continuous_across_its_two_kernel_forms():
    # sigma <= 1 computes exp(-t), sigma > 1 the equivalent 2 sigma^2 (K - 1): the same CKA.
    x, y = pair(6)
    for debiased in (False, True):
        below = ls.rbf_cka(x, y, sigma=1.0, debiased=debiased)
        above = ls.rbf_cka(x, y, sigma=1.0 + 1e-12, debiased=debiased)
        assert above == pytest.approx(below, abs=1e-10)
