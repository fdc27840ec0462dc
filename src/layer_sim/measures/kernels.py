r"""Kernels (Gram matrices) of representations and their centring.

Public: :func:`gram_linear`, :func:`gram_rbf` (Kornblith et al.'s median bandwidth) and
:func:`centre_gram` (biased double centring or the unbiased U-centring), validated like every
measure. Below them, the pieces the measures build on, which trust their input: the centring
offsets (one convention for whole matrices and for row blocks), the RBF kernel from squared
distances, and the blockwise machinery for n x n matrices that are never held whole (row
blocks of the upper triangle, the exact median of all squared distances).

Every function keeps the dtype and device of its input; nothing here validates except the
three public functions.

References
----------
Kornblith, Norouzi, Lee & Hinton (2019). Similarity of neural network representations revisited. ICML.
Székely & Rizzo (2014). Partial distance correlation with methods for dissimilarities. Ann. Statist. 42.
Song, Smola, Gretton, Bedo & Borgwardt (2012). Feature selection via dependence maximization. JMLR 13.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from layer_sim._options import Flag, Real, check, strict_signature
from layer_sim.errors import DegenerateInputError, InputError
from layer_sim.measures._features import centre, ldexp, scale_exponent
from layer_sim.measures._hsic import frobenius
from layer_sim.measures._validation import as_matrix, as_square, to_array

__all__ = ["gram_linear", "gram_rbf", "centre_gram"]

# Elements per row block of an n x n matrix in the blockwise paths (64 MiB in float64): large
# enough for GEMM efficiency, small enough that a handful of live blocks stays far below 1 GB.
BLOCK_ELEMENTS = 2**23

# Random pairs drawn to bracket the median distance before the exact counting pass; the
# bracket holds about 2 * 6 * 0.5 / sqrt(MEDIAN_SAMPLE) = 2.3% of all pairs.
MEDIAN_SAMPLE = 2**16

# Above this sigma the RBF kernel is computed as 2 sigma^2 (K - 1) (see rbf_kernel_).
RBF_LARGE_SIGMA = 1.0

SIGMA = Real(0.0, None, low_open=True)
"""The declared option ``sigma`` of every RBF kernel: a positive finite number."""


# --------------------------------------------------------------------------- public kernels


@strict_signature
def gram_linear(x):
    r"""Linear kernel :math:`K = X X^\top` of a representation (Kornblith et al.'s ``gram_linear``).

    Parameters
    ----------
    x : {array-like, Tensor} of shape (n_examples, n_features)
        Examples in rows; higher-rank inputs are flattened per example.

    Returns
    -------
    ndarray or Tensor of shape (n_examples, n_examples)
        float64 (float32 on MPS); a tensor on the input's device, differentiable, for torch input.

    Raises
    ------
    InputError
        Bad input (see the input rules of :mod:`layer_sim.measures`), or a Gram matrix whose
        largest entry :math:`\max_i \lVert x_i\rVert^2` overflows or underflows the dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim.measures import gram_linear
    >>> gram_linear(np.array([[1.0, 2.0], [3.0, 4.0]]))
    array([[ 5., 11.],
           [11., 25.]])
    """
    X = as_matrix(x, name="x", fn="gram_linear", min_n=1)
    e = scale_exponent(float(X.detach().abs().amax()), X.dtype)
    K = _linear(ldexp(X, e))
    # The largest entry of X X^T is on its diagonal (Cauchy-Schwarz); undo the scaling only if it fits.
    _check_representable("gram_linear", "the Gram matrix x x^T", float(K.detach().diagonal().amax()), -2 * e, K.dtype)
    return to_array(ldexp(K, -2 * e), x)


@strict_signature
def gram_rbf(x, *, sigma: float = 0.8):
    r"""Gaussian (RBF) kernel with Kornblith et al.'s median bandwidth (their ``gram_rbf``).

    .. math::

        K_{ij} = \exp\!\Big(-\frac{\lVert x_i - x_j\rVert^2}{2\sigma^2 m}\Big),

    with :math:`m` the median of the **full** n x n matrix of squared distances, its n zeros on the
    diagonal included (``np.median``: the mean of the two middle values when n^2 is even). The
    kernel of :func:`layer_sim.rbf_cka`; invariant to translation, orthogonal maps and isotropic
    scaling of ``x``.

    Parameters
    ----------
    x : {array-like, Tensor} of shape (n_examples, n_features)
    sigma : float, default=0.8
        Bandwidth as a fraction of the median distance; any positive finite value (for very
        small sigma the kernel rounds to the identity, plus ones between duplicate rows).

    Returns
    -------
    ndarray or Tensor of shape (n_examples, n_examples)
        Entries in [0, 1], ones on the diagonal; float64.

    Raises
    ------
    InputError
        Bad input.
    ConfigError
        ``sigma`` is not a positive finite number.
    DegenerateInputError
        The median squared distance is 0 (more than half of the n^2 pairs coincide).

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim.measures import gram_rbf
    >>> K = gram_rbf(np.array([[0.0], [1.0], [3.0]]), sigma=1.0)  # median of 0 0 0 1 1 4 4 9 9 is 1
    >>> bool(np.allclose(K[0], np.exp([0.0, -0.5, -4.5])))
    True
    """
    sigma = check("gram_rbf", "sigma", SIGMA, sigma)
    X = as_matrix(x, name="x", fn="gram_rbf", min_n=1)
    Xs = ldexp(X, scale_exponent(float(X.detach().abs().amax()), X.dtype))
    Xc = centre(Xs)  # distances ignore translation; centring keeps |x|^2 + |y|^2 - 2 x.y accurate
    sq_norms = Xc.square().sum(dim=1)
    median = median_sq_dist(Xc, sq_norms, rows=block_rows(X.shape[0]))
    if median <= 0:
        raise DegenerateInputError(f"gram_rbf: x {ZERO_MEDIAN}")
    D = rbf_block_distances(Xc, sq_norms, 0, X.shape[0])
    return to_array(_rbf_argument_(D, median, sigma).neg_().exp_(), x)


@strict_signature
def centre_gram(K, *, debiased: bool = False):
    r"""Centred Gram matrix: :math:`H K H` (biased) or the U-centred :math:`\tilde K` (unbiased).

    Biased (``debiased=False``): :math:`K_c = H K H` with :math:`H = I - \tfrac1n \mathbf 1
    \mathbf 1^\top`, so that :math:`\langle K_c, L_c\rangle = (n-1)^2\,\mathrm{HSIC}(K, L)`.
    Unbiased: the U-centring of Székely & Rizzo (2014),

    .. math::

        \tilde K_{ij} = K_{ij} - \frac{\sum_l K_{il}}{n-2} - \frac{\sum_l K_{lj}}{n-2}
        + \frac{\sum_{l,m} K_{lm}}{(n-1)(n-2)} \quad (i \ne j), \qquad \tilde K_{ii} = 0,

    with the sums over off-diagonal entries, so that :math:`\langle \tilde K, \tilde L\rangle =
    n(n-3)\,\mathrm{HSIC}_1(K, L)`, Song et al.'s (2012) unbiased estimator. This is Kornblith
    et al.'s ``center_gram(gram, unbiased)``.

    Parameters
    ----------
    K : {array-like, Tensor} of shape (n, n)
        A symmetric matrix (a symmetric part is taken if it is symmetric only to rounding).
    debiased : bool, default=False
        U-centring instead of double centring; needs n >= 3.

    Returns
    -------
    ndarray or Tensor of shape (n, n)
        float64; differentiable for torch input.

    Raises
    ------
    InputError
        Not square, not symmetric (beyond rounding: :math:`\max|K - K^\top| > \sqrt{\epsilon}
        \max|K|`), NaN/Inf, too small, or a result that overflows.
    ConfigError
        ``debiased`` is not a bool.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim.measures import centre_gram
    >>> centre_gram(np.ones((3, 3)) + np.eye(3))  # a constant kernel part is removed
    array([[ 0.66666667, -0.33333333, -0.33333333],
           [-0.33333333,  0.66666667, -0.33333333],
           [-0.33333333, -0.33333333,  0.66666667]])
    """
    debiased = check("centre_gram", "debiased", Flag(), debiased)
    G = as_square(K, name="K", fn="centre_gram", min_n=3 if debiased else 1)
    e = scale_exponent(float(G.detach().abs().amax()), G.dtype)
    Kc = _centre_gram(ldexp(G, e), debiased)
    # Centred entries are at most 4 max|K| (biased) or about as much (U-centred): check before unscaling.
    _check_representable("centre_gram", "the centred Gram matrix", float(Kc.detach().abs().amax()), -e, Kc.dtype)
    return to_array(ldexp(Kc, -e), K)


def _check_representable(fn: str, what: str, scaled_max: float, e: int, dtype: torch.dtype) -> None:
    """Refuse a result whose largest entry ``scaled_max * 2**e`` overflows or is below the normal range."""
    if scaled_max == 0:
        return
    log2 = math.log2(scaled_max) + e
    info = torch.finfo(dtype)
    if not math.log2(info.tiny) <= log2 < math.log2(info.max):
        kind = "overflows" if log2 > 0 else "underflows"
        raise InputError(
            f"{fn}: {what} {kind} {str(dtype).removeprefix('torch.')} (largest entry about 2^{log2:.0f}); "
            "rescale the input"
        )


# --------------------------------------------------------------------------- pure pieces


def _linear(x: torch.Tensor) -> torch.Tensor:
    """``x x^T`` over the last two dimensions (pure, batched)."""
    return x @ x.mT


def centring_offsets(row_sums: torch.Tensor, n: int, unbiased: bool) -> torch.Tensor:
    """Vector ``a`` with centred Gram ``K_c[i, j] = K[i, j] - a_i - a_j`` (the one centring convention).

    Biased: the double centring H K H, from the row sums of K. Unbiased: the U-centring of
    Szekely & Rizzo (2014), from the row sums of K with its diagonal zeroed, after which the
    diagonal is set to 0; then ``<K_c, L_c> = n (n - 3) HSIC_1`` (Song et al. 2012).
    This is the reference code's ``center_gram`` split so that it also works on row blocks.
    Pure and batched over leading dimensions.
    """
    if unbiased:
        a = row_sums / (n - 2)
        return a - a.sum(dim=-1, keepdim=True) / (2 * (n - 1))
    a = row_sums / n
    return a - a.mean(dim=-1, keepdim=True) / 2


def _centre_gram(K: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Centred (biased) or U-centred (unbiased) copy of symmetric ``K`` (pure, batched, no in-place)."""
    n = K.shape[-1]
    if unbiased:
        K = K - torch.diag_embed(K.diagonal(dim1=-2, dim2=-1))
    a = centring_offsets(K.sum(dim=-1), n, unbiased)
    Kc = K - a[..., :, None] - a[..., None, :]
    if unbiased:
        Kc = Kc - torch.diag_embed(Kc.diagonal(dim1=-2, dim2=-1))
    return Kc


def centre_block(K_block: torch.Tensor, a: torch.Tensor, start: int, unbiased: bool) -> torch.Tensor:
    """Block ``[start:stop, start:]`` of the centred Gram, from the same block of K (in place)."""
    Kc = K_block - a[start : start + K_block.shape[0], None]
    Kc.sub_(a[None, start:])
    if unbiased:
        Kc.diagonal().zero_()
    return Kc


# --------------------------------------------------------------------------- RBF


ZERO_MEDIAN = (
    "has median squared distance 0 (more than half of the n^2 pairs of examples coincide), "
    "so the RBF bandwidth sigma^2 * median is 0"
)


def _rbf_argument_(D: torch.Tensor, median: torch.Tensor, sigma: float) -> torch.Tensor:
    """``D / (2 sigma^2 median)`` in place, never forming ``sigma**2`` when it would over- or underflow."""
    b = (2.0 * sigma * sigma) * median
    if math.isfinite(float(b.detach())) and float(b.detach()) >= torch.finfo(D.dtype).tiny:
        return D.div_(b)
    return D.div_(median).div_(sigma).div_(sigma).div_(2.0)


def rbf_kernel_(D: torch.Tensor, median: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""The RBF kernel of rbf_cka from squared distances ``D`` (consumed: modified in place).

    ``sigma <= 1``: :math:`K = \exp(-t)`, :math:`t = D / (2\sigma^2 m)`. ``sigma > 1``: the
    shifted, rescaled :math:`2\sigma^2 (K - 1) = -(D/m)\, f(t)` with :math:`f(t) = (1 - e^{-t})/t`
    (:math:`f(0) = 1`), which has the same CKA (centring removes the constant, CKA ignores the
    positive factor) but keeps its digits as :math:`t \to 0`, where :math:`\exp(-t)` rounds to 1:
    sigma = 1e300 gives linear CKA, the exact limit, instead of 0/0. Its diagonal is 0, not 1.
    """
    if sigma <= RBF_LARGE_SIGMA:
        return _rbf_argument_(D, median, sigma).neg_().exp_()
    q = D / median
    t = _rbf_argument_(q.clone(), torch.ones_like(median), sigma)
    zero = t == 0
    t_safe = torch.where(zero, torch.ones_like(t), t)  # keeps 0/0 out of the graph's unused branch
    f = torch.where(zero, torch.ones_like(t), torch.expm1(-t_safe) / -t_safe)
    return -(q * f)


def rbf_diagonal(sigma: float) -> float:
    """``K_ii`` of :func:`rbf_kernel_` (the U-centring needs row sums without the diagonal)."""
    return 0.0 if sigma > RBF_LARGE_SIGMA else 1.0


def sq_dist_rows(
    Xc: torch.Tensor, sq_norms: torch.Tensor, start: int, stop: int, col_start: int = 0
) -> torch.Tensor:
    """Squared distances ``||x_i - x_j||^2`` for rows ``start:stop`` and columns ``col_start:``.

    One GEMM via ``|x_i|^2 + |x_j|^2 - 2 x_i.x_j``; the inputs are centred, which keeps the
    cancellation small, and the result is clamped at 0 because rounding can dip below it.
    In-place updates keep one block-sized buffer alive instead of four.
    """
    D = torch.addmm(sq_norms[None, col_start:], Xc[start:stop], Xc[col_start:].T, alpha=-2)
    return D.add_(sq_norms[start:stop, None]).clamp_(min=0)


def rbf_block_distances(Xc: torch.Tensor, sq_norms: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Block ``[start:stop, start:]`` of the squared distances with an exact zero diagonal."""
    D = sq_dist_rows(Xc, sq_norms, start, stop, col_start=start)
    D.diagonal().zero_()
    return D


def rbf_block(
    Xc: torch.Tensor, sq_norms: torch.Tensor, median: torch.Tensor, sigma: float, start: int, stop: int
) -> torch.Tensor:
    """Block ``[start:stop, start:]`` of :func:`rbf_kernel_`; ``start = 0, stop = n`` is the whole matrix."""
    return rbf_kernel_(rbf_block_distances(Xc, sq_norms, start, stop), median, sigma)


# --------------------------------------------------------------------------- blockwise machinery


def symmetric_block_dot(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Share of ``<A_full, B_full>`` of block ``[start:stop, start:]`` of two symmetric matrices.

    Blocks ``[start:stop, start:]`` over consecutive row ranges tile the upper triangle; the part
    right of the leading square stands for its mirror image too, so it counts twice.
    """
    r = A.shape[0]
    return 2 * frobenius(A, B) - frobenius(A[:, :r], B[:, :r])


def upper_row_sums(blocks: Iterator[tuple[int, int, torch.Tensor]], n: int, like: torch.Tensor) -> torch.Tensor:
    """Row sums of a symmetric matrix given as its blocks ``(start, stop, M[start:stop, start:])``."""
    sums = like.new_zeros(n)
    for start, stop, B in blocks:
        sums[start:stop] += B.sum(dim=1)
        sums[stop:] += B[:, stop - start :].sum(dim=0)  # the mirror image's share of later rows
    return sums


def row_blocks(n: int, rows: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive row blocks covering ``range(n)``."""
    for start in range(0, n, rows):
        yield start, min(start + rows, n)


def block_rows(n: int) -> int:
    """Rows per block so that one ``(rows, n)`` block holds about ``BLOCK_ELEMENTS`` entries."""
    return max(1, BLOCK_ELEMENTS // n)


def median_sq_dist(
    Xc: torch.Tensor, sq_norms: torch.Tensor, *, rows: int, sample_size: int = MEDIAN_SAMPLE, seed: int = 0
) -> torch.Tensor:
    """Exact median of the full n x n matrix of squared distances, zero diagonal included.

    This is ``np.median(sq_distances)`` of Kornblith et al.'s ``gram_rbf`` (the mean of the two
    middle values when n^2 is even) without holding the matrix. Sorted, the matrix is its n
    diagonal zeros followed by every off-diagonal value twice, so the middle ranks map to ranks
    among the n(n-1)/2 upper-triangle values; those are found exactly by :func:`_select_pairs`.
    The chosen pairs' distances are then recomputed from ``Xc`` so the bandwidth carries
    gradients (as ``torch.median`` would).
    """
    n = Xc.shape[0]
    total = n * n
    middle = [total // 2, total // 2 + 1] if total % 2 == 0 else [(total + 1) // 2]
    upper_ranks = [-(-(k - n) // 2) for k in middle]  # ceil((k - n) / 2); <= 0 is a diagonal zero
    pairs = _select_pairs(Xc, sq_norms, [r for r in upper_ranks if r > 0], rows, sample_size, seed)
    chosen = iter(pairs)
    values = []
    for r in upper_ranks:
        if r <= 0:
            values.append(Xc.new_zeros(()))
        else:
            i, j = next(chosen)
            values.append((Xc[i] - Xc[j]).square().sum())
    return torch.stack(values).mean()


def _select_pairs(
    Xc: torch.Tensor, sq_norms: torch.Tensor, ranks: list[int], rows: int, sample_size: int, seed: int
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, i < j, holding the given 1-based ranks among upper-triangle distances.

    Exact selection in O(n^2 p) time and small memory: a random sample of pairs brackets the
    target ranks with a value interval [lo, hi]; one blockwise pass counts the distances below
    lo and gathers those inside; the targets are then sorted out of the gathered few. If the
    bracket missed (probability ~1e-9 per try), it is widened, finally to everything.
    """
    n = Xc.shape[0]
    m = n * (n - 1) // 2
    if not ranks:
        return []
    with torch.no_grad():
        Xd, sqn = Xc.detach(), sq_norms.detach()
        sample = _sample_sq_dists(Xd, sqn, sample_size, seed) if m > sample_size else None
        for z in (6.0, 48.0):
            pairs = _gather_ranks(Xd, sqn, ranks, rows, _bracket(sample, ranks, m, z))
            if pairs is not None:
                return pairs
        return _gather_ranks(Xd, sqn, ranks, rows, (-math.inf, math.inf))


def _gather_ranks(
    Xc: torch.Tensor, sq_norms: torch.Tensor, ranks: list[int], rows: int, bracket: tuple[float, float]
) -> list[tuple[int, int]] | None:
    """One blockwise pass: count upper-triangle distances below the bracket, gather those inside,
    and return the pairs at ``ranks`` if they all fall inside (None if the bracket missed)."""
    n = Xc.shape[0]
    lo, hi = bracket
    below, values, index = 0, [], []
    for start, stop in row_blocks(n, rows):
        D = sq_dist_rows(Xc, sq_norms, start, stop, col_start=start)
        # Only pairs i < j count: blank the diagonal and below with NaN, which fails every comparison.
        local = torch.arange(stop - start, device=D.device)
        D[:, : stop - start].masked_fill_(local[None, :] <= local[:, None], math.nan)
        below += int((D < lo).sum())
        keep = (D >= lo) & (D <= hi)
        values.append(D[keep])
        index.append(keep.nonzero() + torch.tensor([start, start], device=D.device))
    values_t = torch.cat(values)
    if not all(below < k <= below + values_t.numel() for k in ranks):
        return None
    order = torch.argsort(values_t)
    index_t = torch.cat(index)
    return [(int(index_t[order[k - below - 1], 0]), int(index_t[order[k - below - 1], 1])) for k in ranks]


def _sample_sq_dists(Xc: torch.Tensor, sq_norms: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Sorted squared distances of ``size`` uniformly random pairs i != j (seeded, so results repeat)."""
    n, p = Xc.shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    i = torch.randint(0, n, (size,), generator=gen)
    j = torch.randint(0, n - 1, (size,), generator=gen)
    j = j + (j >= i)  # uniform over j != i
    i, j = i.to(Xc.device), j.to(Xc.device)
    chunk = max(1, BLOCK_ELEMENTS // p)
    out = [
        (sq_norms[i[s:e]] + sq_norms[j[s:e]] - 2 * (Xc[i[s:e]] * Xc[j[s:e]]).sum(dim=1)).clamp_min(0)
        for s, e in row_blocks(size, chunk)
    ]
    return torch.sort(torch.cat(out)).values


def _bracket(sample: torch.Tensor | None, ranks: list[int], m: int, z: float) -> tuple[float, float]:
    """Value interval expected to contain the target ranks: sample quantiles +- z standard errors."""
    if sample is None or math.isinf(z):
        return -math.inf, math.inf
    s = sample.numel()
    q_lo, q_hi = min(ranks) / m, max(ranks) / m
    half = z * math.sqrt(max(q_lo * (1 - q_lo), q_hi * (1 - q_hi)) * s) + 2
    pos_lo, pos_hi = q_lo * s - half, q_hi * s + half
    lo = -math.inf if pos_lo < 0 else float(sample[int(pos_lo)])
    hi = math.inf if pos_hi > s - 1 else float(sample[math.ceil(pos_hi)])
    return lo, hi
