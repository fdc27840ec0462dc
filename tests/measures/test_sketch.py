"""The count sketch: its structure, batch additivity, its moment bound, and Tang et al.'s sketched kernel."""

import numpy as np
import pytest
import torch

from layer_sim import ConfigError
from layer_sim.measures import count_sketch, gradient_cka, gradient_nbs

from _references import ref_cka  # noqa: E402 (rootdir import, as test_cka.py)


def dense_s(n, *, buckets, nonzeros=1, seed=0):
    """S itself, read off as the sketch of the identity (column j = S e_j)."""
    return count_sketch(np.eye(n), buckets=buckets, nonzeros=nonzeros, seed=seed)


@pytest.mark.parametrize("buckets, nonzeros", [(8, 1), (12, 3), (16, 4)])
def test_each_column_has_one_signed_entry_per_block(buckets, nonzeros):
    S = dense_s(5000, buckets=buckets, nonzeros=nonzeros, seed=3)  # spans two hash chunks
    block = buckets // nonzeros
    for t in range(nonzeros):
        part = S[t * block : (t + 1) * block]
        assert ((part != 0).sum(axis=0) == 1).all()
        np.testing.assert_allclose(np.abs(part).sum(axis=0), 1 / np.sqrt(nonzeros), rtol=1e-15)
    # buckets are used roughly uniformly and signs are balanced
    counts = (S[:block] != 0).sum(axis=1)
    assert counts.min() > 0.7 * 5000 / block and (S > 0).sum() == pytest.approx((S != 0).sum() / 2, rel=0.05)


def test_batches_add_up_to_the_whole_sketch():
    x = np.random.default_rng(0).standard_normal((9000, 3))
    whole = count_sketch(x, buckets=32, nonzeros=2, seed=5)
    parts = sum(count_sketch(x[s : s + 1000], buckets=32, nonzeros=2, seed=5, start=s) for s in range(0, 9000, 1000))
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-12)
    assert not np.allclose(count_sketch(x, buckets=32, nonzeros=2, seed=6), whole)  # the seed matters


@pytest.mark.parametrize("buckets, nonzeros", [(16, 1), (16, 4)])
def test_norms_are_unbiased_with_the_closed_form_variance(buckets, nonzeros):
    # E||Sv||^2 = ||v||^2 and Var||Sv||^2 = 2 (||v||^4 - sum v^4) / M: the error bound of the sketch.
    v = np.random.default_rng(1).standard_normal((60, 1))
    norm2, fourth = float((v**2).sum()), float((v**4).sum())
    draws = np.array([float((count_sketch(v, buckets=buckets, nonzeros=nonzeros, seed=s) ** 2).sum()) for s in range(3000)])
    var = 2 * (norm2**2 - fourth) / buckets
    assert abs(draws.mean() - norm2) < 4 * np.sqrt(var / len(draws))  # 4 standard errors
    assert draws.var() == pytest.approx(var, rel=0.12)  # the sample variance of 3000 draws is within ~8% (3 SE)


def test_sketched_kernel_is_tangs_construction():
    rng = np.random.default_rng(2)
    n, M = 300, 32
    x, y = np.abs(rng.standard_normal((n, 5))), np.abs(rng.standard_normal((n, 4)))
    gx, gy = rng.standard_normal((n, 5)), rng.standard_normal((n, 4))
    S = dense_s(n, buckets=M, seed=7)
    K = (S @ x @ (S @ x).T) * (S @ gx @ (S @ gx).T)  # (SF SF^T) o (SG SG^T), M x M
    L = (S @ y @ (S @ y).T) * (S @ gy @ (S @ gy).T)
    assert gradient_cka(x, y, gx, gy, buckets=M, seed=7) == pytest.approx(ref_cka(K, L), abs=1e-12)
    Kc = K - K.mean(0, keepdims=True) - K.mean(1, keepdims=True) + K.mean()  # Tang et al.'s (correct) centring
    Lc = L - L.mean(0, keepdims=True) - L.mean(1, keepdims=True) + L.mean()
    lam = np.clip(np.real(np.linalg.eigvals(Kc @ Lc)), 0, None)
    want = np.sqrt(lam).sum() / np.sqrt(np.trace(Kc) * np.trace(Lc))
    assert gradient_nbs(x, y, gx, gy, buckets=M, seed=7) == pytest.approx(want, abs=1e-6)


def test_the_sketch_error_shrinks_as_buckets_grow():
    rng = np.random.default_rng(3)
    n = 1500
    x = np.maximum(rng.standard_normal((n, 8)), 0)
    y = np.maximum(x @ rng.standard_normal((8, 8)) + 0.5 * rng.standard_normal((n, 8)), 0)
    gx, gy = rng.standard_normal((n, 8)) * (x > 0), rng.standard_normal((n, 8)) * (y > 0)
    exact = gradient_cka(x, y, gx, gy)
    err = {M: np.mean([abs(gradient_cka(x, y, gx, gy, buckets=M, seed=s) - exact) for s in range(6)]) for M in (16, 1024)}
    assert err[1024] < err[16] / 2


def test_options_are_checked():
    with pytest.raises(ConfigError, match="count_sketch: buckets must be an integer >= 1"):
        count_sketch(np.ones((3, 2)), buckets=0)
    with pytest.raises(ConfigError, match="count_sketch: start must be an integer >= 0"):
        count_sketch(np.ones((3, 2)), buckets=4, start=-1)
    out = count_sketch(torch.ones(3, 2, dtype=torch.float64, requires_grad=True), buckets=4)
    assert isinstance(out, torch.Tensor) and out.requires_grad
