r"""Per-representation preparation shared by every measure: exact scaling, centring, "is constant".

Three conventions live here and nowhere else.

**Scale.** Every index except ``linear_hsic`` is invariant to isotropic scaling, and multiplying
by a power of two is exact in floating point (barring subnormals), so a representation whose
magnitude would overflow or underflow the products a measure forms (float64 ``1e300`` squared
is ``inf``; ``1e-300`` to the fourth power is ``0``) is first multiplied by ``2**e``. The
exponent is 0 (no pass over the data at all) while the magnitude lies in the *window*
``[2**-W, 2**W]``, ``W = (maxexp - 24) // 4`` (250 for float64, 26 for float32), inside which
fourth powers cannot leave the dtype's range; outside it ``e`` brings the magnitude into
``[0.5, 1)``. Because the scaling is exact, a scaled and an unscaled computation of a
scale-invariant index give the same bits wherever both are representable.

**Centring.** Two passes: the mean, then the mean of the residue. One pass leaves about
``eps * |mean|`` in every column; for a constant column with a large offset that residue could
exceed a rank tolerance and be counted as a direction (CCA would then scale it up to a spurious
correlation). The second pass removes it down to ``eps**2 * |mean|``.

**Constant.** A representation is constant when ``||X_c||_F <= max(n, p) * eps * ||X||_F``
(``eps`` of the accumulation dtype, ``X_c`` the centred ``X``): its variation is at the rounding
level of its own values, the ``numpy.linalg.matrix_rank`` tolerance. ``||X||_F = 0`` counts as
constant. Every measure reports it with the one message :data:`CONSTANT`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from layer_sim.errors import DegenerateInputError

__all__ = [
    "CONSTANT",
    "window",
    "scale_exponent",
    "ldexp",
    "constant_tolerance",
    "is_constant",
    "certainly_varies",
    "centre",
    "centre_with_mean",
    "Centred",
    "centred",
    "degenerate_error",
]

CONSTANT = "is constant (zero variance after centring every feature), so the index is undefined"
"""Why a constant representation cannot be used: the one wording every measure reports."""


def window(dtype: torch.dtype) -> int:
    """Largest ``W`` such that fourth powers of magnitudes in ``[2**-W, 2**W]`` stay in range."""
    return (math.frexp(torch.finfo(dtype).max)[1] - 24) // 4


def scale_exponent(magnitude: float, dtype: torch.dtype) -> int:
    """The ``e`` that brings ``magnitude`` into ``[0.5, 1)`` when it is outside the window, else 0.

    ``magnitude`` is a max-abs value or a Frobenius norm; 0 (and non-finite values, which the
    input gate has already refused) give 0.
    """
    if magnitude == 0 or not math.isfinite(magnitude):
        return 0
    _, e = math.frexp(magnitude)
    w = window(dtype)
    return 0 if -w <= e <= w else -e


def ldexp(x: torch.Tensor, e: int) -> torch.Tensor:
    """``x * 2**e`` exactly; ``e == 0`` returns ``x`` itself (no pass over the data).

    Split in two factors so that ``2**e`` itself stays a normal float for any ``|e| <= 2100``
    (scaling a subnormal input up needs more than 1023).
    """
    if e == 0:
        return x
    half = e // 2
    return x * (2.0**half) * (2.0 ** (e - half))


def constant_tolerance(n: int, p: int, dtype: torch.dtype) -> float:
    """Relative tolerance of the constant test and of every rank decision: ``max(n, p) * eps``."""
    return max(n, p) * torch.finfo(dtype).eps


def is_constant(xc_norm: float, x_norm: float, n: int, p: int, dtype: torch.dtype) -> bool:
    """The one "is constant" test: ``||X_c||_F <= max(n, p) * eps * ||X||_F``."""
    return bool(xc_norm <= constant_tolerance(n, p, dtype) * x_norm)


def certainly_varies(X: torch.Tensor, amax: float, dtype: torch.dtype) -> bool:
    """A cheap proof that ``X`` is not constant, from 9 of its rows and ``amax = max |X|`` (O(p)).

    For any two rows, ``||X_c||_F^2 >= ||x_a - x_b||^2 / 2`` (parallelogram law about the mean), and
    ``||X||_F <= sqrt(n p) max|X|``; so a sampled row farther than ``sqrt(2 n p) * tol * max|X|``
    from row 0 proves ``||X_c|| > tol ||X||`` (a factor 2 covers the rounding of the test itself).
    False means "not proven", not "constant": the caller then runs the exact test.
    """
    n, p = X.shape
    if amax == 0 or n < 2:
        return False
    idx = torch.linspace(0, n - 1, steps=min(n, 9), device=X.device).round().long().unique()
    rows = ldexp(X.detach()[idx].to(dtype), -math.frexp(amax)[1])  # max |rows| <= 1: no overflow below
    d = float(torch.linalg.vector_norm(rows[1:] - rows[0], dim=1).max())
    return d > 2 * math.sqrt(2 * n * p) * constant_tolerance(n, p, dtype)


def centre(x: torch.Tensor) -> torch.Tensor:
    """Column-centred ``x`` in two passes (pure: no checks, batched over leading dimensions)."""
    return centre_with_mean(x)[0]


def centre_with_mean(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(centre(x), mean)``: the two-pass centred ``x`` and the column means it removed."""
    mean = x.mean(dim=-2, keepdim=True)
    xc = x - mean
    residue = xc.mean(dim=-2, keepdim=True)
    return xc - residue, (mean + residue).squeeze(-2)


@dataclass(frozen=True)
class Centred:
    """A representation centred once for a measure's per-layer preparation.

    ``xc`` is the column-centred input times ``2**exponent`` (exact); ``x_norm`` is ``||X||_F``
    in the same units (the constant test's scale); ``constant`` is the one test above.
    """

    xc: torch.Tensor
    exponent: int
    x_norm: float
    constant: bool


def centred(X: torch.Tensor) -> Centred:
    """Scale (if outside the window), centre in two passes, test for constant, rescale the centred
    values (if their norm is outside the window, e.g. a tiny variation on a large offset).

    ``X`` is a checked ``(n, p)`` floating tensor; autograd flows through (the factors are
    constants). Costs two reductions beyond the centring itself in the usual case.
    """
    n, p = X.shape
    lo, hi = torch.aminmax(X.detach())
    e1 = scale_exponent(max(-float(lo), float(hi)), X.dtype)
    Xs = ldexp(X, e1)
    xc = centre(Xs)
    x_norm = float(torch.linalg.vector_norm(Xs.detach()))
    xc_norm = float(torch.linalg.vector_norm(xc.detach()))
    constant = is_constant(xc_norm, x_norm, n, p, X.dtype)
    e2 = 0 if constant else scale_exponent(xc_norm, X.dtype)
    return Centred(ldexp(xc, e2), e1 + e2, math.ldexp(x_norm, e2), constant)


def degenerate_error(fn: str, side: str, reason: str) -> DegenerateInputError:
    """The one message form for an unusable representation: ``"fn: side reason"``."""
    return DegenerateInputError(f"{fn}: {side} {reason}")
