"""Private kernels shared by the CCA family and Procrustes; inputs come from the validation gate.

Rank convention (used by every rank decision in these measures): the centred representation
``X_c`` with singular values ``s_1 >= s_2 >= ...`` has numerical rank ``#{i : s_i > rtol * s_1}``
with ``rtol = max(n, p) * eps`` (``eps`` of the accumulation dtype, 2.2e-16 for float64), the
convention of ``numpy.linalg.matrix_rank``. It is constant (rank 0) by the one test of
:mod:`layer_sim.measures._features`, whose tolerance is the same ``rtol``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from layer_sim.measures._features import CONSTANT, constant_tolerance, is_constant

__all__ = ["SVDState", "svd_state"]


@dataclass(frozen=True)
class SVDState:
    """Thin SVD ``X_c ~= u @ diag(s) @ vt`` of a centred representation, cut at the rank tolerance.

    ``u`` (rows x r) is an orthonormal basis of the column space of ``X_c``; its rows are the
    examples, or any orthonormal coordinates of them (``StreamingCCA`` stores ``X_c = Q R`` and
    passes ``R``). ``r == 0`` marks a constant representation. ``s`` is in the units of the
    (possibly power-of-two scaled) centred input; every index here is a ratio in which they cancel.
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
        return CONSTANT if self.rank == 0 else None

    def truncate(self, r: int) -> SVDState:
        """The state of the best rank-``r`` approximation (top ``r`` singular directions)."""
        return SVDState(self.n, self.u[:, :r], self.s[:r], self.vt[:r])


def svd_state(xc: torch.Tensor, *, x_norm: float, n: int, constant: bool | None = None) -> SVDState:
    """Rank-revealing thin SVD of the centred ``xc``; ``x_norm`` = ``||X||_F`` before centring (same
    units). ``constant`` short-cuts the constant test when the caller has already made it."""
    u, s, vt = torch.linalg.svd(xc, full_matrices=False)
    p = xc.shape[1]
    if constant is None:
        constant = is_constant(float(torch.linalg.vector_norm(s)), x_norm, n, p, s.dtype)
    r = 0 if constant else int((s > constant_tolerance(n, p, s.dtype) * s[0]).sum())
    return SVDState(n, u[:, :r], s[:r], vt[:r])
