"""Private Gram/HSIC kernels for the CKA family; inputs are checked ``(n, p)`` tensors from the gate.

Conventions shared by every function here: ``Xc`` is column-centred, all arithmetic stays in the
dtype and on the device of its inputs, and nothing validates (see ``_validation``).
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from layer_sim.errors import DegenerateInputError

# Elements per row block of an n x n matrix in the blockwise paths (64 MiB in float64): large
# enough for GEMM efficiency, small enough that a handful of live blocks stays far below 1 GB.
BLOCK_ELEMENTS = 2**23

# Random pairs drawn to bracket the median distance before the exact counting pass; the
# bracket holds about 2 * 6 * 0.5 / sqrt(MEDIAN_SAMPLE) = 2.3% of all pairs.
MEDIAN_SAMPLE = 2**16


def centre(X: torch.Tensor) -> torch.Tensor:
    """Subtract the column means."""
    return X - X.mean(dim=0, keepdim=True)


def normalised(
    name: str, cross: torch.Tensor, self_x: torch.Tensor, self_y: torch.Tensor, *, lower: float = 0.0,
    rounding: torch.dtype | None = None,
) -> torch.Tensor:
    """``cross / sqrt(self_x * self_y)`` (elementwise, broadcasting), in ``[lower, 1]``.

    The bound holds exactly by Cauchy-Schwarz, so only rounding can cross it: excursions up to
    ``sqrt(eps)`` of ``rounding`` (the dtype the products were computed in; default the result's)
    are clipped, and a larger one raises instead of being hidden by a clamp.
    """
    value = cross / torch.sqrt(self_x * self_y)
    tol = math.sqrt(torch.finfo(rounding or value.dtype).eps)
    v = value.detach()
    outside = ~((v >= lower - tol) & (v <= 1 + tol))  # also catches NaN
    if outside.any():
        raise DegenerateInputError(
            f"{name}: value {float(v[outside][0])!r} lies outside [{lower:g}, 1] by more than rounding ({tol:.1e}); "
            "the representations are too close to degenerate for this estimator"
        )
    return value.clamp(lower, 1.0)


def constant_reason(X: torch.Tensor, Xc: torch.Tensor) -> str | None:
    """Why ``X`` has no variance to normalise by, or None.

    A constant column's computed mean is off by at most ~n*eps relative, so its centred entries
    are rounding residue of size <= n*eps*|x|; anything below that floor is "constant".
    """
    n = X.shape[0]
    eps = torch.finfo(X.dtype).eps
    if Xc.detach().square().sum() <= (n * eps) ** 2 * X.detach().square().sum():
        return "is constant (zero variance after centring every feature)"
    return None


def centring_offsets(row_sums: torch.Tensor, n: int, unbiased: bool) -> torch.Tensor:
    """Vector ``a`` with centred Gram ``K_c[i, j] = K[i, j] - a_i - a_j``.

    Biased: the double centring H K H, from the row sums of K. Unbiased: the U-centring of
    Szekely & Rizzo (2014), from the row sums of K with its diagonal zeroed, after which the
    diagonal is set to 0; then ``<K_c, L_c> = n (n - 3) HSIC_1`` (Song et al. 2012).
    This is the reference code's ``center_gram`` split so that it also works on row blocks.
    """
    if unbiased:
        a = row_sums / (n - 2)
        return a - a.sum() / (2 * (n - 1))
    a = row_sums / n
    return a - a.mean() / 2


def centre_block(K_block: torch.Tensor, a: torch.Tensor, start: int, unbiased: bool) -> torch.Tensor:
    """Block ``[start:stop, start:]`` of the centred Gram, from the same block of K."""
    Kc = K_block - a[start : start + K_block.shape[0], None]
    Kc.sub_(a[None, start:])
    if unbiased:
        Kc.diagonal().zero_()
    return Kc


def centre_gram(K: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Centred (biased) or U-centred (unbiased) copy of a full symmetric Gram matrix."""
    row_sums = K.sum(dim=1) - K.diagonal() if unbiased else K.sum(dim=1)
    return centre_block(K, centring_offsets(row_sums, K.shape[0], unbiased), 0, unbiased)


def debiased_dot(xty: torch.Tensor, sq_rows_x: torch.Tensor, sq_rows_y: torch.Tensor, n: int) -> torch.Tensor:
    """``n (n - 3) HSIC_1`` of two linear kernels from feature-space quantities.

    With centred features, ``xty = ||Y_c^T X_c||_F^2``, ``d = ||x_i||^2`` and ``e = ||y_i||^2``,
    Song et al.'s estimator reduces to ``xty - n/(n-2) d.e + sum(d) sum(e) / ((n-1)(n-2))``
    (Kornblith et al.'s ``_debiased_dot_product_similarity_helper``): no n x n matrix needed.
    """
    return (
        xty
        - n / (n - 2) * (sq_rows_x @ sq_rows_y)
        + sq_rows_x.sum() * sq_rows_y.sum() / ((n - 1) * (n - 2))
    )


def frobenius_dot(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``<A, B>_F = sum(A * B)`` as one BLAS dot, without an elementwise-product temporary."""
    return torch.dot(A.reshape(-1), B.reshape(-1))


def symmetric_block_dot(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Share of ``<A_full, B_full>`` of block ``[start:stop, start:]`` of two symmetric matrices.

    Blocks ``[start:stop, start:]`` over consecutive row ranges tile the upper triangle; the part
    right of the leading square stands for its mirror image too, so it counts twice.
    """
    r = A.shape[0]
    return 2 * frobenius_dot(A, B) - frobenius_dot(A[:, :r], B[:, :r])


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


def rbf_block(
    Xc: torch.Tensor, sq_norms: torch.Tensor, scale: torch.Tensor, start: int, stop: int
) -> torch.Tensor:
    """Block ``[start:stop, start:]`` of ``exp(-D / scale)``, with D's diagonal exactly 0 (so K_ii = 1).

    ``start = 0, stop = n`` is the whole matrix.
    """
    D = sq_dist_rows(Xc, sq_norms, start, stop, col_start=start)
    D.diagonal().zero_()
    return D.div_(-scale).exp_()


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
