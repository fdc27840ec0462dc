r"""Exact one-pass accumulators for data that does not fit in memory: feed batches, read the value.

:class:`StreamingLinearCKA` (every layer pair of linear CKA, the engine of
:mod:`layer_sim.measures.all_pairs`) and :class:`StreamingCCA` (canonical correlations). Both keep
state of size independent of the number of examples, stay exact under a large common offset
(shifted co-moments for linear CKA, Chan, Golub & LeVeque's pairwise update for CCA), and rescale their state exactly (by powers of two) when a batch brings a
magnitude outside the safe window, so ``c * x`` gives the value of ``x`` at any representable scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from layer_sim._options import check, strict_signature
from layer_sim.errors import InputError
from layer_sim.measures._cca import STATISTIC, _correlations, _require_variation, _summarise
from layer_sim.measures._features import centre_with_mean, ldexp, scale_exponent
from layer_sim.measures._linalg import svd_state
from layer_sim.measures._validation import as_matrix, check_pair, to_output
from layer_sim.measures.all_pairs import _CoMoments, _rescale_, check_precision, max_abs

__all__ = ["StreamingLinearCKA", "StreamingCCA"]


@strict_signature
class StreamingLinearCKA:
    r"""Exact linear CKA accumulated batch by batch, in memory independent of the number of examples.

    After batches :math:`(X^{(1)}, Y^{(1)}), \dots` the value equals the one-shot

    .. math::

        \mathrm{CKA}(X, Y) = \frac{\|\tilde X^\top \tilde Y\|_F^2}
        {\|\tilde X^\top \tilde X\|_F\,\|\tilde Y^\top \tilde Y\|_F}

    of the stacked rows (Kornblith et al. 2019), to about 1e-10 in float64. The state is, per column,
    a shift :math:`s` (an estimate of its mean from the first batch's sampled rows) and the shifted
    sums :math:`u = \sum_r (x_r - s)`, and the shifted co-moments
    :math:`R = \sum_r (x_r - s)(y_r - t)^\top` and the self terms, added by GEMMs batch by batch;
    the centred co-moment is :math:`R - u_x u_y^\top / n`, exact algebra for any shift. With
    :math:`s` near the mean the subtraction loses nothing even when the data carry a large common
    offset (where raw sums :math:`\sum xy^\top - n\bar x\bar y^\top` would cancel
    catastrophically), and when a later batch moves the mean far from :math:`s` the state is
    re-shifted exactly (Chan, Golub & LeVeque 1979 discuss both). Memory: :math:`O((p + q)^2)`,
    whatever ``n``.

    ``x`` and ``y`` may each be one representation, a list of representations or a dict
    ``name -> representation`` (e.g. the :class:`~layer_sim.representations.extraction.Representations` a ``sink``
    receives); with lists/dicts :meth:`value` gives the full matrix, every layer of ``x`` against
    every layer of ``y``, from one concatenated GEMM per batch.

    Parameters
    ----------
    precision : {"fp64", "fp32"}, default="fp64"
        See :func:`layer_sim.linear_cka_matrix`: ``"fp32"`` shifts each batch while copying it to
        float32, runs the products in float32 and adds their sums into float64 every ``2**14``
        rows (about 2x faster on CPU, abs. error <= 1e-6 on unit-scale data).

    Attributes
    ----------
    n : int
        Examples seen so far.
    names_x, names_y : tuple of str or None
        Layer names (dict keys, or ``"x[i]"`` for lists); ``None`` for single representations.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((1000, 8)); y = x @ rng.standard_normal((8, 3))
    >>> acc = StreamingLinearCKA()
    >>> for start in range(0, 1000, 300):
    ...     _ = acc.update(x[start:start + 300], y[start:start + 300])
    >>> acc.n
    1000
    >>> from layer_sim import linear_cka_matrix
    >>> abs(acc.value() - float(linear_cka_matrix([x], [y])[0, 0])) < 1e-12
    True
    """

    _fn = "StreamingLinearCKA"

    def __init__(self, *, precision: str = "fp64"):
        check_precision(precision, self._fn)
        self.precision = precision
        self.names_x: tuple[str, ...] | None = None
        self.names_y: tuple[str, ...] | None = None
        self._acc: _CoMoments | None = None
        self._numpy_out = True

    @property
    def n(self) -> int:
        return 0 if self._acc is None else self._acc.n

    def state_bytes(self) -> int:
        """Bytes of accumulated state (constant in ``n``: the accumulator never stores rows)."""
        return 0 if self._acc is None else self._acc.state_bytes()

    def _layers(self, batch, side: str):
        """(names or None, list of validated (m, p) tensors) for one side of a batch."""
        values = _values(batch)
        if isinstance(batch, Mapping):
            names = tuple(str(k) for k in batch)
        elif len(values) == 1 and values[0] is batch:
            names = None
        else:
            names = tuple(f"{side}[{i}]" for i in range(len(values)))
        if not values:
            raise InputError(f"{self._fn}: {side} holds no representations")
        # min_n=1: a batch may hold a single row; the two-example minimum applies to value().
        tensors = [
            as_matrix(v, name=nm, fn=self._fn, min_n=1, keep_float=True)
            for v, nm in zip(values, names or (side,))
        ]
        return names, tensors

    def update(self, x, y) -> StreamingLinearCKA:
        """Add a batch of examples: rows of ``x`` and ``y`` are the same examples.

        Raises
        ------
        InputError
            NaN/Inf, different numbers of rows in ``x`` and ``y``, or layers/widths that differ
            from the first batch's.
        """
        names_x, X = self._layers(x, "x")
        names_y, Y = self._layers(y, "y")
        m = X[0].shape[0]
        for nm, t in zip((names_x or ("x",)) + (names_y or ("y",)), X + Y):
            if t.shape[0] != m:
                raise InputError(
                    f"{self._fn}.update: x and y must have the same number of examples (rows) in a batch, "
                    f"got {m} and {t.shape[0]} ({nm})"
                )
        widths_x, widths_y = [t.shape[1] for t in X], [t.shape[1] for t in Y]
        if self._acc is None:
            device = X[0].device
            if any(t.device != device for t in X + Y):
                raise InputError(f"{self._fn}.update: all representations must be on one device")
            self._acc = _CoMoments(widths_x, widths_y, precision=self.precision, device=device)
            self.names_x, self.names_y = names_x, names_y
            self._numpy_out = not any(
                isinstance(v, torch.Tensor)
                for v in _values(x) + _values(y)
            )
        elif (names_x, names_y) != (self.names_x, self.names_y) or (
            tuple(widths_x), tuple(widths_y)
        ) != (self._acc.x.widths, self._acc.y.widths):
            raise InputError(
                f"{self._fn}.update: batch layers/widths changed: first batch had "
                f"x widths {list(self._acc.x.widths)}, y widths {list(self._acc.y.widths)}"
                f"{_names_note(self.names_x, self.names_y)}; this batch has x widths {widths_x}, "
                f"y widths {widths_y}{_names_note(names_x, names_y)}"
            )
        self._acc.update(X, Y)
        return self

    def value(self):
        """Linear CKA of all rows seen: a float (NumPy batches) or 0-d tensor; with lists/dicts of
        layers a ``(len(x), len(y))`` array or tensor.

        Raises
        ------
        InputError
            Fewer than 2 examples seen.
        DegenerateInputError
            A representation with zero variance over the rows seen.
        """
        if self.n < 2:
            raise InputError(
                f"{self._fn}.value: needs at least 2 examples, got {self.n}; call update() with more rows first"
            )
        nx = self.names_x or ("x",)
        ny = self.names_y or ("y",)
        mat = self._acc.cka(nx, ny, fn=self._fn)
        if self.names_x is None and self.names_y is None:
            return to_output(mat[0, 0], self._numpy_out)
        return mat.cpu().numpy() if self._numpy_out else mat


def _values(batch) -> list:
    if isinstance(batch, Mapping):
        return list(batch.values())
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        return list(batch)
    return [batch]


def _names_note(names_x, names_y) -> str:
    return "" if names_x is None and names_y is None else f" (layers {names_x} / {names_y})"


@strict_signature
class StreamingCCA:
    r"""Accumulate two representations batch by batch; canonical correlations at any time.

    Keeps the example count ``n``, the column means ``m`` of ``Z = [X, Y]`` and an upper
    triangular ``R`` ((p+q) x (p+q)) with ``R^T R = Z_c^T Z_c`` (the co-moment matrix).
    A batch ``B`` with ``n_b`` rows, mean ``m_b`` and centred rows ``B_c`` is merged by Chan,
    Golub & LeVeque's pairwise update in square-root form:

    .. math:: R \leftarrow \mathrm{qr}\begin{bmatrix} R \\ B_c \\
              \sqrt{n n_b / (n + n_b)}\,(m_b - m)^T \end{bmatrix},
              \qquad m \leftarrow m + \frac{n_b}{n + n_b}(m_b - m)

    whose Gram form is the co-moment update
    :math:`C \leftarrow C + B_c^T B_c + \frac{n n_b}{n+n_b}\delta\delta^T`. Keeping the factor
    instead of ``C`` never subtracts ``n m m^T`` from raw sums and never squares the condition
    number: since ``X_c = Q R[:, :p]`` and ``Y_c = Q R[:, p:]`` for one orthonormal ``Q``,
    the one-shot kernels run on the blocks of ``R`` with the same rank tolerance, and the
    result equals :func:`layer_sim.cca` on the concatenated data to rounding (1e-10 in float64
    in the tests). Memory ``O((p + q)^2)``, one ``O((n_b + p + q) (p + q)^2)`` QR per batch.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import StreamingCCA, cca
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((300, 4))
    >>> y = x @ rng.standard_normal((4, 3)) + 0.5 * rng.standard_normal((300, 3))
    >>> acc = StreamingCCA()
    >>> for rows in np.array_split(np.arange(300), 7):
    ...     _ = acc.update(x[rows], y[rows])
    >>> abs(acc.value(statistic="r2") - cca(x, y, statistic="r2")) < 1e-10
    True
    """

    def __init__(self) -> None:
        self._n = 0
        self._p: int | None = None
        self._mean: torch.Tensor | None = None
        self._r: torch.Tensor | None = None
        # Raw sums of squares of x and y: the scale of the "constant input" test.
        self._sq = None
        # Running max |x|, max |y| and the power-of-two exponents the state is kept in.
        self._max = [0.0, 0.0]
        self._exp = [0, 0]
        self._numpy_out = True

    @property
    def n_examples(self) -> int:
        """Number of examples accumulated so far."""
        return self._n

    def update(self, x_batch, y_batch) -> StreamingCCA:
        """Add a batch: ``x_batch`` (n_b, p) and ``y_batch`` (n_b, q), same examples in rows.

        Widths and device are fixed by the first batch. Returns ``self``.

        Raises
        ------
        InputError
            NaN/Inf, different row counts, or a width or device different from the first batch.
        """
        fn = "StreamingCCA.update"
        X, Y, numpy_in = check_pair(x_batch, y_batch, fn=fn, min_n=1)
        if self._r is not None:
            widths = (self._p, self._mean.shape[0] - self._p)
            if (X.shape[1], Y.shape[1]) != widths:
                raise InputError(
                    f"{fn}: batch widths (x: {X.shape[1]}, y: {Y.shape[1]}) differ from the first "
                    f"batch (x: {widths[0]}, y: {widths[1]})"
                )
            if X.device != self._r.device:
                raise InputError(f"{fn}: batch is on {X.device} but the accumulator is on {self._r.device}")
        p = X.shape[1]
        ex, ey = self._rescale(X.dtype, max_abs(X), max_abs(Y), p)
        Xs, Ys = ldexp(X, ex), ldexp(Y, ey)
        Z = torch.cat([Xs, Ys], dim=1)
        n_b = Z.shape[0]
        Zc, mean_b = centre_with_mean(Z)
        sq_b = torch.stack([Xs.square().sum(), Ys.square().sum()])
        if self._r is None:
            self._p = p
            self._r = torch.linalg.qr(Zc, mode="r").R
            self._mean, self._sq = mean_b, sq_b
        else:
            n = self._n + n_b
            delta = mean_b - self._mean
            shift = math.sqrt(self._n * n_b / n) * delta
            self._r = torch.linalg.qr(torch.cat([self._r, Zc, shift[None]]), mode="r").R
            self._mean = self._mean + delta * (n_b / n)
            self._sq = self._sq + sq_b
        self._n += n_b
        self._numpy_out = self._numpy_out and numpy_in
        return self

    def _rescale(self, dtype: torch.dtype, amax_x: float, amax_y: float, p: int) -> tuple[int, int]:
        """Exponents for this batch from the running maxima; rescale the state exactly if they change."""
        self._max = [max(self._max[0], amax_x), max(self._max[1], amax_y)]
        new = [scale_exponent(m, dtype) for m in self._max]
        if self._r is not None:
            for side, cols in ((0, slice(0, p)), (1, slice(p, None))):
                delta = new[side] - self._exp[side]
                _rescale_(self._r[:, cols], delta)
                _rescale_(self._mean[cols], delta)
                _rescale_(self._sq[side : side + 1], 2 * delta)
        self._exp = new
        return new[0], new[1]

    def canonical_correlations(self):
        """Canonical correlations of all examples so far, as :func:`layer_sim.canonical_correlations`.

        Raises
        ------
        InputError
            Fewer than 2 examples accumulated.
        DegenerateInputError
            ``x`` or ``y`` constant over all examples so far.
        """
        rho = self._rho("StreamingCCA.canonical_correlations")
        return rho.detach().cpu().numpy() if self._numpy_out else rho

    def value(self, *, statistic: str = "rho"):
        """``cca(x, y, statistic=statistic)`` of all examples so far (float, or tensor for torch batches)."""
        fn = "StreamingCCA.value"
        statistic = check(fn, "statistic", STATISTIC, statistic)
        out = _summarise(self._rho(fn), statistic)
        return float(out.cpu()) if self._numpy_out else out

    def _rho(self, fn: str) -> torch.Tensor:
        if self._n < 2:
            raise InputError(f"{fn}: {self._n} example(s) accumulated while a minimum of 2 is required")
        p, x_norm, y_norm = self._p, *self._sq.sqrt().tolist()
        a = svd_state(self._r[:, :p], x_norm=x_norm, n=self._n)
        b = svd_state(self._r[:, p:], x_norm=y_norm, n=self._n)
        _require_variation(fn, a, b)
        return _correlations(a, b)
