r"""Normalised Bures similarity (NBS) on Gram matrices and on features.

.. math::

    \mathrm{NBS}(K, L) = \frac{\mathrm{tr}\big((K_c^{1/2} L_c K_c^{1/2})^{1/2}\big)}{\sqrt{\mathrm{tr}\,K_c \;\mathrm{tr}\,L_c}}
    = \frac{\sum_i \sqrt{\lambda_i(K_c L_c)}}{\sqrt{\mathrm{tr}\,K_c \;\mathrm{tr}\,L_c}},

with :math:`K_c = HKH` the double-centred kernels. For positive semi-definite kernels written as
:math:`K_c = A A^\top`, :math:`L_c = B B^\top` (any factors, e.g. centred features), the
numerator is the nuclear norm :math:`\lVert A^\top B\rVert_*` (the eigenvalues of
:math:`K_c L_c` are those of :math:`(A^\top B)(A^\top B)^\top`) and :math:`\mathrm{tr} K_c =
\lVert A\rVert_F^2`. So with linear kernels NBS needs only the singular values of the
:math:`p_x \times p_y` cross-product :math:`X_c^\top Y_c`, no n x n matrix, and it lies in [0, 1]
(von Neumann's trace inequality), equal to 1 when :math:`K_c = c L_c`.

This is the ``nbs(kernel1, kernel2)`` of the original layer_sim done right: that one took the
square roots of the eigenvalues but returned the vector divided by the normaliser instead of
their sum (and centred with the wrong means).

References
----------
Tang, Maddox, Dickens, Diethe & Damianou (2020). Similarity of neural networks with gradients. arXiv:2003.11498.
Bhatia, Jain & Lim (2019). On the Bures-Wasserstein distance between positive definite matrices. Expo. Math. 37.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from layer_sim._options import strict_signature
from layer_sim.errors import InputError
from layer_sim.measures import kernels as k
from layer_sim.measures._features import CONSTANT, centred, degenerate_error, is_constant, ldexp, scale_exponent
from layer_sim.measures._hsic import unit_scale
from layer_sim.measures._registry import Measure, get, register
from layer_sim.measures._validation import as_square, check_range, is_numpy_pair, to_output

__all__ = ["nbs", "gram_nbs"]


# --------------------------------------------------------------------------- pure core


def nbs_factors(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""NBS of the kernels :math:`A A^\top` and :math:`B B^\top`: :math:`\lVert A^\top B\rVert_* / (\lVert A\rVert_F \lVert B\rVert_F)`.

    ``a`` (n, r) and ``b`` (n, s) are factors of the *centred* kernels; no checks.
    """
    a, b = unit_scale(a), unit_scale(b)
    nuclear = torch.linalg.svdvals(a.mT @ b).sum()
    return nuclear / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))


def factor_of_features(xc: torch.Tensor) -> torch.Tensor:
    r"""A factor of :math:`X_c X_c^\top` with at most min(n, p) columns: ``xc`` itself when p < n,
    else :math:`U S` from the thin SVD (the nuclear norm ignores the right factor)."""
    n, p = xc.shape
    if p < n:
        return xc
    u, s, _ = torch.linalg.svd(xc, full_matrices=False)
    return u * s


def factor_of_gram(kc: torch.Tensor) -> torch.Tensor:
    r"""A factor :math:`U \Lambda^{1/2}` of a centred PSD Gram, without the directions whose
    eigenvalue is at rounding level (:math:`\lambda \le n \epsilon \lambda_{max}`, negative ones
    included): they contribute nothing beyond rounding to either trace or the nuclear norm."""
    lam, u = torch.linalg.eigh(kc)
    keep = lam > kc.shape[0] * torch.finfo(kc.dtype).eps * lam[-1].clamp_min(0)
    return u[:, keep] * lam[keep].sqrt()


# --------------------------------------------------------------------------- Gram matrices


@strict_signature
def gram_nbs(K, L):
    r"""Normalised Bures similarity of two given kernel (Gram) matrices of the same examples.

    .. math::

        \mathrm{NBS}(K, L) = \frac{\mathrm{tr}\big((K_c^{1/2} L_c K_c^{1/2})^{1/2}\big)}{\sqrt{\mathrm{tr}\,K_c\;\mathrm{tr}\,L_c}},
        \qquad K_c = HKH,\; H = I - \tfrac1n \mathbf 1\mathbf 1^\top.

    Computed as the nuclear norm :math:`\lVert A^\top B\rVert_*` of factors :math:`K_c = AA^\top`,
    :math:`L_c = BB^\top` from symmetric eigendecompositions (O(n^3)).

    Parameters
    ----------
    K, L : {array-like, Tensor} of shape (n, n)
        Symmetric positive semi-definite kernel matrices (symmetric to rounding is accepted).

    Returns
    -------
    float or Tensor
        In [0, 1]; 1 when :math:`K_c` and :math:`L_c` are proportional. Invariant to positive
        scaling of either kernel and to adding a constant. A float for NumPy input.

    Raises
    ------
    InputError
        Not square or not symmetric, different sizes, NaN/Inf, fewer than 2 examples, or a
        centred kernel with a negative eigenvalue beyond rounding (not PSD, so no square root).
    DegenerateInputError
        A constant kernel (zero after centring).

    References
    ----------
    Tang et al. (2020), arXiv:2003.11498 (NBS as a similarity index, their ``nbs``).

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim.measures import gram_linear, gram_nbs
    >>> x = np.random.default_rng(0).standard_normal((30, 4))
    >>> K = gram_linear(x)
    >>> round(gram_nbs(K, 2.0 * K + 5.0), 12)
    1.0
    >>> bool(abs(gram_nbs(K, gram_linear(x[:, :2])) - nbs(x, x[:, :2])) < 1e-12)
    True
    """
    fn = "gram_nbs"
    Kt, Lt = as_square(K, name="K", fn=fn, min_n=2), as_square(L, name="L", fn=fn, min_n=2)
    if Kt.shape != Lt.shape:
        raise InputError(f"{fn}: K and L must be kernels of the same examples, got shapes {tuple(Kt.shape)} and {tuple(Lt.shape)}")
    if Kt.device != Lt.device:
        raise InputError(f"{fn}: K is on {Kt.device} but L is on {Lt.device}; move both to one device")
    a, b = _psd_factor(fn, "K", Kt), _psd_factor(fn, "L", Lt)
    return to_output(check_range(fn, nbs_factors(a, b)), is_numpy_pair(K, L))


def _psd_factor(fn: str, side: str, K: torch.Tensor) -> torch.Tensor:
    """Scale (exactly), centre, refuse constant or non-PSD kernels, and factor."""
    n = K.shape[0]
    Ks = ldexp(K, scale_exponent(float(K.detach().abs().amax()), K.dtype))
    Kc = k._centre_gram(Ks, False)
    if is_constant(float(torch.linalg.vector_norm(Kc.detach())), float(torch.linalg.vector_norm(Ks.detach())), n, n, K.dtype):
        raise degenerate_error(fn, side, "is a constant kernel (zero after centring)")
    lam = torch.linalg.eigvalsh(Kc.detach())
    if lam[0] < -(n**0.5) * (torch.finfo(K.dtype).eps ** 0.5) * lam[-1]:
        raise InputError(
            f"{fn}: {side} is not positive semi-definite (its centred form has eigenvalue {float(lam[0]):.3g} "
            f"against a largest {float(lam[-1]):.3g}); NBS needs the square root of a PSD kernel"
        )
    return factor_of_gram(Kc)


# --------------------------------------------------------------------------- features (linear kernels)


@dataclass(frozen=True)
class NBSState:
    """A representation prepared for ``nbs``: a factor of its centred linear kernel (n x min(n, p))."""

    n: int
    factor: torch.Tensor | None
    degenerate: str | None = None


def _nbs_state(X: torch.Tensor) -> NBSState:
    c = centred(X)
    if c.constant:
        return NBSState(X.shape[0], None, CONSTANT)
    return NBSState(X.shape[0], factor_of_features(c.xc))


def _nbs_score(px: NBSState, py: NBSState, *, name: str) -> torch.Tensor:
    for side, st in (("x", px), ("y", py)):
        if st.degenerate is not None:
            raise degenerate_error(name, side, st.degenerate)
    return check_range(name, nbs_factors(px.factor, py.factor))


@register("nbs")
def _nbs_factory() -> Measure:
    return Measure(name="nbs", prepare_fn=_nbs_state, score_fn=partial(_nbs_score, name="nbs"), symmetric=True, min_n=2)


@strict_signature
def nbs(x, y):
    r"""Normalised Bures similarity of two representations with linear kernels (Tang et al. 2020).

    .. math::

        \mathrm{NBS}(X, Y) = \frac{\mathrm{tr}\big((K_c^{1/2} L_c K_c^{1/2})^{1/2}\big)}{\sqrt{\mathrm{tr}\,K_c\;\mathrm{tr}\,L_c}}
        = \frac{\lVert X_c^\top Y_c\rVert_*}{\lVert X_c\rVert_F\,\lVert Y_c\rVert_F},

    :math:`K = XX^\top`, :math:`L = YY^\top`, :math:`X_c, Y_c` the column-centred inputs and
    :math:`\lVert\cdot\rVert_*` the nuclear norm (sum of singular values). Computed from the
    singular values of the :math:`p_x \times p_y` matrix :math:`X_c^\top Y_c` (a representation
    with p >= n is first reduced to its n x n factor :math:`US`), never an n x n matrix when p < n.
    Invariant to orthogonal maps, isotropic scaling and translation, like linear CKA.

    Parameters
    ----------
    x, y : {array-like, Tensor} of shape (n_examples, n_features)
        The same n >= 2 examples in rows.

    Returns
    -------
    float or Tensor
        In [0, 1]; a float for NumPy input, a 0-d tensor for torch input.

    Raises
    ------
    InputError
        Bad input (see :mod:`layer_sim.measures._validation`).
    DegenerateInputError
        ``x`` or ``y`` is constant.

    References
    ----------
    Tang et al. (2020), arXiv:2003.11498; Bhatia, Jain & Lim (2019), Expo. Math. 37 (the Bures metric).

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim.measures import nbs
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 6))
    >>> q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    >>> round(nbs(x, 3.0 * x @ q + 1.0), 12)
    1.0
    """
    return get("nbs")(x, y)
