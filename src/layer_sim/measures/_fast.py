r"""All-layer-pairs linear CKA: centred co-moments merged chunk by chunk, one cross GEMM per chunk.

Equivalent to this loop over every layer pair (Kornblith et al. 2019, feature-space form)::

    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            xc, yc = x - x.mean(0), y - y.mean(0)
            out[i, j] = ||xc.T @ yc||_F^2 / (||xc.T @ xc||_F * ||yc.T @ yc||_F)

but the layers of each side are concatenated, so one GEMM ``Xcat^T Ycat`` gives every cross
product, the self-products are SYRKs of the diagonal blocks, and rows are processed in chunks of
about ``_CHUNK_BYTES`` (per side) whose means and co-moments are merged exactly (Chan et al.
1979), so memory is :math:`O((\sum p)^2)` whatever ``n`` and no ``n x n`` matrix is formed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from layer_sim.errors import DegenerateInputError, InputError, UnknownNameError
from layer_sim.measures._kernels import normalised
from layer_sim.measures._validation import accumulation_dtype, as_matrix

__all__ = ["linear_cka_matrix", "PRECISIONS"]

#: ``"fp64"``: every product in float64 (error <= 1e-9 vs a float64 reference).
#: ``"fp32"``: centre in float64, cast the centred chunk to float32 for the GEMMs, accumulate the
#: chunk results in float64 (abs. error <= 1e-6 for unit-scale features at n = 10^4; see tests).
PRECISIONS: dict[str, torch.dtype] = {"fp64": torch.float64, "fp32": torch.float32}

# Centred rows processed at once, per side. Large enough that the GEMM runs at full rate and the
# per-chunk accumulation (one pass over the (sum p_x, sum p_y) accumulator) stays a few percent.
_CHUNK_BYTES = 256 * 2**20

# CPU GEMM backend, chosen by measurement (benchmarks/run.py "GEMM bound" table): on the 2-core AMD
# EPYC we benchmark on, NumPy's OpenBLAS ran the large cross GEMM faster than torch's MKL, and
# NumPy's ``a.T @ a`` dispatches to SYRK (half the flops). Other devices use torch.
_CPU_BACKEND = "numpy"


def _gemm_tn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a.T @ b``; on the NumPy backend, ``a`` and ``b`` viewing the same memory run as SYRK
    (NumPy detects ``x.T @ x`` from the data pointer and strides: half the flops)."""
    if a.device.type == "cpu" and _CPU_BACKEND == "numpy":
        return torch.from_numpy(a.numpy().T @ b.numpy())
    return a.T @ b


def check_precision(precision: str, fn: str) -> None:
    """The one check of a ``precision=`` option (the accumulator below trusts it)."""
    if precision not in PRECISIONS:
        raise UnknownNameError(f"{fn}: unknown precision {precision!r}; available: {', '.join(PRECISIONS)}")


def _offsets(widths: Sequence[int]) -> list[int]:
    return [0, *np.cumsum(widths).tolist()]


class _CoMoments:
    r"""Running means and centred co-moments of two lists of layers over the same rows.

    State after ``n`` rows: column means :math:`\bar x, \bar y` (float64), the cross co-moment
    :math:`C = \sum_r (x_r - \bar x)(y_r - \bar y)^\top` of the concatenated layers, and one
    self co-moment :math:`S_i = \sum_r (x_{ri} - \bar x_i)(x_{ri} - \bar x_i)^\top` per layer.
    A chunk of :math:`m` rows with its own means and co-moments is merged with the pairwise
    update of Chan, Golub & LeVeque (1979):

    .. math::  C \leftarrow C + C_b + \tfrac{n m}{n + m}\,\delta_x \delta_y^\top,
               \quad \delta = \bar x_b - \bar x,

    which, unlike raw sums :math:`\sum x y^\top - n \bar x \bar y^\top`, does not lose digits when
    the data carry a large common offset. The rank-one term is folded into the chunk's GEMM as
    one extra row :math:`\sqrt{nm/(n+m)}\,\delta`, so it costs nothing extra.

    Trusted kernel: the caller validated the layers (2-D, finite, equal rows, fixed widths).
    """

    def __init__(self, widths_x: Sequence[int], widths_y: Sequence[int], *, precision: str, device):
        self.widths_x, self.widths_y = tuple(widths_x), tuple(widths_y)
        self.off_x, self.off_y = _offsets(self.widths_x), _offsets(self.widths_y)
        self.acc_dtype = accumulation_dtype(torch.device(device))
        # MPS has no float64: there both modes run in float32.
        self.dtype = PRECISIONS[precision] if self.acc_dtype == torch.float64 else torch.float32
        self.n = 0
        self.mean_x = torch.zeros(self.off_x[-1], dtype=self.acc_dtype, device=device)
        self.mean_y = torch.zeros(self.off_y[-1], dtype=self.acc_dtype, device=device)
        # Co-moments start as the first chunk's products (no zero-filled (sum p)^2 pass).
        self.cross: torch.Tensor | None = None
        self.self_x: list[torch.Tensor] | None = None
        self.self_y: list[torch.Tensor] | None = None

    def state_numel(self) -> int:
        """Number of accumulated values: means, cross and self co-moments (independent of ``n``)."""
        P, Q = self.off_x[-1], self.off_y[-1]
        return P + Q + P * Q + sum(p * p for p in self.widths_x) + sum(q * q for q in self.widths_y)

    @torch.no_grad()
    def update(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> None:
        m = xs[0].shape[0]
        rows = max(2, _CHUNK_BYTES // (8 * max(self.off_x[-1], self.off_y[-1])))
        # One buffer per side for all chunks: fresh pages would be faulted in again for every chunk.
        device = self.mean_x.device
        bufs = [torch.empty(min(m, rows) + 1, off[-1], dtype=self.dtype, device=device) for off in (self.off_x, self.off_y)]
        for start in range(0, m, rows):
            stop = min(m, start + rows)
            self._merge([x[start:stop] for x in xs], [y[start:stop] for y in ys], bufs)

    def _centred(self, layers, off, mean, buf):
        """Chunk centred on its own float64 means, in the compute dtype, plus the Chan row.

        fp32 mode centres a float64 copy of each layer, then rounds it once into the buffer.
        (Plain same-dtype copy/mean/sub_ passes: on CPU, torch's mixed-dtype ``sub(..., out=)`` and
        ``mean(dtype=)`` ran ~8x slower than these, a measurable share of the GEMM time.)
        """
        m = layers[0].shape[0]
        buf = buf[: m + 1]
        means = []
        direct = self.dtype == self.acc_dtype
        for layer, s, e in zip(layers, off[:-1], off[1:]):
            centred = buf[:m, s:e].copy_(layer) if direct else layer.to(self.acc_dtype, copy=True)
            means.append(centred.mean(0))
            centred.sub_(means[-1])
            if not direct:
                buf[:m, s:e].copy_(centred)
        chunk_mean = torch.cat(means)
        buf[m] = (chunk_mean - mean) * math.sqrt(self.n * m / (self.n + m))
        return buf, chunk_mean

    def _merge(self, xs, ys, bufs) -> None:
        m = xs[0].shape[0]
        bx, mx = self._centred(xs, self.off_x, self.mean_x, bufs[0])
        by, my = self._centred(ys, self.off_y, self.mean_y, bufs[1])
        cross = _gemm_tn(bx, by).to(self.acc_dtype)
        selfs = [
            [_gemm_tn(b[:, s:e], b[:, s:e]).to(self.acc_dtype) for s, e in zip(off[:-1], off[1:])]
            for b, off in ((bx, self.off_x), (by, self.off_y))
        ]
        if self.cross is None:
            self.cross, (self.self_x, self.self_y) = cross, selfs
        else:
            self.cross += cross
            for acc, new in zip((*self.self_x, *self.self_y), (*selfs[0], *selfs[1])):
                acc += new
        n = self.n + m
        self.mean_x += (mx - self.mean_x) * (m / n)
        self.mean_y += (my - self.mean_y) * (m / n)
        self.n = n

    def hsic_parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""``(H, hx, hy)``: :math:`H_{ij} = \|C_{ij}\|_F^2`, :math:`hx_i = \|S_i\|_F^2`, :math:`hy_j`."""
        H = _block_sq_norms(self.cross, self.off_x, self.off_y)
        hx = torch.stack([torch.linalg.vector_norm(s) ** 2 for s in self.self_x])
        hy = torch.stack([torch.linalg.vector_norm(s) ** 2 for s in self.self_y])
        return H, hx, hy

    def cka(self, names_x: Sequence[str], names_y: Sequence[str], *, fn: str) -> torch.Tensor:
        H, hx, hy = self.hsic_parts()
        _check_variance(hx, names_x, fn)
        _check_variance(hy, names_y, fn)
        return normalised(fn, H, hx[:, None], hy[None, :], rounding=self.dtype)


def _block_sq_norms(C: torch.Tensor, off_x: Sequence[int], off_y: Sequence[int]) -> torch.Tensor:
    """Squared Frobenius norm of every block ``C[off_x[i]:off_x[i+1], off_y[j]:off_y[j+1]]``."""
    return torch.stack([
        torch.stack([torch.linalg.vector_norm(C[s:e, t:u]) ** 2 for t, u in zip(off_y[:-1], off_y[1:])])
        for s, e in zip(off_x[:-1], off_x[1:])
    ])


@torch.no_grad()
def _centred_cross_sq_norms(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], *, precision: str = "fp64"):
    r""":math:`\|X_i^\top Y_j\|_F^2` for every pair of already-centred layers, one GEMM per row chunk.

    ``ys is xs`` computes the symmetric product :math:`X_{cat}^\top X_{cat}` from one buffer (SYRK).
    """
    same = ys is xs
    off_x = _offsets([x.shape[1] for x in xs])
    off_y = off_x if same else _offsets([y.shape[1] for y in ys])
    dtype = PRECISIONS[precision]
    n = xs[0].shape[0]
    rows = max(1, _CHUNK_BYTES // (8 * max(off_x[-1], off_y[-1])))
    C = None
    for start in range(0, n, rows):
        stop = min(n, start + rows)

        def concat(layers, off):
            buf = torch.empty(stop - start, off[-1], dtype=dtype, device=layers[0].device)
            for layer, s, e in zip(layers, off[:-1], off[1:]):
                buf[:, s:e].copy_(layer[start:stop])
            return buf

        bx = concat(xs, off_x)
        part = _gemm_tn(bx, bx if same else concat(ys, off_y))
        C = part.to(torch.float64) if C is None else C.add_(part)
    return _block_sq_norms(C, off_x, off_y)


def linear_state_matrix(pa: list, pb: list, *, name: str, score, normalise: bool) -> torch.Tensor:
    """``Measure.matrix_fn`` for ``linear_cka`` / ``linear_hsic`` on prepared linear states.

    Equal to ``score(a, b)`` for every pair; when every state is on the feature route (centred
    ``features``, n > p), not degenerate and needs no gradient, all cross products come from one
    concatenated GEMM (:func:`_centred_cross_sq_norms`) and the cached self terms. Otherwise (Gram
    route, degenerate states that must raise, autograd) it loops over ``score``.
    """
    states = [*pa, *pb]
    if not all(s.features is not None and s.degenerate is None and not s.features.requires_grad for s in states):
        return torch.stack([torch.stack([score(a, b) for b in pb]) for a in pa])
    xs = [s.features for s in pa]
    H = _centred_cross_sq_norms(xs, xs if pb is pa else [s.features for s in pb])
    if not normalise:
        return H / (pa[0].n - 1) ** 2
    self_a = torch.stack([s.self_hsic for s in pa])
    self_b = torch.stack([s.self_hsic for s in pb])
    return normalised(name, H, self_a[:, None], self_b[None, :])


def _check_variance(h: torch.Tensor, names: Sequence[str], fn: str) -> None:
    bad = [names[i] for i in torch.nonzero(h <= 0).flatten().tolist()]
    if bad:
        raise DegenerateInputError(
            f"{fn}: representation(s) {', '.join(map(str, bad))} have zero variance (constant features); "
            "CKA is undefined"
        )


def _gram_route_parts(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], precision: str):
    r"""``(H, hx, hy)`` of :meth:`_CoMoments.hsic_parts` through centred Grams :math:`K_i = \tilde X_i
    \tilde X_i^\top`: :math:`H_{ij} = \langle K_i, L_j\rangle = \|\tilde X_i^\top \tilde Y_j\|_F^2`,
    cheaper than the :math:`p \times p` products when :math:`n < p`."""
    dtype = PRECISIONS[precision]

    def grams(layers):
        out = []
        for x in layers:
            x = x.to(torch.float64)
            xc = (x - x.mean(0)).to(dtype)
            out.append((xc @ xc.T).to(torch.float64).reshape(-1))
        return torch.stack(out)

    K, L = grams(xs), grams(ys)
    H = K @ L.T
    hx, hy = K.square().sum(1), L.square().sum(1)
    return H, hx, hy


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
        A representation with zero variance (the message names it).
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
        H, hx, hy = _gram_route_parts(X, Y, precision)
        _check_variance(hx, names_x, fn)
        _check_variance(hy, names_y, fn)
        return normalised(fn, H, hx[:, None], hy[None, :], rounding=PRECISIONS[precision])
    acc = _CoMoments(wx, wy, precision=precision, device=X[0].device)
    acc.update(X, Y)
    return acc.cka(names_x, names_y, fn=fn)
