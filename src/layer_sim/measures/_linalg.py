"""Private kernels shared by the CCA family and Procrustes; inputs come from the validation gate.

Rank convention (used by every rank decision in these measures): the centred representation
``X_c`` with singular values ``s_1 >= s_2 >= ...`` has numerical rank ``#{i : s_i > rtol * s_1}``
with ``rtol = max(n, p) * eps`` (``eps`` of the accumulation dtype, 2.2e-16 for float64), the
convention of ``numpy.linalg.matrix_rank``. It is constant (rank 0) when
``||X_c||_F <= rtol * ||X||_F``: its variation is at the rounding level of its values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["rank_rtol", "center", "is_constant", "SVDState", "svd_state"]


def rank_rtol(n: int, p: int, dtype: torch.dtype) -> float:
    """Relative tolerance of all rank decisions: ``max(n, p) * eps``."""
    return max(n, p) * torch.finfo(dtype).eps


def center(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column-centred copy of ``x`` and its column means, in two passes.

    One pass leaves a residue of about ``eps * |mean|`` in every column; for a constant column
    of large magnitude that residue could exceed the relative rank tolerance and be counted as a
    direction, which CCA would then scale up to a spurious correlation. The second pass removes
    the residue down to ``eps**2 * |mean|``.
    """
    mean = x.mean(dim=0)
    xc = x - mean
    residue = xc.mean(dim=0)
    return xc - residue, mean + residue


def is_constant(xc_norm: torch.Tensor, x_norm: torch.Tensor, n: int, p: int) -> bool:
    """Whether a centred matrix with Frobenius norm ``xc_norm`` carries no variation.

    The scale is the norm of the *uncentred* data, so "constant" means "varies only at the
    rounding level of its own values" (``x_norm == 0`` counts as constant too).
    """
    return bool(xc_norm <= rank_rtol(n, p, xc_norm.dtype) * x_norm)


CONSTANT_REASON = "is constant (zero variance after centring, rank 0)"


@dataclass(frozen=True)
class SVDState:
    """Thin SVD ``X_c ~= u @ diag(s) @ vt`` of a centred representation, cut at the rank tolerance.

    ``u`` (rows x r) is an orthonormal basis of the column space of ``X_c``; its rows are the
    examples, or any orthonormal coordinates of them (``StreamingCCA`` stores ``X_c = Q R`` and
    passes ``R``). ``r == 0`` marks a constant representation.
    """

    n: int
    u: torch.Tensor
    s: torch.Tensor
    vt: torch.Tensor

    @property
    def rank(self) -> int:
        return self.s.numel()

    @property
    def degenerate(self) -> str | None:
        """Why no measure can use this representation, or None (the prepared-state protocol)."""
        return CONSTANT_REASON if self.rank == 0 else None

    def truncate(self, r: int) -> SVDState:
        """The state of the best rank-``r`` approximation (top ``r`` singular directions)."""
        return SVDState(self.n, self.u[:, :r], self.s[:r], self.vt[:r])


def svd_state(xc: torch.Tensor, *, x_norm: torch.Tensor, n: int) -> SVDState:
    """Rank-revealing thin SVD of the centred ``xc``; ``x_norm`` = ``||X||_F`` before centring."""
    u, s, vt = torch.linalg.svd(xc, full_matrices=False)
    p = xc.shape[1]
    if is_constant(torch.linalg.vector_norm(s), x_norm, n, p):
        r = 0
    else:
        r = int((s > rank_rtol(n, p, s.dtype) * s[0]).sum())
    return SVDState(n, u[:, :r], s[:r], vt[:r])
