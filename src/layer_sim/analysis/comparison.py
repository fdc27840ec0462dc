"""Every-layer-by-every-layer comparison of two networks: :func:`compare` and its :class:`SimilarityMatrix`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from layer_sim._options import strict_signature
from layer_sim.analysis._layers import prepare_layers, score_matrix
from layer_sim.errors import InputError
from layer_sim.measures import Measure, get

__all__ = ["SimilarityMatrix", "compare"]


@dataclass(frozen=True)
class SimilarityMatrix:
    """Similarity of every layer of ``a`` (rows) with every layer of ``b`` (columns): data only.

    Views live in :mod:`layer_sim.report`: ``report.figures.heatmap`` draws it,
    ``report.files.save_matrix`` / ``load_matrix`` write and read it as CSV or JSON.

    Attributes
    ----------
    values : ndarray of shape (len(rows), len(cols))
        ``values[i, j] = measure(a[rows[i]], b[cols[j]])`` (for asymmetric measures the row layer
        is the measure's first argument).
    rows, cols : tuple of str
        Layer names of ``a`` and ``b``.
    measure : str
        Registry name of the measure.
    params : dict
        Parameters bound to the measure (e.g. ``{"sigma": 0.4}``).
    row_label, col_label : str
        What the rows and columns are (axis titles of a heatmap), e.g. ``"network 0"``.
    """

    values: np.ndarray
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    measure: str
    params: Mapping[str, Any] = field(default_factory=dict)
    row_label: str = "a"
    col_label: str = "b"

    def __post_init__(self):
        values = np.asarray(self.values, dtype=np.float64)
        if values.shape != (len(self.rows), len(self.cols)):
            raise InputError(
                f"SimilarityMatrix: values have shape {values.shape}, expected "
                f"({len(self.rows)}, {len(self.cols)}) for {len(self.rows)} rows and {len(self.cols)} columns"
            )
        for what, names in (("row", self.rows), ("column", self.cols)):
            repeated = sorted({n for n in names if list(names).count(n) > 1})
            if repeated:  # best_match, to_frame and a file's reader would pick one of them silently
                raise InputError(f"SimilarityMatrix: {what} name(s) {', '.join(map(repr, repeated))} appear more than once")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "cols", tuple(self.cols))
        object.__setattr__(self, "params", dict(self.params))

    @property
    def title(self) -> str:
        """The measure with its parameters, e.g. ``"rbf_cka(sigma=0.4)"``."""
        if not self.params:
            return self.measure
        return f"{self.measure}({', '.join(f'{k}={v}' for k, v in self.params.items())})"

    def best_match(self) -> dict[str, str]:
        """For every row layer, the column layer it is most similar to (first one on ties)."""
        return {r: self.cols[int(j)] for r, j in zip(self.rows, self.values.argmax(axis=1))}

    def to_frame(self):
        """The values as a :class:`pandas.DataFrame` indexed by ``rows`` with columns ``cols``."""
        import pandas as pd

        return pd.DataFrame(self.values, index=list(self.rows), columns=list(self.cols))


@strict_signature
def compare(
    a: Mapping,
    b: Mapping | None = None,
    *,
    measure: str | Measure = "linear_cka",
    device: str | torch.device | None = None,
    progress: bool | None = None,
    **params,
) -> SimilarityMatrix:
    r"""Similarity of every layer of ``a`` with every layer of ``b``.

    .. math:: S_{ij} = s(A_i, B_j)

    where :math:`A_i` is the ``(n, p_i)`` representation of layer *i* and *s* the measure.
    Each layer is prepared once (:meth:`Measure.prepare`: validation, centring, Gram/covariance
    or SVD; with the layer's gradients too when the measure ``uses_gradients``), then every pair
    is scored from the prepared states, with the measure's batched ``matrix_fn`` when it has one. With ``b=None`` (or ``b is a``) a symmetric measure scores only
    the upper triangle and mirrors it.

    Parameters
    ----------
    a : Representations or mapping of str to (n, p) array/tensor
        Layers of the first network (rows). A measure that uses gradients takes them from
        ``a.gradients`` (``extract(..., gradients=True)``).
    b : Representations or mapping, default=None
        Layers of the second network (columns), on the same examples; ``None`` compares ``a`` with
        itself.
    measure : str or Measure, default="linear_cka"
        A name from :func:`layer_sim.measures.available` or a ready :class:`Measure`.
    device : str or torch.device, default=None
        Where to compute; ``None`` keeps each tensor's device (NumPy input: CPU).
    progress : bool or None, default=None
        Progress bar over the row layers; ``None``: only when stderr is a terminal.
    **params
        Measure parameters, e.g. ``sigma=0.4`` for ``"rbf_cka"``.

    Returns
    -------
    SimilarityMatrix

    Raises
    ------
    UnknownNameError
        Unknown measure or parameter.
    InputError
        Empty mappings, different numbers of examples, NaN/Inf or degenerate layers, or a measure
        that uses gradients given representations without them.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 8))
    >>> s = compare({"x": x, "2x": 2 * x}, measure="linear_cka")
    >>> np.round(s.values, 6)
    array([[1., 1.],
           [1., 1.]])
    """
    m = get(measure, **params)
    same = b is None or b is a
    pa = prepare_layers(m, a, "a", device=device)
    pb = pa if same else prepare_layers(m, b, "b", device=device)
    values = score_matrix(m, list(pa.values()), list(pb.values()), same=same and m.symmetric,
                          progress=progress)  # fmt: skip
    return SimilarityMatrix(values, tuple(pa), tuple(pb), m.name, dict(m.params))
