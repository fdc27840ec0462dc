"""svd_reduction: SVCCA's first step, against a NumPy transcription; CKA on Gram matrices, right and S1's wrong centring."""


import numpy as np
import pytest
import torch

from layer_sim.errors import ConfigError, DegenerateInputError, InputError
from layer_sim.measures import cca, gram_cka, linear_cka, svcca, svd_reduction


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
    with pytest.raises(ConfigError, match=r"svd_reduction: variance must be a finite number in \(0, 1\], got 0"):
        svd_reduction(_data(), variance=0)
    # Magnitudes far outside the float64 window are scaled exactly for the SVD, and back.
    x = _data()
    big = svd_reduction(x * 2.0**900)
    assert np.isfinite(big).all() and big.max() > 1e250  # in the input's units
    np.testing.assert_allclose(np.abs(big / 2.0**900), np.abs(svd_reduction(x)), rtol=1e-9, atol=1e-9)
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


def test_gram_cka_centres_as_defined_and_the_original_centring_gives_another_value():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((60, 7)) + rng.standard_normal(7) * 3  # non-zero column means
    y = np.tanh(x @ rng.standard_normal((7, 5))) + 1.0
    K, L = x @ x.T, y @ y.T

    def cka(centre):  # HSIC ratio after the given centring (NumPy)
        return _hsic_gram(K, L, centre) / np.sqrt(_hsic_gram(K, K, centre) * _hsic_gram(L, L, centre))

    # H K H, the definition: our gram_cka, the NumPy transcription and feature-space CKA agree.
    assert gram_cka(K, L) == pytest.approx(cka(_correct), abs=1e-12)
    assert gram_cka(K, L) == pytest.approx(linear_cka(x, y), abs=1e-12)
    # S1 subtracts column means twice and row means never: not H K H, and another number.
    assert not np.allclose(_s1_centring(K), _correct(K))
    assert abs(cka(_s1_centring) - gram_cka(K, L)) > 1e-2
