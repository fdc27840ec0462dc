r"""The pure HSIC/CKA core: centred Gram matrices or centred features in, a 0-d tensor out.

No checks and no Python branch on tensor values, so ``torch.func.vmap`` (a stack of pairs) and
``torch.func.grad`` work on every function here; options such as ``debiased`` are Python bools
fixed per call. Validation (shapes, NaN, constant inputs) and result checks (range) are the
public wrappers' job (:mod:`layer_sim.measures._cka`).

Both routes meet in one ratio, :func:`cka_ratio`, on inner products of centred kernels:

- Gram route: :math:`\langle K_c, L_c\rangle_F` for double-centred Grams (biased: :math:`(n-1)^2
  \mathrm{HSIC}`), or U-centred Grams (:math:`n(n-3)\,\mathrm{HSIC}_1`, Song et al. 2012);
- feature route, linear kernels, the same quantities without any n x n matrix:
  :math:`\lVert Y_c^\top X_c\rVert_F^2`, and for HSIC_1
  :math:`\lVert Y_c^\top X_c\rVert_F^2 - \tfrac{n}{n-2} d^\top e + \tfrac{(\sum d)(\sum e)}{(n-1)(n-2)}`
  with :math:`d_i = \lVert x_{c,i}\rVert^2`, :math:`e_i = \lVert y_{c,i}\rVert^2` (Kornblith
  et al.'s ``_debiased_dot_product_similarity_helper``).

Range: the ratio divides by each self term's square root separately, and :func:`unit_scale`
multiplies each input by the power of two that brings its largest entry into [0.5, 1) (exact,
detached: it changes no value and no gradient), so no intermediate overflows or underflows for
any input whose entries are normal floats.
"""

from __future__ import annotations

import torch

__all__ = ["unit_scale", "frobenius", "cka_ratio", "feature_inner", "cka_gram", "cka_features"]


def unit_scale(a: torch.Tensor) -> torch.Tensor:
    """``a * 2**-k`` with ``2**(k-1) <= max|a| < 2**k``: exact, entries at most 1 in magnitude.

    The factor is computed from detached values, so it is a constant for autograd. A zero
    ``a`` gives NaN (0 * inf): the wrappers refuse constant inputs before they get here.
    """
    k = torch.floor(torch.log2(a.detach().abs().amax())) + 1
    return a * torch.exp2(-k)


def frobenius(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`\langle A, B\rangle_F = \sum_{ij} A_{ij} B_{ij}` as one BLAS dot, without an elementwise-product temporary."""
    return torch.dot(a.reshape(-1), b.reshape(-1))


def cka_ratio(kl: torch.Tensor, kk: torch.Tensor, ll: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{CKA} = \langle K_c, L_c\rangle / (\sqrt{\langle K_c, K_c\rangle}\sqrt{\langle L_c, L_c\rangle})`,
    from the three inner products in any common scaling (it cancels)."""
    return kl / (torch.sqrt(kk) * torch.sqrt(ll))


def feature_inner(xc: torch.Tensor, yc: torch.Tensor, *, debiased: bool = False) -> torch.Tensor:
    r""":math:`\langle K_c, L_c\rangle` of the linear kernels of centred features (see the module docstring)."""
    cross = xc.mT @ yc
    xty = frobenius(cross, cross)
    if not debiased:
        return xty
    n = xc.shape[-2]
    d, e = xc.square().sum(dim=-1), yc.square().sum(dim=-1)
    return xty - n / (n - 2) * torch.dot(d, e) + d.sum() * e.sum() / ((n - 1) * (n - 2))


def cka_gram(kc: torch.Tensor, lc: torch.Tensor) -> torch.Tensor:
    r"""CKA of two centred Gram matrices (double-centred: biased CKA; U-centred: debiased CKA).

    .. math:: \mathrm{CKA}(K, L) = \frac{\langle K_c, L_c\rangle_F}{\lVert K_c\rVert_F \lVert L_c\rVert_F}
    """
    kc, lc = unit_scale(kc), unit_scale(lc)
    return cka_ratio(frobenius(kc, lc), frobenius(kc, kc), frobenius(lc, lc))


def cka_features(xc: torch.Tensor, yc: torch.Tensor, *, debiased: bool = False) -> torch.Tensor:
    r"""Linear CKA of two centred ``(n, p)`` feature matrices, without an n x n matrix.

    Equal to ``cka_gram(centre_gram(xc xc^T), centre_gram(yc yc^T))`` (U-centred when ``debiased``).
    """
    xc, yc = unit_scale(xc), unit_scale(yc)
    return cka_ratio(
        feature_inner(xc, yc, debiased=debiased),
        feature_inner(xc, xc, debiased=debiased),
        feature_inner(yc, yc, debiased=debiased),
    )
