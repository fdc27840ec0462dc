"""svd_reduction: SVCCA's first step, against a NumPy transcription; CKA on Gram matrices, right and S1's wrong centring."""


import numpy as np
import pytest
import torch

from layer_sim.errors import DegenerateInputError, InputError
from layer_sim.measures import cca, linear_cka, svcca, svd_reduction


def _data(n=300, p=12, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.geomspace(10.0, 0.01, p)  # distinct singular values: no tie at any threshold
    return rng.standard_normal((n, p)) * scales + 3.0


def _s1_reduction(x, v):
    """NumPy transcription of the original layer_sim's svd_reduction (centre, SVD, keep len(cum <= v) + 1)."""
    xc = x - x.mean(0)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    cum = np.cumsum(s**2) / np.sum(s**2)
    keep = len(np.where(cum <= v)[0]) + 1
    return u[:, :keep] * s[:keep]


@pytest.mark.parametrize("v", [0.5, 0.9, 0.99, 0.999])
def test_equals_the_original_librarys_reduction_up_to_column_signs(v):
    x = _data()
    got, want = svd_reduction(x, variance=v), _s1_reduction(x, v)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got @ got.T, want @ want.T, rtol=1e-9, atol=1e-9)  # sign-free


def test_columns_are_orthogonal_with_the_singular_values_as_norms_and_keep_the_share():
    x = _data()
    r = svd_reduction(x, variance=0.9)
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    gram = r.T @ r
    np.testing.assert_allclose(gram, np.diag(s[: r.shape[1]] ** 2), rtol=1e-10, atol=1e-8)
    share = np.cumsum(s**2) / np.sum(s**2)
    d = r.shape[1]
    assert share[d - 1] >= 0.9 > share[d - 2]  # the fewest directions that reach the share
    assert svd_reduction(x, variance=1.0).shape == (300, 12)


@pytest.mark.parametrize("v", [0.6, 0.95, 0.99])
def test_svcca_is_cca_on_the_reduced_data(v):
    x, y = _data(seed=1), _data(seed=2) + _data(seed=1) @ np.random.default_rng(3).standard_normal((12, 12))
    assert svcca(x, y, variance=v) == pytest.approx(cca(svd_reduction(x, variance=v), svd_reduction(y, variance=v)), abs=1e-12)


def test_wide_inputs_keep_fewer_directions_than_examples_and_torch_stays_differentiable():
    x = np.random.default_rng(0).standard_normal((40, 500))
    assert svd_reduction(x, variance=1.0).shape == (40, 39)  # centring: rank n - 1
    t = torch.tensor(_data(n=50, p=5), requires_grad=True)
    out = svd_reduction(t, variance=0.99)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.requires_grad
    out.square().sum().backward()  # = sum of kept s_i^2
    assert t.grad is not None and torch.isfinite(t.grad).all()


def test_bad_input_is_named():
    with pytest.raises(DegenerateInputError, match="svd_reduction: x is constant"):
        svd_reduction(np.ones((10, 3)))
    with pytest.raises(InputError, match=r"svd_reduction: variance must be a number in \(0, 1\], got 0"):
        svd_reduction(_data(), variance=0)
    bad = _data()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="svd_reduction: x contains 1 NaN"):
        svd_reduction(bad)


# ----------------------------------------------------------------------------- CKA on Gram matrices


def _hsic_gram(K, L, centre):
    Kc, Lc = centre(K), centre(L)
    return np.sum(Kc * Lc)


def _correct(K):
    n = len(K)
    H = np.eye(n) - np.ones((n, n)) / n
    return H @ K @ H


def _s1_centring(K):
    """The original nn_comparison.py's centring: kernel - kernel.mean(0) - kernel.mean(1) + kernel.mean() (no keepdim)."""
    return K - K.mean(0) - K.mean(1) + K.mean()


def test_cka_on_linear_kernels_needs_double_centring_and_the_original_centring_is_wrong():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((60, 7)) + rng.standard_normal(7) * 3  # non-zero column means
    y = np.tanh(x @ rng.standard_normal((7, 5))) + 1.0
    K, L = x @ x.T, y @ y.T

    def cka(centre):
        return _hsic_gram(K, L, centre) / np.sqrt(_hsic_gram(K, K, centre) * _hsic_gram(L, L, centre))

    assert cka(_correct) == pytest.approx(linear_cka(x, y), abs=1e-12)  # H K H: the definition
    # S1 subtracts column means twice and row means never: no longer H K H, and another number.
    assert not np.allclose(_s1_centring(K), _correct(K))
    assert abs(cka(_s1_centring) - linear_cka(x, y)) > 1e-2
