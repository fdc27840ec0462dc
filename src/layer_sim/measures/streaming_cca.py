"""Exact one-pass CCA over batches of examples, in memory independent of the number of examples."""

from __future__ import annotations

import math

import torch

from layer_sim.errors import InputError
from layer_sim.measures._linalg import center, svd_state
from layer_sim.measures._validation import check_pair
from layer_sim.measures._cca import _check_statistic, _correlations, _require_variation, _summarise

__all__ = ["StreamingCCA"]


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
        Z = torch.cat([X, Y], dim=1)
        if self._r is not None:
            widths = (self._p, self._mean.shape[0] - self._p)
            if (X.shape[1], Y.shape[1]) != widths:
                raise InputError(
                    f"{fn}: batch widths (x: {X.shape[1]}, y: {Y.shape[1]}) differ from the first "
                    f"batch (x: {widths[0]}, y: {widths[1]})"
                )
            if Z.device != self._r.device:
                raise InputError(f"{fn}: batch is on {Z.device} but the accumulator is on {self._r.device}")
        n_b = Z.shape[0]
        Zc, mean_b = center(Z)
        sq_b = torch.stack([X.square().sum(), Y.square().sum()])
        if self._r is None:
            self._p = X.shape[1]
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
        statistic = _check_statistic(statistic, fn)
        out = _summarise(self._rho(fn), statistic)
        return float(out.cpu()) if self._numpy_out else out

    def _rho(self, fn: str) -> torch.Tensor:
        if self._n < 2:
            raise InputError(f"{fn}: {self._n} example(s) accumulated while a minimum of 2 is required")
        p, x_norm, y_norm = self._p, *self._sq.sqrt()
        a = svd_state(self._r[:, :p], x_norm=x_norm, n=self._n)
        b = svd_state(self._r[:, p:], x_norm=y_norm, n=self._n)
        _require_variation(fn, a, b)
        return _correlations(a, b)
