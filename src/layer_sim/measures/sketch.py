r"""The count sketch (Clarkson–Woodruff transform) Tang et al. use to approximate n x n kernels by M x M ones.

:math:`S` is an M x n matrix with ``nonzeros`` = T entries per column: the rows are cut into T
blocks of M/T rows, and example j gets one row :math:`h_t(j)` in block t with a random sign
:math:`\sigma_t(j)`, each entry :math:`\sigma_t(j)/\sqrt{T}`. :math:`SX` (M x p) sums the signed
examples of each bucket. Because each column of S depends only on its example's index (the
assignment is drawn from a generator seeded by ``(seed, index // CHUNK)``), the sketch of a
dataset is the sum of the sketches of its batches, ``count_sketch(x[a:b], start=a)``: batches
can be sketched as they stream and accumulated, as Tang et al.'s code does.

For any vector :math:`v`, :math:`\mathbb E\lVert Sv\rVert^2 = \lVert v\rVert^2` and
:math:`\mathrm{Var}\lVert Sv\rVert^2 = \tfrac{2}{M}(\lVert v\rVert^4 - \sum_j v_j^4)` (pairs of
examples collide in a block with probability T/M; each of the T blocks carries weight 1/T).

References
----------
Clarkson & Woodruff (2017). Low-rank approximation and regression in input sparsity time. J. ACM 63(6).
Tang, Maddox, Dickens, Diethe & Damianou (2020). Similarity of neural networks with gradients. arXiv:2003.11498.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from layer_sim._options import Int, check, strict_signature
from layer_sim.errors import ConfigError
from layer_sim.measures._validation import as_matrix, to_array

__all__ = ["count_sketch", "CHUNK"]

#: Examples per seeded block of the hash: example j's buckets come from the generator of block j // CHUNK.
CHUNK = 4096


def check_sketch(fn: str, buckets: int, nonzeros: int, seed: int) -> tuple[int, int, int]:
    """The checked ``(buckets, nonzeros, seed)``: buckets >= 1 a multiple of nonzeros >= 1, seed >= 0."""
    buckets = check(fn, "buckets", Int(1), buckets)
    nonzeros = check(fn, "nonzeros", Int(1), nonzeros)
    seed = check(fn, "seed", Int(0), seed)
    if buckets % nonzeros:
        raise ConfigError(f"{fn}: buckets ({buckets}) must be a multiple of nonzeros ({nonzeros}): one block of rows per nonzero")
    return buckets, nonzeros, seed


def assignment(start: int, n: int, *, buckets: int, nonzeros: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``(T, n)`` (int64) and signs ``(T, n)`` (+-1) of the columns ``start .. start + n - 1`` of S."""
    block = buckets // nonzeros
    rows, signs = [], []
    first, last = start // CHUNK, (start + n - 1) // CHUNK
    for c in range(first, last + 1):
        # SeedSequence mixes (seed, chunk) into independent streams for any pair of integers.
        state = int(np.random.SeedSequence([seed, c]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))
        gen = torch.Generator(device="cpu").manual_seed(state)
        offset = torch.arange(nonzeros)[:, None] * block
        rows.append(torch.randint(0, block, (nonzeros, CHUNK), generator=gen) + offset)
        signs.append(torch.randint(0, 2, (nonzeros, CHUNK), generator=gen) * 2 - 1)
    lo = start - first * CHUNK
    r = torch.cat(rows, dim=1)[:, lo : lo + n]
    s = torch.cat(signs, dim=1)[:, lo : lo + n]
    return r.to(device), s.to(device)


def sketch_rows(X: torch.Tensor, *, buckets: int, nonzeros: int, seed: int, start: int = 0) -> torch.Tensor:
    """``S[:, start:start + n] @ X`` for a checked (n, p) tensor (pure of checks; keeps dtype and autograd)."""
    rows, signs = assignment(start, X.shape[0], buckets=buckets, nonzeros=nonzeros, seed=seed, device=X.device)
    out = X.new_zeros((buckets, X.shape[1]))
    scale = 1.0 / math.sqrt(nonzeros)
    for t in range(nonzeros):
        out = out.index_add(0, rows[t], X * (signs[t].to(X.dtype) * scale)[:, None])
    return out


@strict_signature
def count_sketch(x, *, buckets: int, nonzeros: int = 1, seed: int = 0, start: int = 0):
    r"""The count sketch :math:`S x` of examples ``start .. start + n - 1``: M bucket rows, each a signed sum of examples.

    .. math::

        (Sx)_r = \frac{1}{\sqrt T} \sum_{t=1}^{T} \sum_{j:\, h_t(j) = r} \sigma_t(j)\, x_j,

    with :math:`h_t(j)` uniform in block t (rows :math:`t M/T, \dots, (t+1) M/T - 1`) and
    :math:`\sigma_t(j) = \pm 1`, both fixed by ``seed`` and the example's index ``start + j``, so
    ``count_sketch(x[:k]) + count_sketch(x[k:], start=k) == count_sketch(x)`` (to rounding).

    Parameters
    ----------
    x : {array-like, Tensor} of shape (n_examples, n_features)
    buckets : int >= 1
        M, the number of rows of the sketch (Tang et al. use 512).
    nonzeros : int >= 1, default=1
        T, buckets per example (Tang et al.'s default 1); must divide ``buckets``.
    seed : int >= 0, default=0
        Seed of the hash; the same seed must be used for every representation compared.
    start : int >= 0, default=0
        Index of the first example of ``x`` in the whole dataset.

    Returns
    -------
    ndarray or Tensor of shape (buckets, n_features)
        float64 (the accumulation dtype); a tensor on the input's device for torch input.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((10, 3))
    >>> whole = count_sketch(x, buckets=4, seed=1)
    >>> parts = count_sketch(x[:6], buckets=4, seed=1) + count_sketch(x[6:], buckets=4, seed=1, start=6)
    >>> bool(np.allclose(whole, parts)), whole.shape
    (True, (4, 3))
    """
    buckets, nonzeros, seed = check_sketch("count_sketch", buckets, nonzeros, seed)
    start = check("count_sketch", "start", Int(0), start)
    X = as_matrix(x, name="x", fn="count_sketch", min_n=1)
    return to_array(sketch_rows(X, buckets=buckets, nonzeros=nonzeros, seed=seed, start=start), x)
