"""NBS on Gram matrices and on features, against the eigenvalue formula and scipy's matrix square root."""

import numpy as np
import pytest
import scipy.linalg
import torch

from layer_sim import DegenerateInputError, InputError
from layer_sim.measures import gram_linear, gram_nbs, gram_rbf, nbs

from _references import orthogonal, ref_center_gram  # noqa: E402 (rootdir import, as test_cka.py)


def ref_nbs_sqrtm(K, L):
    """tr((Kc^1/2 Lc Kc^1/2)^1/2) / sqrt(tr Kc tr Lc), transcribed with scipy.linalg.sqrtm."""
    Kc, Lc = ref_center_gram(K, False), ref_center_gram(L, False)
    r = np.real(scipy.linalg.sqrtm(Kc))
    inner = np.real(scipy.linalg.sqrtm(r @ Lc @ r))
    return np.trace(inner) / np.sqrt(np.trace(Kc) * np.trace(Lc))


def ref_nbs_eigvals(K, L):
    """sum_i sqrt(lambda_i(Kc Lc)) (Tang et al.'s form, with a correct centring)."""
    Kc, Lc = ref_center_gram(K, False), ref_center_gram(L, False)
    lam = np.clip(np.real(np.linalg.eigvals(Kc @ Lc)), 0, None)
    return np.sqrt(lam).sum() / np.sqrt(np.trace(Kc) * np.trace(Lc))


def pair(seed, n=40, p=5, q=7):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    y = np.tanh(x @ rng.standard_normal((p, q))) + 0.5 * rng.standard_normal((n, q))
    return x, y


# A centred kernel is singular (H1 = 0), and the square root of an eigenvalue at rounding level
# eps * lambda_max is sqrt(eps) * sqrt(lambda_max): the matrix-function references carry errors
# of about n * sqrt(eps) ~ 1e-6, while the nuclear-norm reference below is exact to ~1e-13.
SQRT_TOL = 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_gram_nbs_equals_the_matrix_square_root_formula_and_the_eigenvalue_formula(seed):
    x, y = pair(seed)
    K, L = x @ x.T, np.exp(-0.1 * ((y[:, None] - y[None]) ** 2).sum(-1))  # linear and RBF kernels
    want = ref_nbs_sqrtm(K, L)
    assert gram_nbs(K, L) == pytest.approx(want, abs=SQRT_TOL)
    assert gram_nbs(K, L) == pytest.approx(ref_nbs_eigvals(K, L), abs=SQRT_TOL)
    assert gram_nbs(L, K) == pytest.approx(gram_nbs(K, L), abs=1e-12)  # symmetric


def ref_nbs_nuclear(x, y):
    """||Xc^T Yc||_* / (||Xc||_F ||Yc||_F): the eigenvalues of Kc Lc are the squared singular values of Xc^T Yc."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    return np.linalg.svd(xc.T @ yc, compute_uv=False).sum() / (np.linalg.norm(xc) * np.linalg.norm(yc))


@pytest.mark.parametrize("shape", [(40, 5, 7), (12, 30, 25), (20, 20, 3)])  # p < n, p > n, p = n
def test_nbs_on_features_equals_gram_nbs_of_linear_kernels(shape):
    n, p, q = shape
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((n, p)), rng.standard_normal((n, q)) + rng.standard_normal((n, 1))
    want = ref_nbs_nuclear(x, y)
    assert want == pytest.approx(ref_nbs_sqrtm(x @ x.T, y @ y.T), abs=SQRT_TOL)
    assert nbs(x, y) == pytest.approx(want, abs=1e-12)
    assert gram_nbs(gram_linear(x), gram_linear(y)) == pytest.approx(want, abs=1e-12)


def test_bounds_identity_and_invariances():
    x, y = pair(5, n=60)
    rng = np.random.default_rng(0)
    assert nbs(x, x) == pytest.approx(1.0, abs=1e-12)
    v = nbs(x, y)
    assert 0.0 <= v <= 1.0
    assert nbs(3.0 * x @ orthogonal(rng, 5) - 2.0, y) == pytest.approx(v, abs=1e-12)
    assert nbs(x, y * 1e-7) == pytest.approx(v, abs=1e-12)
    K = gram_rbf(x)
    assert gram_nbs(K, 4.0 * K + 1.0) == pytest.approx(1.0, abs=1e-12)
    # independent random PSD kernels stay inside [0, 1]
    for s in range(5):
        a, b = np.random.default_rng(s).standard_normal((2, 30, 4))
        assert 0.0 <= gram_nbs(a @ a.T, b @ b.T) <= 1.0


def test_orthogonal_column_spaces_give_zero():
    # X_c^T Y_c = 0: centred features orthogonal in example space
    x = np.zeros((8, 1))
    y = np.zeros((8, 1))
    x[:4, 0], x[4:, 0] = 1.0, -1.0
    y[[0, 1, 4, 5], 0], y[[2, 3, 6, 7], 0] = 1.0, -1.0
    assert nbs(x, y) == pytest.approx(0.0, abs=1e-15)


def test_the_value_is_the_sum_of_square_roots_not_a_vector():
    # The original layer_sim returned sqrt(eigenvalues) / normaliser as a vector.
    x, y = pair(2)
    assert np.ndim(gram_nbs(x @ x.T, y @ y.T)) == 0


def test_bad_kernels_are_refused():
    x, _ = pair(0, n=10)
    K = x @ x.T
    with pytest.raises(InputError, match="gram_nbs: L is not positive semi-definite"):
        gram_nbs(K, -K)
    with pytest.raises(DegenerateInputError, match="gram_nbs: K is a constant kernel"):
        gram_nbs(np.ones((10, 10)), K)
    with pytest.raises(InputError, match="same examples"):
        gram_nbs(K, K[:5, :5])
    with pytest.raises(DegenerateInputError, match="nbs: y is constant"):
        nbs(x, np.ones((10, 2)))


def test_torch_input_gives_a_tensor_and_float32_agrees():
    x, y = pair(3)
    v = nbs(torch.from_numpy(x), torch.from_numpy(y))
    assert isinstance(v, torch.Tensor) and v.dtype == torch.float64
    assert float(nbs(torch.from_numpy(x).float(), y)) == pytest.approx(nbs(x, y), abs=1e-6)
