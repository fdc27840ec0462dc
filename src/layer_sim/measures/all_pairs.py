r"""The every-layer-pair engine of linear CKA: centred co-moments merged chunk by chunk, one cross GEMM per chunk.

Equivalent to this loop over every layer pair (Kornblith et al. 2019, feature-space form)::

    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            xc, yc = x - x.mean(0), y - y.mean(0)
            out[i, j] = ||xc.T @ yc||_F^2 / (||xc.T @ xc||_F * ||yc.T @ yc||_F)

but the layers of each side are concatenated, so one GEMM ``Xcat^T Ycat`` gives every cross
product, the self-products are SYRKs of the diagonal blocks, and rows are processed in chunks of
about ``_CHUNK_BYTES`` (per side) whose means and co-moments are merged exactly (Chan et al.
1979), so memory is :math:`O((\sum p)^2)` whatever ``n``, no ``n x n`` matrix is formed and
float32 features are never copied whole into float64.

Three users share it: :func:`linear_cka_matrix`, :class:`layer_sim.StreamingLinearCKA`, and
the registry's ``linear_cka`` / ``linear_hsic`` measures (so ``compare`` and
``layer_identification`` get it): their ``prepare`` keeps the validated layer and proves it is not
constant from a few rows (:func:`layer_sim.measures._features.certainly_varies`; a layer it cannot
clear gets its exact self term and constant test there), and their ``matrix_fn``
(:func:`linear_state_matrix`) runs one engine pass for all pairs, computing each layer's self term
once and keeping it on the layer's state.

Scale: each layer is multiplied by an exact power of two while it is centred when its largest
magnitude is outside the window of the GEMM dtype (see :mod:`layer_sim.measures._features`), and
Frobenius norms of the co-moments are taken without squaring overflow, so ``c * x`` gives the
value of ``x`` for every representable ``c * x``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from layer_sim._options import Choice, check, strict_signature
from layer_sim.errors import InputError
from layer_sim.measures._features import CONSTANT, degenerate_error, is_constant, ldexp, scale_exponent
from layer_sim.measures._validation import accumulation_dtype, as_matrix, check_range

__all__ = ["linear_cka_matrix", "PRECISIONS"]

#: ``"fp64"``: every product in float64 (error <= 1e-9 vs a float64 reference).
#: ``"fp32"``: centre in float64, cast the centred chunk to float32 for the GEMMs, accumulate the
#: chunk results in float64 (abs. error <= 1e-6 for unit-scale features at n = 10^4; see tests).
PRECISIONS: dict[str, torch.dtype] = {"fp64": torch.float64, "fp32": torch.float32}
PRECISION = Choice(*PRECISIONS)

# Centred rows processed at once, per side. Large enough that the GEMM runs at full rate and the
# per-chunk accumulation (one pass over the (sum p_x, sum p_y) accumulator) stays a few percent.
_CHUNK_BYTES = 256 * 2**20

# CPU GEMM backend, chosen by measurement (benchmarks/run.py "GEMM bound" table): on the 2-core AMD
# EPYC we benchmark on, NumPy's OpenBLAS ran the large cross GEMM faster than torch's MKL, and
# NumPy's ``a.T @ a`` dispatches to SYRK (half the flops). Other devices use torch.
_CPU_BACKEND = "numpy"

# Frobenius norms outside [2^-500, 2^500] are recomputed on power-of-two scaled values, because
# the squares summed inside the norm over- or underflow float64 beyond about 2^+-511.
_NORM_SAFE = 500


def _gemm_tn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a.T @ b``; on the NumPy backend, ``a`` and ``b`` viewing the same memory run as SYRK
    (NumPy detects ``x.T @ x`` from the data pointer and strides: half the flops)."""
    if a.device.type == "cpu" and _CPU_BACKEND == "numpy":
        return torch.from_numpy(a.numpy().T @ b.numpy())
    return a.T @ b


def check_precision(precision: str, fn: str) -> str:
    """The one check of a ``precision=`` option (the accumulator below trusts it)."""
    return check(fn, "precision", PRECISION, precision)


# Chunk buffers up to this size are kept (per thread, one per side, so at most 128 MiB) and reused
# by the next call: comparing many small layer pairs (layer_identification) otherwise spent a fifth
# of its time faulting in the fresh pages of a new buffer for every pair (measured on W4 sizes).
# Larger buffers are freed after each call; their page faults are small next to their GEMMs.
_REUSE_BYTES = 64 * 2**20
_buffers = threading.local()


def _buffer(slot: int, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised ``(rows, cols)`` buffer, reusing this thread's slot when it is small."""
    nbytes = rows * cols * torch.finfo(dtype).bits // 8
    if nbytes > _REUSE_BYTES:
        return torch.empty(rows, cols, dtype=dtype, device=device)
    cache = _buffers.__dict__.setdefault("slots", {})
    flat = cache.get((slot, dtype, device))
    if flat is None or flat.numel() < rows * cols:
        flat = cache[(slot, dtype, device)] = torch.empty(rows * cols, dtype=dtype, device=device)
    return flat[: rows * cols].view(rows, cols)


def _flags(selfs: bool | Sequence[bool], k: int) -> list[bool]:
    return [selfs] * k if isinstance(selfs, bool) else list(selfs)


def _offsets(widths: Sequence[int]) -> list[int]:
    return [0, *np.cumsum(widths).tolist()]


def max_abs(x: torch.Tensor) -> float:
    """``max |x|`` in one pass without an ``abs`` temporary."""
    lo, hi = torch.aminmax(x.detach())
    return max(-float(lo), float(hi))


def frobenius_norm(a: torch.Tensor) -> torch.Tensor:
    """``||a||_F`` without overflow or underflow of the squares (a second, scaled pass only when needed)."""
    v = torch.linalg.vector_norm(a)
    if 2.0**-_NORM_SAFE < float(v) < 2.0**_NORM_SAFE:
        return v
    amax = max_abs(a)
    if amax == 0:
        return v
    e = -math.frexp(amax)[1]
    return ldexp(torch.linalg.vector_norm(ldexp(a, e)), -e)


def _rescale_(t: torch.Tensor, e: int) -> None:
    """``t *= 2**e`` in place, exactly (two factors, so any ``|e| <= 2046`` works)."""
    if e:
        half = e // 2
        t.mul_(2.0**half).mul_(2.0 ** (e - half))


class _CoMoments:
    r"""Running means and centred co-moments of two lists of layers over the same rows.

    State after ``n`` rows: column means :math:`\bar x, \bar y` (float64), the cross co-moment
    :math:`C = \sum_r (x_r - \bar x)(y_r - \bar y)^\top` of the concatenated layers (absent when
    there is no ``y`` side), and one self co-moment :math:`S_i = \sum_r (x_{ri} - \bar x_i)(x_{ri}
    - \bar x_i)^\top` per layer whose flag in ``selfs_x`` / ``selfs_y`` is set (None for the others). A chunk of :math:`m` rows with its
    own means and co-moments is merged with the pairwise update of Chan, Golub & LeVeque (1979):

    .. math::  C \leftarrow C + C_b + \tfrac{n m}{n + m}\,\delta_x \delta_y^\top,
               \quad \delta = \bar x_b - \bar x,

    which, unlike raw sums :math:`\sum x y^\top - n \bar x \bar y^\top`, does not lose digits when
    the data carry a large common offset. The rank-one term is folded into the chunk's GEMM as
    one extra row :math:`\sqrt{nm/(n+m)}\,\delta`, so it costs nothing extra.

    Every quantity is kept for layer i scaled by ``2**exp[i]``: the exponent is
    ``scale_exponent(running max |x_i|, GEMM dtype)``, 0 for ordinary magnitudes; when a batch
    raises a layer's running maximum past the window, the state is rescaled exactly.

    Trusted kernel: the caller validated the layers (2-D, finite, equal rows, fixed widths).
    """

    def __init__(self, widths_x: Sequence[int], widths_y: Sequence[int] | None, *, precision: str, device,
                 selfs_x: bool | Sequence[bool] = True, selfs_y: bool | Sequence[bool] = True):
        self.widths_x = tuple(widths_x)
        self.widths_y = None if widths_y is None else tuple(widths_y)
        self.off_x = _offsets(self.widths_x)
        self.off_y = None if widths_y is None else _offsets(self.widths_y)
        self.acc_dtype = accumulation_dtype(torch.device(device))
        # MPS has no float64: there both modes run in float32.
        self.dtype = PRECISIONS[precision] if self.acc_dtype == torch.float64 else torch.float32
        self.need_x = _flags(selfs_x, len(self.widths_x))
        self.need_y = None if widths_y is None else _flags(selfs_y, len(self.widths_y))
        self.n = 0
        self.mean_x = torch.zeros(self.off_x[-1], dtype=self.acc_dtype, device=device)
        self.mean_y = None if widths_y is None else torch.zeros(self.off_y[-1], dtype=self.acc_dtype, device=device)
        self.max_x = [0.0] * len(self.widths_x)
        self.max_y = None if widths_y is None else [0.0] * len(self.widths_y)
        self.exp_x = [0] * len(self.widths_x)
        self.exp_y = None if widths_y is None else [0] * len(self.widths_y)
        # Co-moments start as the first chunk's products (no zero-filled (sum p)^2 pass).
        self.cross: torch.Tensor | None = None
        self.self_x: list[torch.Tensor | None] = [None] * len(self.widths_x)
        self.self_y: list[torch.Tensor | None] = [None] * len(self.widths_y or ())

    def state_numel(self) -> int:
        """Number of accumulated values: means, cross and self co-moments (independent of ``n``)."""
        P = self.off_x[-1]
        Q = 0 if self.off_y is None else self.off_y[-1]
        selfs = sum(p * p for p, need in zip(self.widths_x, self.need_x) if need)
        selfs += sum(q * q for q, need in zip(self.widths_y or (), self.need_y or ()) if need)
        return P + Q + P * Q + selfs

    # ----------------------------------------------------------------- scaling

    def _update_exponents(self, side: str, amax: Sequence[float]) -> None:
        """New running maxima; rescale the state of every layer whose exponent changes."""
        maxima, exps = (self.max_x, self.exp_x) if side == "x" else (self.max_y, self.exp_y)
        off = self.off_x if side == "x" else self.off_y
        for i, a in enumerate(amax):
            maxima[i] = max(maxima[i], a)
            e = scale_exponent(maxima[i], self.dtype)
            delta, exps[i] = e - exps[i], e
            if delta and self.n:
                s, t = off[i], off[i + 1]
                _rescale_((self.mean_x if side == "x" else self.mean_y)[s:t], delta)
                S = (self.self_x if side == "x" else self.self_y)[i]
                if S is not None:
                    _rescale_(S, 2 * delta)
                if self.cross is not None:
                    _rescale_(self.cross[s:t] if side == "x" else self.cross[:, s:t], delta)

    # ----------------------------------------------------------------- accumulation

    @torch.no_grad()
    def update(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor] | None = None, *,
               amax_x: Sequence[float] | None = None, amax_y: Sequence[float] | None = None) -> None:
        """Add rows: ``xs`` (and ``ys``, the same rows) hold one tensor per layer.

        ``ys is xs`` (comparing a list of layers with itself) runs the cross product as one SYRK.
        ``amax_*`` are the layers' ``max |x|`` if the caller knows them (saves one pass).
        """
        same = ys is xs
        self._update_exponents("x", amax_x or [max_abs(x) for x in xs])
        if self.widths_y is not None:
            self._update_exponents("y", self.max_x if same else (amax_y or [max_abs(y) for y in ys]))
        m = xs[0].shape[0]
        widest = max(self.off_x[-1], 0 if self.off_y is None else self.off_y[-1])
        rows = max(2, _CHUNK_BYTES // (8 * widest))
        # One buffer per side for all chunks: fresh pages would be faulted in again for every chunk.
        device = self.mean_x.device
        bx = _buffer(0, min(m, rows) + 1, self.off_x[-1], self.dtype, device)
        by = None if self.widths_y is None or same else _buffer(1, min(m, rows) + 1, self.off_y[-1], self.dtype, device)
        for start in range(0, m, rows):
            stop = min(m, start + rows)
            chunk_x = [x[start:stop] for x in xs]
            chunk_y = None if by is None else [y[start:stop] for y in ys]
            self._merge(chunk_x, chunk_y, bx, by, same)

    def _centred(self, layers, off, exps, mean, buf):
        """Chunk centred on its own float64 means (scaled by each layer's exponent), in the compute
        dtype, plus the Chan row.

        fp32 mode centres a float64 copy of each layer, then rounds it once into the buffer.
        (Plain same-dtype copy/mean/sub_ passes: on CPU, torch's mixed-dtype ``sub(..., out=)`` and
        ``mean(dtype=)`` ran ~8x slower than these, a measurable share of the GEMM time.)
        """
        m = layers[0].shape[0]
        buf = buf[: m + 1]
        means = []
        direct = self.dtype == self.acc_dtype
        for layer, s, e, ex in zip(layers, off[:-1], off[1:], exps):
            centred = buf[:m, s:e].copy_(layer) if direct else layer.to(self.acc_dtype, copy=True)
            _rescale_(centred, ex)
            means.append(centred.mean(0))
            centred.sub_(means[-1])
            if not direct:
                buf[:m, s:e].copy_(centred)
        chunk_mean = torch.cat(means)
        buf[m] = (chunk_mean - mean) * math.sqrt(self.n * m / (self.n + m))
        return buf, chunk_mean

    def _merge(self, xs, ys, bx, by, same: bool) -> None:
        m = xs[0].shape[0]
        bx, mx = self._centred(xs, self.off_x, self.exp_x, self.mean_x, bx)
        if ys is not None:
            by, my = self._centred(ys, self.off_y, self.exp_y, self.mean_y, by)
        elif same:
            by, my = bx, mx
        cross = None if self.widths_y is None else _gemm_tn(bx, by).to(self.acc_dtype)
        if cross is not None:
            self.cross = cross if self.cross is None else self.cross.add_(cross)
        sides = [(bx, self.off_x, self.need_x, self.self_x)]
        if self.widths_y is not None:
            sides.append((by, self.off_y, self.need_y, self.self_y))
        for b, off, need, acc in sides:
            for i, (s, e) in enumerate(zip(off[:-1], off[1:])):
                if need[i]:
                    S = _gemm_tn(b[:, s:e], b[:, s:e]).to(self.acc_dtype)
                    acc[i] = S if acc[i] is None else acc[i].add_(S)
        n = self.n + m
        self.mean_x += (mx - self.mean_x) * (m / n)
        if self.mean_y is not None:
            self.mean_y += (my - self.mean_y) * (m / n)
        self.n = n

    # ----------------------------------------------------------------- results

    def self_norms(self, side: str) -> list[torch.Tensor | None]:
        r""":math:`\lVert S_i\rVert_F` per layer (scaled units; None where it was not accumulated)."""
        return [None if S is None else frobenius_norm(S) for S in (self.self_x if side == "x" else self.self_y)]

    def constant(self, side: str) -> list[bool]:
        """The one constant test per layer, from the state: ``||X_c||^2 = tr S``,
        ``||X||^2 = tr S + n ||mean||^2`` (both in scaled units)."""
        selfs, mean, off = (self.self_x, self.mean_x, self.off_x) if side == "x" else (self.self_y, self.mean_y, self.off_y)
        out = []
        for S, s, e in zip(selfs, off[:-1], off[1:]):
            if S is None:
                out.append(None)
                continue
            xc_sq = float(S.diagonal().sum())
            x_sq = xc_sq + self.n * float(mean[s:e].square().sum())
            out.append(is_constant(math.sqrt(max(xc_sq, 0.0)), math.sqrt(x_sq), self.n, e - s, self.acc_dtype))
        return out

    def cross_norms(self) -> torch.Tensor:
        r""":math:`\lVert C_{ij}\rVert_F` for every block (scaled units)."""
        C, off_x, off_y = self.cross, self.off_x, self.off_y
        return torch.stack([
            torch.stack([frobenius_norm(C[s:e, t:u]) for t, u in zip(off_y[:-1], off_y[1:])])
            for s, e in zip(off_x[:-1], off_x[1:])
        ])

    def cka(self, names_x: Sequence[str], names_y: Sequence[str], *, fn: str) -> torch.Tensor:
        for side, names in (("x", names_x), ("y", names_y)):
            for name, const in zip(names, self.constant(side)):
                if const:
                    raise degenerate_error(fn, f"representation {name}", CONSTANT)
        sx, sy = torch.stack(self.self_norms("x")), torch.stack(self.self_norms("y"))
        return cka_from_norms(fn, self.cross_norms(), sx, sy, rounding=self.dtype)


def cka_from_norms(fn: str, c: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, *, rounding: torch.dtype):
    r"""CKA :math:`= (c_{ij} / \sqrt{s_{x,i}} / \sqrt{s_{y,j}})^2` from Frobenius norms of the cross and
    self co-moments (any consistent scaling): the same ratio as ``||C||^2 / (||S_x|| ||S_y||)``
    without forming a fourth power, then the range check."""
    value = (c / torch.sqrt(sx)[:, None] / torch.sqrt(sy)[None, :]).square()
    return check_range(fn, value, rounding=rounding)


def _times_pow2(t: torch.Tensor, k) -> torch.Tensor:
    """``t * 2**k`` exactly for an int or integer-valued tensor ``k``, in factors of at most ``2**1000``
    (so no factor overflows, and a representable result is reached through representable steps)."""
    k = torch.as_tensor(k, dtype=t.dtype, device=t.device)
    while bool((k != 0).any()):
        step = k.clamp(-1000, 1000)
        t = t * torch.exp2(step)
        k = k - step
    return t


def _check_hsic(fn: str, v: torch.Tensor, log2_value: torch.Tensor) -> None:
    info = torch.finfo(v.dtype)
    bad = (v.detach() > 0) & ((log2_value >= math.log2(info.max)) | (log2_value < math.log2(info.tiny)))
    if bad.any():
        b = float(log2_value[bad].reshape(-1)[0])
        raise InputError(
            f"{fn}: the value (about 2^{b:.0f} = 1e{b * math.log10(2):.0f}) is outside the "
            f"{str(v.dtype).removeprefix('torch.')} range; HSIC is not scale invariant "
            "(HSIC(c x, y) = c^2 HSIC(x, y)): rescale x or y"
        )


def _log2(v: torch.Tensor) -> torch.Tensor:
    vd = v.detach()
    return torch.log2(torch.where(vd > 0, vd, torch.ones_like(vd)))


def hsic_from_norm(fn: str, c: torch.Tensor, e, n: int) -> torch.Tensor:
    r"""Linear HSIC :math:`= (c\,2^{-e} / (n - 1))^2` from the Frobenius norm ``c`` of a cross
    co-moment scaled by ``2**e`` (``e`` an int or an integer tensor shaped like ``c``).

    HSIC is not scale invariant, so its true value can lie outside the dtype's range even when
    both inputs are representable (1e300 * 1e300): that raises instead of returning inf or 0.
    """
    r = c / (n - 1)
    _check_hsic(fn, r, 2 * (_log2(r) - torch.as_tensor(e, dtype=c.dtype, device=c.device)))
    return _times_pow2(r, -torch.as_tensor(e, dtype=c.dtype, device=c.device)).square()


def hsic_from_inner(fn: str, v: torch.Tensor, e: int, n: int) -> torch.Tensor:
    r"""Linear HSIC :math:`= v\,4^{-e} / (n - 1)^2` from the inner product ``v = <K_c, L_c>`` of
    centred Grams scaled by ``4**e``; the same range check as :func:`hsic_from_norm`."""
    r = v / (n - 1) ** 2
    _check_hsic(fn, r, _log2(r) - 2 * e)
    return _times_pow2(r, -2 * e)


# --------------------------------------------------------------------------- prepared states


@torch.no_grad()
def self_moments(x: torch.Tensor, amax: float) -> tuple[torch.Tensor, bool, int]:
    """``(||S||_F, constant, exponent)`` of one layer through the engine (fp64, chunked SYRK)."""
    acc = _CoMoments([x.shape[1]], None, precision="fp64", device=x.device)
    acc.update([x], amax_x=[amax])
    return acc.self_norms("x")[0], acc.constant("x")[0], acc.exp_x[0]


def _self_norm(state) -> torch.Tensor | None:
    return state.self_norm if state.self_norm is not None else state.cache.get("self_norm")


@torch.no_grad()
def engine_norms(pa: Sequence, pb: Sequence, *, selfs: bool):
    r"""``(c, self_a, self_b)`` for engine-route states: :math:`c_{ij} = \lVert \tilde X_i^\top
    \tilde Y_j\rVert_F` (scaled by ``2**(e_i + e_j)``) for every pair from one concatenated GEMM per
    row chunk, and with ``selfs`` every state's :math:`\lVert \tilde X_i^\top \tilde X_i\rVert_F`.

    A state whose ``prepare`` left its self term to the engine (``self_norm is None``) gets it in
    the same pass (a SYRK of its slice of the chunk buffer) and keeps it in ``state.cache``, so a
    layer compared with many others (``layer_identification``) computes it once. ``pb is pa``
    runs the cross product as one SYRK, whose diagonal blocks are the self terms.
    """
    same = pb is pa
    need_a = [selfs and not same and _self_norm(st) is None for st in pa]
    need_b = [selfs and not same and _self_norm(st) is None for st in pb]
    acc = _CoMoments([st.data.shape[1] for st in pa], [st.data.shape[1] for st in pb], precision="fp64",
                     device=pa[0].data.device, selfs_x=need_a, selfs_y=need_b)
    xs = [st.data for st in pa]
    acc.update(xs, xs if same else [st.data for st in pb], amax_x=[st.amax for st in pa],
               amax_y=[st.amax for st in pb])
    c = acc.cross_norms()
    if not selfs:
        return c, None, None
    if same:
        for k, st in enumerate(pa):
            st.cache.setdefault("self_norm", c[k, k])
    for states, norms in ((pa, acc.self_norms("x")), (pb, acc.self_norms("y"))):
        for st, norm in zip(states, norms):
            if norm is not None:
                st.cache["self_norm"] = norm
    return c, torch.stack([_self_norm(st) for st in pa]), torch.stack([_self_norm(st) for st in pb])


def linear_state_matrix(pa: list, pb: list, *, name: str, score, normalise: bool) -> torch.Tensor:
    """``Measure.matrix_fn`` for ``linear_cka`` / ``linear_hsic`` on prepared linear states.

    Equal to ``score(a, b)`` for every pair. When every state is on the engine route (the raw
    layer kept, n > p, no autograd), all products come from one engine pass (:func:`engine_norms`),
    which is then the work of :func:`linear_cka_matrix` on the same layers. Otherwise (Gram route,
    autograd, degenerate states that must raise) it loops over ``score``.
    """
    states = [*pa, *pb]
    if not all(s.route == "engine" for s in states) or (normalise and any(s.degenerate for s in states)):
        return torch.stack([torch.stack([score(a, b) for b in pb]) for a in pa])
    c, self_a, self_b = engine_norms(pa, pb, selfs=normalise)
    if not normalise:
        e = torch.tensor([[a.exponent + b.exponent for b in pb] for a in pa], device=c.device)
        return hsic_from_norm(name, c, e, pa[0].n)
    return cka_from_norms(name, c, self_a, self_b, rounding=torch.float64)


# --------------------------------------------------------------------------- linear_cka_matrix


def _gram_route(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], precision: str, names_x, names_y, fn):
    r"""The matrix through centred Grams :math:`K_i = \tilde X_i \tilde X_i^\top`:
    :math:`\langle K_i, L_j\rangle = \|\tilde X_i^\top \tilde Y_j\|_F^2`, cheaper than the
    :math:`p \times p` products when :math:`n < p`. Each Gram is flattened and unit-scaled (an exact
    power of two), so the GEMM of all pairs cannot overflow."""
    from layer_sim.measures._features import centred

    dtype = PRECISIONS[precision]

    def grams(layers, names):
        out = []
        for x, name in zip(layers, names):
            c = centred(x.to(accumulation_dtype(x.device)))
            if c.constant:
                raise degenerate_error(fn, f"representation {name}", CONSTANT)
            # centred() keeps the float64 window; float32 GEMMs need theirs (1e37 squared overflows).
            xc = ldexp(c.xc, scale_exponent(max_abs(c.xc), dtype)).to(dtype)
            K = (xc @ xc.T).to(torch.float64).reshape(-1)
            out.append(ldexp(K, -math.frexp(max_abs(K))[1]))
        return torch.stack(out)

    K, L = grams(xs, names_x), grams(ys, names_y)
    return cka_from_norms(fn, (K @ L.T).clamp_min(0).sqrt(), K.norm(dim=1), L.norm(dim=1), rounding=dtype)


def _as_layers(layers, *, side: str, fn: str) -> tuple[list[str], list]:
    """``layers`` as (names, list of arrays): a mapping keeps its keys, a sequence is numbered."""
    if isinstance(layers, Mapping):
        names, values = [str(k) for k in layers], list(layers.values())
    elif isinstance(layers, Sequence) and not isinstance(layers, (str, bytes)):
        names, values = [f"{side}[{i}]" for i in range(len(layers))], list(layers)
    else:
        raise InputError(
            f"{fn}: {side} must be a list or a dict of (n, p) representations, got {type(layers).__name__}"
        )
    if not values:
        raise InputError(f"{fn}: {side} holds no representations")
    return names, values


@strict_signature
def linear_cka_matrix(xs, ys, *, precision: str = "fp64"):
    r"""Linear CKA between every layer of one network and every layer of another.

    .. math::

        \mathrm{CKA}(X_i, Y_j) = \frac{\|\tilde X_i^\top \tilde Y_j\|_F^2}
        {\|\tilde X_i^\top \tilde X_i\|_F\,\|\tilde Y_j^\top \tilde Y_j\|_F},

    with :math:`\tilde X` the column-centred representation (Kornblith et al. 2019, eq. for
    linear HSIC in feature space). Equal to calling :func:`layer_sim.linear_cka` on every pair, but
    every cross product comes from one concatenated GEMM :math:`\tilde X_{cat}^\top \tilde Y_{cat}`,
    each self-product is computed once per layer (SYRK), and rows are streamed in chunks (see
    :class:`layer_sim.StreamingLinearCKA`, which shares this engine), so memory is
    :math:`O((\sum_i p_i + \sum_j q_j)^2)` and no ``n x n`` matrix exists. When ``n`` is smaller
    than the layers are wide, the equivalent Gram route
    :math:`\langle \tilde X_i\tilde X_i^\top, \tilde Y_j\tilde Y_j^\top\rangle` is used instead.
    Scale-invariant at any magnitude: ``c * x`` gives the value of ``x`` for every representable
    ``c * x``.

    Parameters
    ----------
    xs, ys : list or dict of {ndarray, Tensor} of shape (n, p_i) / (n, q_j)
        Representations of the same ``n`` examples (rows); widths may differ. A dict's keys
        name the layers in error messages.
    precision : {"fp64", "fp32"}, default="fp64"
        ``"fp64"``: all products in float64 (abs. error <= 1e-9 vs a float64 reference).
        ``"fp32"``: centre in float64, then run the GEMMs in float32 and accumulate chunk results in
        float64: about 2x faster on CPUs, abs. error <= 1e-6 for unit-scale features at n = 10^4.

    Returns
    -------
    ndarray or Tensor of shape (len(xs), len(ys))
        float64; a tensor (on the inputs' device) if any input is a tensor. Not differentiable:
        use :func:`layer_sim.linear_cka` per pair for gradients.

    Raises
    ------
    InputError
        Non-finite values, fewer than 2 rows, mismatched numbers of rows, empty lists.
    DegenerateInputError
        A constant representation (the message names it).
    UnknownNameError
        An unknown ``precision``.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019). Similarity of neural network representations
    revisited. ICML. Chan, Golub & LeVeque (1979). Updating formulae and a pairwise algorithm for
    computing sample variances.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((100, 5))
    >>> m = linear_cka_matrix([x, 2 * x + 1], [x, x[:, :2]])
    >>> m.shape, round(float(m[0, 0]), 12), round(float(m[1, 0]), 12)
    ((2, 2), 1.0, 1.0)
    """
    fn = "linear_cka_matrix"
    check_precision(precision, fn)
    names_x, raw_x = _as_layers(xs, side="xs", fn=fn)
    names_y, raw_y = _as_layers(ys, side="ys", fn=fn)
    numpy_out = not any(isinstance(t, torch.Tensor) for t in (*raw_x, *raw_y))
    # keep_float: the kernel centres chunk by chunk in float64, so no full float64 copy is needed
    X = [as_matrix(t, name=nm, fn=fn, keep_float=True) for t, nm in zip(raw_x, names_x)]
    Y = [as_matrix(t, name=nm, fn=fn, keep_float=True) for t, nm in zip(raw_y, names_y)]
    n = X[0].shape[0]
    for nm, t in zip((*names_x, *names_y), (*X, *Y)):
        if t.shape[0] != n:
            raise InputError(
                f"{fn}: every representation must have the same number of examples (rows); "
                f"{names_x[0]} has {n}, {nm} has {t.shape[0]}"
            )
        if t.device != X[0].device:
            raise InputError(f"{fn}: {names_x[0]} is on {X[0].device} but {nm} is on {t.device}")
    out = _cka_matrix(X, Y, precision=precision, names_x=names_x, names_y=names_y, fn=fn)
    return out.cpu().numpy() if numpy_out else out


@torch.no_grad()
def _cka_matrix(X, Y, *, precision: str, names_x, names_y, fn: str) -> torch.Tensor:
    """Trusted kernel behind :func:`linear_cka_matrix`: picks the cheaper of the two routes."""
    n = X[0].shape[0]
    wx, wy = [t.shape[1] for t in X], [t.shape[1] for t in Y]
    feature_flops = 2 * n * sum(wx) * sum(wy) + n * (sum(p * p for p in wx) + sum(q * q for q in wy))
    gram_flops = n * n * (sum(wx) + sum(wy) + 2 * len(wx) * len(wy))
    if gram_flops < feature_flops:
        return _gram_route(X, Y, precision, names_x, names_y, fn)
    acc = _CoMoments(wx, wy, precision=precision, device=X[0].device)
    acc.update(X, Y)
    return acc.cka(names_x, names_y, fn=fn)
