r"""The every-layer-pair engine of linear CKA: shifted co-moments summed by GEMMs, chunk by chunk.

Equivalent to this loop over every layer pair (Kornblith et al. 2019, feature-space form)::

    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            xc, yc = x - x.mean(0), y - y.mean(0)
            out[i, j] = ||xc.T @ yc||_F^2 / (||xc.T @ xc||_F * ||yc.T @ yc||_F)

but the layers of each side are copied, chunk of rows by chunk of rows, into one buffer, so one
GEMM ``Xcat^T Ycat`` per chunk gives every cross product; the self-products are symmetric
(block staircase) GEMMs of each layer's columns; and every GEMM adds into its accumulator
(``beta = 1``), so a chunk costs its GEMMs plus one copy of its rows. Memory is
:math:`O((\sum p)^2)` plus two chunk buffers whatever ``n``; no ``n x n`` matrix is formed and
float32 features are never copied whole.

Each column is shifted by a fixed estimate ``s`` of its mean (from a few sampled rows) while it is
copied, and the column sums ``u`` of the shifted rows are kept, so the centred co-moment is exact
algebra at the end: :math:`C = \sum_r (x_r - s)(y_r - t)^\top - u_x u_y^\top / n`. With ``s``
close to the mean the subtraction loses nothing; when a later batch moves the mean far from ``s``
(relative to the spread) the state is re-shifted exactly before it is added.

Three users share it: :func:`linear_cka_matrix`, :class:`layer_sim.StreamingLinearCKA`, and
the registry's ``linear_cka`` / ``linear_hsic`` measures (so ``compare`` and
``layer_identification`` get it): their ``prepare`` keeps the validated layer and proves it is not
constant from a few rows (:func:`layer_sim.measures._features.certainly_varies`; a layer it cannot
clear gets its exact self term and constant test there), and their ``matrix_fn``
(:func:`linear_state_matrix`) runs one engine pass for all pairs, computing each layer's self term
once and keeping it on the layer's state.

Scale: each layer is multiplied by an exact power of two while it is copied when its largest
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
#: ``"fp32"``: the GEMMs run in float32 on shifted float32 chunks and add up in float32 over at most
#: ``_FLUSH_ROWS`` rows, then in float64 (abs. error <= 1e-6 for unit-scale features at n = 10^4,
#: with or without a large common offset; see tests).
PRECISIONS: dict[str, torch.dtype] = {"fp64": torch.float64, "fp32": torch.float32}
PRECISION = Choice(*PRECISIONS)

# Rows copied at once: each side's chunk buffer holds about this many bytes. The GEMMs add into
# their accumulators, so a chunk needs only enough rows for the GEMM to run at full rate (a few
# hundred); smaller chunks keep the copy in cache and the memory low.
_CHUNK_BYTES = 64 * 2**20

# fp32 mode: float32 GEMM sums run over at most this many rows before they are added into the
# float64 totals, which bounds their rounding error (and costs one pass over the state per flush).
_FLUSH_ROWS = 2**14

# Row-block width of the symmetric products S = B^T B: block a holds S[a:a+w, a:], so the GEMMs
# skip the lower triangle except inside the w x w diagonal blocks (1 + w/p of SYRK's flops, at
# GEMM speed, on every device).
_STAIR = 128

# Buffer rows start on this many bytes (a 5130-column float32 row would otherwise misalign the
# AVX-512 loads of every other row).
_ALIGN = 64

# Largest cancellation factor N ||mean - s||^2 / ||X_c||_F^2 a shift s may leave per layer: the
# final subtraction loses about log2(1 + factor) bits. Above it the state is re-shifted. float64
# can afford not to shift at all for usual features (ReLU activations: a factor of about 1), which
# saves one pass over each float64 chunk; float32 shifts anyway (it is the same pass as the copy).
_SHIFT_LIMIT = {torch.float64: 2.0**8, torch.float32: 4.0}

# Frobenius norms outside [2^-500, 2^500] are recomputed on power-of-two scaled values, because
# the squares summed inside the norm over- or underflow float64 beyond about 2^+-511.
_NORM_SAFE = 500


def check_precision(precision: str, fn: str) -> str:
    """The one check of a ``precision=`` option (the accumulator below trusts it)."""
    return check(fn, "precision", PRECISION, precision)


# Chunk buffers up to this size are kept (per thread, one per side, so at most 128 MiB) and reused
# by the next call: comparing many small layer pairs (layer_identification) otherwise spent a fifth
# of its time faulting in the fresh pages of a new buffer for every pair (measured on W4 sizes).
_REUSE_BYTES = 64 * 2**20
_buffers = threading.local()


def _buffer(slot: int, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised ``(rows, cols)`` view whose rows start every ``_ALIGN`` bytes, reusing this
    thread's slot when it is small."""
    per = _ALIGN // (torch.finfo(dtype).bits // 8)
    ld = -(-cols // per) * per
    nbytes = rows * ld * torch.finfo(dtype).bits // 8
    if nbytes > _REUSE_BYTES:
        return torch.empty(rows, ld, dtype=dtype, device=device)[:, :cols]
    cache = _buffers.__dict__.setdefault("slots", {})
    flat = cache.get((slot, dtype, device))
    if flat is None or flat.numel() < rows * ld:
        flat = cache[(slot, dtype, device)] = torch.empty(rows * ld, dtype=dtype, device=device)
    return flat[: rows * ld].view(rows, ld)[:, :cols]


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


def _norm(a: torch.Tensor, acc_dtype: torch.dtype) -> torch.Tensor:
    """``||a||_F`` in ``acc_dtype`` for a block of an accumulator.

    A float32 block (fp32 mode) is normed row segment by row segment in float32 and the segment
    norms are combined in float64: one float32 pass, but accurate, whereas one float32 norm over
    millions of entries loses about 1e-3 relative (sequential float32 sums, measured). Squares
    that leave the float32 range fall back to a float64 copy.
    """
    if a.dtype == acc_dtype:
        return frobenius_norm(a)
    seg = torch.cat([torch.linalg.vector_norm(a[:, c : c + 1024], dim=1) for c in range(0, a.shape[1], 1024)])
    v = frobenius_norm(seg.to(acc_dtype))
    if not torch.isfinite(seg).all() or (float(v) == 0 and bool(a.any())):
        return frobenius_norm(a.to(acc_dtype))
    return v


def _rescale_(t: torch.Tensor, e: int) -> None:
    """``t *= 2**e`` in place, exactly (two factors, so any ``|e| <= 2046`` works)."""
    if e:
        half = e // 2
        t.mul_(2.0**half).mul_(2.0 ** (e - half))


def _stair(off: Sequence[int]) -> list[tuple[int, int]]:
    """Row blocks ``(a, b)`` of a symmetric product whose diagonal blocks are the layers ``off``:
    block ``(a, b)`` holds rows ``a:b`` from column ``a`` to the end, so every pair of layers
    ``i <= j`` is covered, and the diagonal ``(b - a)``-squares in full."""
    return [(a, min(a + _STAIR, e)) for s, e in zip(off[:-1], off[1:]) for a in range(s, e, _STAIR)]


class _Mat:
    """A co-moment summed by GEMMs (``beta = 1``) in ``acc`` (the GEMM dtype).

    In fp32 mode ``acc`` is added into ``total`` (the accumulation dtype) every ``_FLUSH_ROWS``
    rows, and then starts afresh: ``fresh`` means it holds nothing yet, so the next GEMM overwrites
    it (``beta = 0``; no zero-filling pass). Direct updates (re-shift, rescale) go to ``total``.
    """

    def __init__(self, rows: int, cols: int, dtype: torch.dtype, acc_dtype: torch.dtype, device, *, zero: bool):
        # A symmetric product never writes its lower triangle: it stays zero (summed by a flush).
        self.acc = (torch.zeros if zero else torch.empty)(rows, cols, dtype=dtype, device=device)
        self.acc_dtype = acc_dtype
        self.total: torch.Tensor | None = None
        self.fresh = True

    def addmm_(self, rows, cols, a: torch.Tensor, b: torch.Tensor) -> None:
        """``acc[rows, cols] += a @ b``."""
        self.acc[rows, cols].addmm_(a, b, beta=0.0 if self.fresh else 1.0)

    def flush(self) -> None:
        if self.fresh or self.acc.dtype == self.acc_dtype:
            return
        self.total = self.acc.to(self.acc_dtype) if self.total is None else self.total.add_(self.acc)
        self.fresh = True

    def done(self) -> None:
        """Call after the GEMMs of a chunk."""
        self.fresh = False

    def direct(self) -> torch.Tensor:
        """The tensor a direct update goes to: everything flushed into one exact total."""
        if self.acc.dtype == self.acc_dtype:
            return self.acc
        self.flush()
        if self.total is None:
            self.total = torch.zeros_like(self.acc, dtype=self.acc_dtype)
        return self.total

    def rescale_(self, rows, cols, e: int) -> None:
        for t in (self.acc, self.total):
            if t is not None:
                _rescale_(t[rows, cols], e)

    def block(self, rows, cols) -> torch.Tensor:
        """The accumulated values of a block: a view of ``acc`` unless a float64 total exists."""
        if self.total is None:
            return self.acc[rows, cols]
        return self.total[rows, cols] if self.fresh else self.total[rows, cols] + self.acc[rows, cols]

    def trace(self, s: int, e: int) -> float:
        parts = [] if self.fresh else [self.acc[s:e, s:e]]
        parts += [] if self.total is None else [self.total[s:e, s:e]]
        return sum(float(p.diagonal().sum(dtype=self.acc_dtype)) for p in parts)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.acc, self.total) if t is not None)


class _Side:
    """One side's layers: column offsets, scale exponents, shift ``s`` and shifted sums ``u``
    (accumulation dtype, scaled units), and one symmetric self co-moment per layer that needs it."""

    def __init__(self, widths: Sequence[int], need: Sequence[bool], dtype, acc_dtype, device):
        self.widths = tuple(widths)
        self.off = _offsets(self.widths)
        self.need = list(need)
        self.max = [0.0] * len(self.widths)
        self.exp = [0] * len(self.widths)
        self.shift: torch.Tensor | None = None  # None: no shift (0)
        self.sums = torch.zeros(self.off[-1], dtype=acc_dtype, device=device)
        self.selfs = [_Mat(p, p, dtype, acc_dtype, device, zero=True) if need_i else None
                      for p, need_i in zip(self.widths, self.need)]

    def layers(self):
        return zip(range(len(self.widths)), self.off[:-1], self.off[1:])

    def mean(self, n: int) -> torch.Tensor:
        return self.sums / n if self.shift is None else self.shift + self.sums / n


class _CoMoments:
    r"""Shifted co-moments of two lists of layers over the same rows (one list: ``widths_y=None``;
    the list with itself: ``same=True``, whose cross product is then symmetric).

    State after ``n`` rows: per column a shift :math:`s` (exact in the GEMM dtype) and the sums
    :math:`u = \sum_r (x_r - s)`; the cross :math:`R = \sum_r (x_r - s)(y_r - t)^\top` of the
    concatenated layers; and per layer whose flag in ``selfs_x`` / ``selfs_y`` is set,
    :math:`R_i = \sum_r (x_{ri} - s_i)(x_{ri} - s_i)^\top`. The centred co-moments are
    :math:`C = R - u_x u_y^\top / n` and :math:`S_i = R_i - u_i u_i^\top / n`: exact algebra for
    any shift. Rounding in the subtraction grows with the cancellation factor
    :math:`n \lVert \bar x - s\rVert^2 / \mathrm{tr}\,S`, which a shift from sampled rows keeps
    near 0.1; :meth:`update` re-shifts the state exactly,
    :math:`R \leftarrow R - d\,u_y^\top` with :math:`d = s' - s`, when a batch would push it above
    ``_SHIFT_LIMIT`` (data whose mean drifts), and ``centre=True`` folds the final subtraction into
    the last chunk's GEMM as one extra row :math:`(u_x / \sqrt n, -u_y / \sqrt n)`.

    Every quantity of layer i is kept scaled by ``2**exp[i]``: the exponent is
    ``scale_exponent(running max |x_i|, GEMM dtype)``, 0 for ordinary magnitudes; when a batch
    raises a layer's running maximum past the window, the state is rescaled exactly.

    Trusted kernel: the caller validated the layers (2-D, finite, equal rows, fixed widths).
    """

    def __init__(self, widths_x: Sequence[int], widths_y: Sequence[int] | None, *, precision: str, device,
                 selfs_x: bool | Sequence[bool] = True, selfs_y: bool | Sequence[bool] = True, same: bool = False):
        device = torch.device(device)
        self.acc_dtype = accumulation_dtype(device)
        # MPS has no float64: there both modes run in float32.
        self.dtype = PRECISIONS[precision] if self.acc_dtype == torch.float64 else torch.float32
        self.x = _Side(widths_x, _flags(selfs_x, len(widths_x)), self.dtype, self.acc_dtype, device)
        self.y = None if widths_y is None or same else _Side(
            widths_y, _flags(selfs_y, len(widths_y)), self.dtype, self.acc_dtype, device)
        self.same = same
        P = self.x.off[-1]
        cols = P if same else (None if self.y is None else self.y.off[-1])
        self.cross = None if cols is None else _Mat(P, cols, self.dtype, self.acc_dtype, device, zero=same)
        self.n = 0
        self.centred = False  # after update(..., centre=True): u = 0, and no further update
        self._unflushed = 0

    def sides(self) -> list[_Side]:
        return [self.x] if self.y is None else [self.x, self.y]

    def mats(self) -> list[_Mat]:
        return [m for m in [self.cross, *(S for side in self.sides() for S in side.selfs)] if m is not None]

    def state_bytes(self) -> int:
        """Bytes held: shifts, sums, cross and self co-moments (independent of ``n``)."""
        vectors = sum(2 * side.off[-1] * torch.finfo(self.acc_dtype).bits // 8 for side in self.sides())
        return vectors + sum(m.nbytes() for m in self.mats())

    # ----------------------------------------------------------------- scaling and shifting

    def _update_exponents(self, side: _Side, amax: Sequence[float]) -> None:
        """New running maxima; rescale the state of every layer whose exponent changes."""
        for i, s, e in side.layers():
            side.max[i] = max(side.max[i], amax[i])
            new = scale_exponent(side.max[i], self.dtype)
            delta, side.exp[i] = new - side.exp[i], new
            if not delta or not self.n:
                continue
            for v in (side.shift, side.sums):
                if v is not None:
                    _rescale_(v[s:e], delta)
            if side.selfs[i] is not None:
                side.selfs[i].rescale_(slice(None), slice(None), 2 * delta)
            if self.cross is not None:
                if side is self.x:
                    self.cross.rescale_(slice(s, e), slice(None), delta)
                if side is self.y or self.same:
                    self.cross.rescale_(slice(None), slice(s, e), delta)

    def _sample(self, side: _Side, layers, m: int):
        """Column means of up to 9 evenly spaced rows (scaled units), and per layer the summed
        column variances of those rows (0 from a single row)."""
        idx = torch.linspace(0, m - 1, steps=min(m, 9), device=side.sums.device).round().long().unique()
        rows = torch.cat([ldexp(x[idx].to(self.acc_dtype), side.exp[i]) for (i, _, _), x in zip(side.layers(), layers)], dim=1)
        mu = rows.mean(0)
        dev = (rows - mu).square().sum(0) / max(rows.shape[0] - 1, 1)
        return mu, [float(dev[s:e].sum()) for _, s, e in side.layers()]

    def _choose_shift(self, side: _Side, layers, m: int) -> None:
        """Keep the shift unless this batch would leave a cancellation factor above the limit."""
        mu, var = self._sample(side, layers, m)
        if self.n == 0 and self.dtype != torch.float64:
            side.shift = mu.to(self.dtype).to(self.acc_dtype)  # shifting is free in the float32 copy
            return
        n, n1 = self.n, self.n + m
        mean = side.mean(n) if n else mu
        g = mean + (mu - mean) * (m / n1)
        d = g if side.shift is None else g - side.shift
        for i, s, e in side.layers():
            if n and side.selfs[i] is None:
                continue  # no self term to judge by (a single-update caller: n == 0 then)
            tr = 0.0 if not n else side.selfs[i].trace(0, e - s) - float(side.sums[s:e].square().sum()) / n
            spread = tr + m * var[i] + n * m / n1 * float((mu[s:e] - mean[s:e]).square().sum())
            if n1 * float(d[s:e].square().sum()) > _SHIFT_LIMIT[self.dtype] * spread:
                self._reshift(side, g.to(self.dtype).to(self.acc_dtype))
                return

    def _reshift(self, side: _Side, new: torch.Tensor) -> None:
        r"""Make the state relative to shift ``new``, exactly: with :math:`d = s' - s`,
        :math:`R \leftarrow R - d u_y^\top` (x side), :math:`R_i \leftarrow R_i - d u^\top - u d^\top
        + n d d^\top`, :math:`u \leftarrow u - n d`."""
        d = new if side.shift is None else new - side.shift
        side.shift = new
        if not self.n:
            return
        n, u = self.n, side.sums
        if self.cross is not None:
            R = self.cross.direct()
            if self.same:
                R.addmm_(torch.stack([-d, -u], 1), torch.stack([u - n * d, d], 1).T)
            elif side is self.x:
                R.addr_(d, self.y.sums, alpha=-1.0)
            else:
                R.addr_(self.x.sums, d, alpha=-1.0)
        for i, s, e in side.layers():
            if side.selfs[i] is not None:
                di, ui = d[s:e], u[s:e]
                side.selfs[i].direct().addmm_(torch.stack([-di, -ui], 1), torch.stack([ui - n * di, di], 1).T)
        side.sums = u - n * d

    # ----------------------------------------------------------------- accumulation

    @torch.no_grad()
    def update(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor] | None = None, *,
               amax_x: Sequence[float] | None = None, amax_y: Sequence[float] | None = None,
               centre: bool = False) -> None:
        """Add rows: ``xs`` (and ``ys``, the same rows) hold one tensor per layer.

        ``amax_*`` are the layers' ``max |x|`` if the caller knows them (saves one pass).
        ``centre=True``: this is the last update; the final centring is folded into its last GEMM.
        """
        if self.centred:
            raise RuntimeError("_CoMoments: update after the final (centre=True) update")
        data = [(self.x, xs, amax_x)] + ([] if self.y is None else [(self.y, ys, amax_y)])
        for side, layers, amax in data:
            self._update_exponents(side, amax or [max_abs(t) for t in layers])
        m = xs[0].shape[0]
        for side, layers, _ in data:
            self._choose_shift(side, layers, m)
        widest = max(side.off[-1] for side in self.sides())
        rows = max(2, _CHUNK_BYTES // (torch.finfo(self.dtype).bits // 8 * widest))
        if self.dtype != self.acc_dtype:
            rows = min(rows, _FLUSH_ROWS)
        device = self.x.sums.device
        # One buffer per side for all chunks (+1 row for the folded centring): fresh pages would be
        # faulted in again for every chunk.
        bufs = [_buffer(k, min(m, rows) + 1, side.off[-1], self.dtype, device) for k, side in enumerate(self.sides())]
        for start in range(0, m, rows):
            stop = min(m, start + rows)
            if self.dtype != self.acc_dtype and self._unflushed + stop - start > _FLUSH_ROWS:
                for mat in self.mats():
                    mat.flush()
                self._unflushed = 0
            self._chunk([(side, [t[start:stop] for t in layers], b) for (side, layers, _), b in zip(data, bufs)],
                        last=centre and stop == m)
        if centre:
            self._centre()

    def _fill(self, side: _Side, layers, buf: torch.Tensor) -> torch.Tensor:
        """Copy a chunk into ``buf``, each layer scaled by ``2**exp`` and shifted, in one pass when
        the scale is 1 (the usual case); add its column sums (a GEMV over the cached copy) to ``u``."""
        m = layers[0].shape[0]
        for (i, s, e), x in zip(side.layers(), layers):
            dst = buf[:m, s:e]
            shift = None if side.shift is None else side.shift[s:e]
            if side.exp[i] == 0 and x.dtype == dst.dtype:
                torch.sub(x, shift.to(self.dtype), out=dst) if shift is not None else dst.copy_(x)
            elif side.exp[i] == 0 and x.element_size() < dst.element_size():
                dst.copy_(x)  # exact widening (float32 features in fp64 mode)
                if shift is not None:
                    dst.sub_(shift)
            else:  # scaled, or wider than the GEMM dtype: subtract before rounding
                v = ldexp(x.to(self.acc_dtype), side.exp[i])
                dst.copy_(v if shift is None else v - shift)
        B = buf[:m]
        side.sums += torch.mv(B.T, torch.ones(m, dtype=self.dtype, device=B.device)).to(self.acc_dtype)
        return B

    def _chunk(self, parts, *, last: bool) -> None:
        m = parts[0][1][0].shape[0]
        Bs = [self._fill(side, layers, buf) for side, layers, buf in parts]
        self.n += m
        self._unflushed += m
        Bx = Bs[0]
        if self.same:
            for a, b in _stair(self.x.off):
                self.cross.addmm_(slice(a, b), slice(a, None), Bx[:, a:b].T, Bx[:, a:])
        elif self.cross is not None:
            By = Bs[1]
            if last:  # fold C = R - u_x u_y^T / n into this GEMM as one more row
                r = math.sqrt(self.n)
                parts[0][2][m] = (self.x.sums / r).to(self.dtype)
                parts[1][2][m] = (self.y.sums / -r).to(self.dtype)
                Bx, By = parts[0][2][: m + 1], parts[1][2][: m + 1]
            self.cross.addmm_(slice(None), slice(None), Bx.T, By)
        for side, B in zip(self.sides(), Bs):
            for i, s, e in side.layers():
                if side.selfs[i] is not None:
                    for a, b in _stair([0, e - s]):
                        side.selfs[i].addmm_(slice(a, b), slice(a, None), B[:, s + a : s + b].T, B[:, s + a : e])
        for mat in self.mats():
            mat.done()

    def _centre(self) -> None:
        """After the folded GEMM: subtract ``u u^T / n`` from the symmetric products directly,
        move the shift to the mean, and set ``u = 0``."""
        n = self.n
        if self.same:
            self.cross.direct().addr_(self.x.sums, self.x.sums, alpha=-1.0 / n)
        for side in self.sides():
            for i, s, e in side.layers():
                if side.selfs[i] is not None:
                    side.selfs[i].direct().addr_(side.sums[s:e], side.sums[s:e], alpha=-1.0 / n)
            side.shift = side.mean(n)
            side.sums = torch.zeros_like(side.sums)
        self.centred = True

    # ----------------------------------------------------------------- results

    def _block_norm(self, mat: _Mat, rows: slice, cols: slice, u_r: torch.Tensor, u_c: torch.Tensor) -> torch.Tensor:
        """``||R[rows, cols] - u_r u_c^T / n||_F`` (no subtraction once centred)."""
        b = mat.block(rows, cols)
        if not self.centred:
            b = torch.addr(b.to(self.acc_dtype), u_r, u_c, alpha=-1.0 / self.n)
        return _norm(b, self.acc_dtype)

    def _sym_norm(self, mat: _Mat, s: int, e: int, u: torch.Tensor) -> torch.Tensor:
        """Norm of the symmetric diagonal block ``s:e`` of a staircase matrix (see :func:`_stair`)."""
        parts = []
        for a, b in _stair([s, e]):
            parts.append(self._block_norm(mat, slice(a, b), slice(a, b), u[a - s : b - s], u[a - s : b - s]))
            if b < e:
                parts.append(math.sqrt(2.0) * self._block_norm(mat, slice(a, b), slice(b, e), u[a - s : b - s], u[b - s :]))
        return frobenius_norm(torch.stack(parts))

    def self_norms(self, side: _Side) -> list[torch.Tensor | None]:
        r""":math:`\lVert S_i\rVert_F` per layer (scaled units; None where it was not accumulated)."""
        out = []
        for i, s, e in side.layers():
            if self.same:
                out.append(self._sym_norm(self.cross, s, e, side.sums[s:e]))
            elif side.selfs[i] is not None:
                S = side.selfs[i]
                out.append(self._sym_norm(S, 0, e - s, side.sums[s:e]))
            else:
                out.append(None)
        return out

    def constant(self, side: _Side) -> list[bool | None]:
        """The one constant test per layer, from the state: ``||X_c||^2 = tr S``,
        ``||X||^2 = tr S + n ||mean||^2`` (both in scaled units)."""
        out = []
        mean = side.mean(self.n)
        for i, s, e in side.layers():
            mat, lo = (self.cross, s) if self.same else (side.selfs[i], 0)
            if mat is None:
                out.append(None)
                continue
            xc_sq = mat.trace(lo, lo + e - s) - float(side.sums[s:e].square().sum()) / self.n
            x_sq = xc_sq + self.n * float(mean[s:e].square().sum())
            out.append(is_constant(math.sqrt(max(xc_sq, 0.0)), math.sqrt(max(x_sq, 0.0)), self.n, e - s, self.acc_dtype))
        return out

    def cross_norms(self) -> torch.Tensor:
        r""":math:`\lVert C_{ij}\rVert_F` for every block (scaled units)."""
        x = self.x
        y = self.x if self.same else self.y
        rows = []
        for i, s, e in x.layers():
            row = []
            for j, t, u in y.layers():
                if self.same and j == i:
                    row.append(self._sym_norm(self.cross, s, e, x.sums[s:e]))
                elif self.same and j < i:  # the lower triangle is the transpose of the upper one
                    row.append(self._block_norm(self.cross, slice(t, u), slice(s, e), x.sums[t:u], x.sums[s:e]))
                else:
                    row.append(self._block_norm(self.cross, slice(s, e), slice(t, u), x.sums[s:e], y.sums[t:u]))
            rows.append(torch.stack(row))
        return torch.stack(rows)

    def cka(self, names_x: Sequence[str], names_y: Sequence[str], *, fn: str) -> torch.Tensor:
        for side, names in ((self.x, names_x), (self.y, names_y)):
            for name, const in zip(names, self.constant(side)):
                if const:
                    raise degenerate_error(fn, f"representation {name}", CONSTANT)
        sx, sy = torch.stack(self.self_norms(self.x)), torch.stack(self.self_norms(self.y))
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
    """``(||S||_F, constant, exponent)`` of one layer through the engine (fp64, chunked)."""
    acc = _CoMoments([x.shape[1]], None, precision="fp64", device=x.device)
    acc.update([x], amax_x=[amax], centre=True)
    return acc.self_norms(acc.x)[0], acc.constant(acc.x)[0], acc.x.exp[0]


def _self_norm(state) -> torch.Tensor | None:
    return state.self_norm if state.self_norm is not None else state.cache.get("self_norm")


@torch.no_grad()
def engine_norms(pa: Sequence, pb: Sequence, *, selfs: bool):
    r"""``(c, self_a, self_b)`` for engine-route states: :math:`c_{ij} = \lVert \tilde X_i^\top
    \tilde Y_j\rVert_F` (scaled by ``2**(e_i + e_j)``) for every pair from one concatenated GEMM per
    row chunk, and with ``selfs`` every state's :math:`\lVert \tilde X_i^\top \tilde X_i\rVert_F`.

    A state whose ``prepare`` left its self term to the engine (``self_norm is None``) gets it in
    the same pass (a symmetric product of its columns of the chunk buffer) and keeps it in
    ``state.cache``, so a layer compared with many others (``layer_identification``) computes it
    once. ``pb is pa`` runs the cross product as one symmetric product, whose diagonal blocks are
    the self terms.
    """
    same = pb is pa
    need_a = [selfs and not same and _self_norm(st) is None for st in pa]
    need_b = [selfs and not same and _self_norm(st) is None for st in pb]
    acc = _CoMoments([st.data.shape[1] for st in pa], [st.data.shape[1] for st in pb], precision="fp64",
                     device=pa[0].data.device, selfs_x=need_a, selfs_y=need_b, same=same)
    acc.update([st.data for st in pa], None if same else [st.data for st in pb], amax_x=[st.amax for st in pa],
               amax_y=None if same else [st.amax for st in pb], centre=True)
    c = acc.cross_norms()
    if not selfs:
        return c, None, None
    if same:
        for k, st in enumerate(pa):
            st.cache.setdefault("self_norm", c[k, k])
    for states, side in ((pa, acc.x), (pb, acc.y)):
        for st, norm in zip(states, [] if side is None else acc.self_norms(side)):
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
        ``"fp32"``: shift each column by a sampled estimate of its mean while copying a chunk to
        float32, run the GEMMs in float32 and add their sums into float64 every ``2**14`` rows:
        about 2x faster on CPUs, abs. error <= 1e-6 for unit-scale features at n = 10^4.

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
    acc.update(X, Y, centre=True)
    return acc.cka(names_x, names_y, fn=fn)
