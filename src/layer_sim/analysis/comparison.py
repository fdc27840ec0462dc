"""Every-layer-by-every-layer comparison of networks, and Kornblith et al.'s layer identification."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layer_sim._io import atomic_write
from layer_sim.errors import DegenerateInputError, InputError, UnknownNameError
from layer_sim.measures import Measure, get

__all__ = ["SimilarityMatrix", "LayerIdentification", "compare", "layer_identification"]


@dataclass(frozen=True)
class SimilarityMatrix:
    """Similarity of every layer of ``a`` (rows) with every layer of ``b`` (columns).

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
        What the rows and columns are (axis titles of :meth:`plot`), e.g. ``"network 0"``.
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

    def plot(self, ax=None, *, annotate: bool = True, cmap: str = "magma", vmin=None, vmax=None):
        """Annotated heatmap with labelled axes and a colour bar; returns the matplotlib Axes.

        Without ``ax`` a new :class:`matplotlib.figure.Figure` is made (no pyplot, no display).
        """
        from layer_sim.report.figures import heatmap

        return heatmap(self, ax=ax, annotate=annotate, cmap=cmap, vmin=vmin, vmax=vmax)

    def save(self, path) -> Path:
        """Write to ``.csv`` (top-left cell holds the measure title) or ``.json``; returns the path."""
        path = Path(path)
        if path.suffix == ".csv":
            text = self.to_frame().to_csv(index_label=self.title)
        elif path.suffix == ".json":
            text = json.dumps(self._to_json(), indent=1)
        else:
            raise UnknownNameError(f"SimilarityMatrix.save: unknown suffix {path.suffix!r}; use .csv or .json")
        atomic_write(path, lambda fh: fh.write(text.encode()))
        return path

    @classmethod
    def load(cls, path) -> SimilarityMatrix:
        """Read a matrix written by :meth:`save` (CSV keeps the title as ``measure``, no params)."""
        path = Path(path)
        if path.suffix == ".json":
            d = json.loads(path.read_text())
            return cls(
                np.asarray(d["values"], dtype=np.float64), d["rows"], d["cols"], d["measure"],
                d.get("params", {}), d.get("row_label", "a"), d.get("col_label", "b"),
            )
        if path.suffix == ".csv":
            import pandas as pd

            frame = pd.read_csv(path, index_col=0)
            return cls(
                frame.to_numpy(dtype=np.float64), [str(r) for r in frame.index],
                [str(c) for c in frame.columns], str(frame.index.name),
            )
        raise UnknownNameError(f"SimilarityMatrix.load: unknown suffix {path.suffix!r}; use .csv or .json")

    def _to_json(self) -> dict:
        return {
            "measure": self.measure,
            "params": self.params,
            "rows": list(self.rows),
            "cols": list(self.cols),
            "row_label": self.row_label,
            "col_label": self.col_label,
            "values": self.values.tolist(),
        }


def compare(
    a: Mapping,
    b: Mapping | None = None,
    *,
    measure: str | Measure = "linear_cka",
    device: str | torch.device | None = None,
    progress: bool = False,
    **params,
) -> SimilarityMatrix:
    r"""Similarity of every layer of ``a`` with every layer of ``b``.

    .. math:: S_{ij} = s(A_i, B_j)

    where :math:`A_i` is the ``(n, p_i)`` representation of layer *i* and *s* the measure.
    Each layer is prepared once (:meth:`Measure.prepare`: validation, centring, Gram/covariance
    or SVD), then every pair is scored from the prepared states, with the measure's batched
    ``matrix_fn`` when it has one. With ``b=None`` (or ``b is a``) a symmetric measure scores only
    the upper triangle and mirrors it.

    Parameters
    ----------
    a : Representations or mapping of str to (n, p) array/tensor
        Layers of the first network (rows).
    b : Representations or mapping, default=None
        Layers of the second network (columns), on the same examples; ``None`` compares ``a`` with
        itself.
    measure : str or Measure, default="linear_cka"
        A name from :func:`layer_sim.measures.available` or a ready :class:`Measure`.
    device : str or torch.device, default=None
        Where to compute; ``None`` keeps each tensor's device (NumPy input: CPU).
    progress : bool, default=False
        Show a progress bar (rich) over the row layers.
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
        Empty mappings, different numbers of examples, NaN/Inf or degenerate layers.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import compare
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 8))
    >>> s = compare({"x": x, "2x": 2 * x}, measure="linear_cka")
    >>> np.round(s.values, 6)
    array([[1., 1.],
           [1., 1.]])
    """
    m = get(measure, **params)
    same = b is None or b is a
    a = _as_layers(a, "a")
    b = a if same else _as_layers(b, "b")
    pa = _prepare_all(m, a, device)
    pb = pa if same else _prepare_all(m, b, device)
    values = _score_matrix(m, pa, pb, same=same and m.symmetric, progress=progress)
    return SimilarityMatrix(values, tuple(a), tuple(b), m.name, dict(m.params))


@dataclass(frozen=True)
class LayerIdentification:
    """Result of :func:`layer_identification`.

    Attributes
    ----------
    measure : str
        Registry name of the measure; ``params`` its bound parameters.
    layers : tuple of str
        The layers identified (after ``exclude``), in order.
    scores : ndarray of shape (N, N, L, L)
        ``scores[a, b, i, j] = s(A_i, B_j)``, the raw (unsymmetrised) similarity; ``a == b``
        entries are not computed and hold NaN.
    predictions : ndarray of int, shape (N, N, L)
        ``predictions[a, b, i]``: the layer of network *b* predicted for layer *i* of network *a*
        (``-1`` where ``a == b``).
    accuracy : float
        Fraction of correct predictions over all ordered pairs of distinct networks and layers.
    per_layer : dict of str to float
        The same fraction for each layer *i* of the first network of the pair.
    confusion : ndarray of int, shape (L, L)
        ``confusion[i, j]``: how often layer *i* was matched to layer *j*.
    jackknife : ndarray of shape (N,)
        Accuracy with network *k* left out (pairs not involving *k*); NaN for N = 2.
    stderr : float or None
        Jackknife standard error of ``accuracy``; ``None`` for fewer than 3 networks.
    """

    measure: str
    params: Mapping[str, Any]
    layers: tuple[str, ...]
    scores: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(repr=False)
    accuracy: float
    per_layer: dict[str, float]
    confusion: np.ndarray = field(repr=False)
    jackknife: np.ndarray = field(repr=False)
    stderr: float | None

    @property
    def n_networks(self) -> int:
        return self.scores.shape[0]

    def matrix(self, a: int = 0, b: int = 1) -> SimilarityMatrix:
        """The raw similarity matrix of network ``a`` (rows) against network ``b`` (columns)."""
        n = self.n_networks
        if not (0 <= a < n and 0 <= b < n) or a == b:
            raise InputError(f"LayerIdentification.matrix: need two distinct networks in 0..{n - 1}, got {a}, {b}")
        return SimilarityMatrix(
            self.scores[a, b], self.layers, self.layers, self.measure, self.params,
            row_label=f"network {a}", col_label=f"network {b}",
        )

    def z_test(self, other: LayerIdentification) -> float:
        r"""Jackknife z-statistic of ``self.accuracy - other.accuracy`` on the same networks.

        :math:`z = d / \mathrm{SE}_{\mathrm{jack}}(d)` with
        :math:`\mathrm{SE}^2_{\mathrm{jack}}(d) = \frac{N-1}{N}\sum_k (d_{-k} - \bar d_{-\cdot})^2`,
        the paired test Kornblith et al. (2019) use to compare indexes. ``inf`` when the
        leave-one-out differences are all equal and ``d != 0``.
        """
        if self.n_networks != other.n_networks or self.n_networks < 3:
            raise InputError(
                "LayerIdentification.z_test: both results need the same networks, at least 3, "
                f"got {self.n_networks} and {other.n_networks}"
            )
        d = self.accuracy - other.accuracy
        se = _jackknife_se(self.jackknife - other.jackknife)
        if se == 0:
            return 0.0 if d == 0 else float(np.sign(d) * np.inf)
        return d / se


def layer_identification(
    reps_list: Sequence[Mapping],
    measure: str | Measure = "linear_cka",
    *,
    exclude: Sequence[str] = ("output",),
    device: str | torch.device | None = None,
    progress: bool = False,
    **params,
) -> LayerIdentification:
    r"""Kornblith et al. (2019) sanity check: can the measure find the corresponding layer?

    For every ordered pair :math:`(A, B)` of distinct networks (same architecture, different
    seeds) and every layer *i* of *A*, the predicted layer is

    .. math:: \hat\jmath(A, B, i) = \arg\max_j T_{AB}[i, j],

    and the accuracy is the fraction of :math:`\hat\jmath = i` over all pairs and layers. For a
    symmetric measure :math:`T_{AB}[i, j] = s(A_i, B_j)`; an asymmetric one (PWCCA, linear
    regression) is symmetrised as in the paper, :math:`T_{AB}[i, j] = s(A_i, B_j) + s(B_j, A_i)`,
    i.e. :math:`T_{AB} = S_{AB} + S_{BA}^\top`. Ties go to the first (shallowest) layer.

    Each network's layers are prepared once (not once per pair). The standard error is the
    leave-one-network-out jackknife

    .. math:: \mathrm{SE} = \sqrt{\tfrac{N-1}{N}\textstyle\sum_k (\mathrm{acc}_{-k} - \overline{\mathrm{acc}}_{-\cdot})^2},

    where :math:`\mathrm{acc}_{-k}` uses only pairs without network *k*.

    Parameters
    ----------
    reps_list : sequence of Representations or mappings name -> (n, p) array
        One entry per network, all with the same layer names and the same examples.
    measure : str or Measure, default="linear_cka"
        Similarity index.
    exclude : sequence of str, default=("output",)
        Layers left out (the paper excludes the logits).
    device : str or torch.device, default=None
        Where to compute.
    progress : bool, default=False
        Show a progress bar (rich) over network pairs.
    **params
        Measure parameters.

    Returns
    -------
    LayerIdentification

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations Revisited",
    ICML 2019, Section 6.1 and Table 2.
    """
    m = get(measure, **params)
    if len(reps_list) < 2:
        raise InputError(f"layer_identification: need at least 2 networks, got {len(reps_list)}")
    nets = [_as_layers(r, f"reps_list[{k}]") for k, r in enumerate(reps_list)]
    names = [k for k in nets[0] if k not in set(exclude)]
    for k, net in enumerate(nets[1:], start=1):
        if [n for n in net if n not in set(exclude)] != names:
            raise InputError(
                f"layer_identification: network {k} has layers {[n for n in net if n not in set(exclude)]}, "
                f"network 0 has {names}; all networks need the same layers"
            )
    if not names:
        raise InputError("layer_identification: no layers left after exclude")
    N, L = len(nets), len(names)
    prepared = [_prepare_all(m, {n: net[n] for n in names}, device) for net in nets]
    for k in range(1, N):
        if prepared[k][0].n != prepared[0][0].n:
            raise InputError(
                f"layer_identification: network {k} has {prepared[k][0].n} examples, "
                f"network 0 has {prepared[0][0].n}; use the same examples for every network"
            )

    scores = np.full((N, N, L, L), np.nan)
    pairs = [(a, b) for a in range(N) for b in range(a + 1, N)]
    for a, b in _track(pairs, progress, f"layer identification ({m.name})"):
        scores[a, b] = _score_matrix(m, prepared[a], prepared[b], same=False)
        scores[b, a] = scores[a, b].T if m.symmetric else _score_matrix(m, prepared[b], prepared[a], same=False)

    # T_AB = S_AB + S_BA^T for asymmetric measures; a symmetric S_BA^T equals S_AB, same argmax.
    sym = scores if m.symmetric else scores + scores.transpose(1, 0, 3, 2)
    predictions = np.full((N, N, L), -1, dtype=int)
    correct = np.zeros((N, N, L), dtype=bool)
    offdiag = ~np.eye(N, dtype=bool)
    predictions[offdiag] = sym[offdiag].argmax(axis=-1)
    correct[offdiag] = predictions[offdiag] == np.arange(L)

    accuracy = float(correct[offdiag].mean())
    per_layer = dict(zip(names, correct[offdiag].mean(axis=0).tolist()))
    confusion = np.zeros((L, L), dtype=int)
    np.add.at(confusion, (np.broadcast_to(np.arange(L), predictions[offdiag].shape), predictions[offdiag]), 1)
    jackknife = np.array([_accuracy_without(correct, k) for k in range(N)])
    stderr = _jackknife_se(jackknife) if N >= 3 else None
    return LayerIdentification(
        m.name, dict(m.params), tuple(names), scores, predictions, accuracy, per_layer, confusion, jackknife, stderr
    )


def _accuracy_without(correct: np.ndarray, k: int) -> float:
    """Accuracy over ordered pairs of distinct networks, neither of which is ``k``."""
    N = correct.shape[0]
    keep = [i for i in range(N) if i != k]
    sub = correct[np.ix_(keep, keep)]
    if len(keep) < 2:
        return float("nan")
    return float(sub[~np.eye(len(keep), dtype=bool)].mean())


def _jackknife_se(leave_one_out: np.ndarray) -> float:
    N = leave_one_out.shape[0]
    return float(np.sqrt((N - 1) / N * np.sum((leave_one_out - leave_one_out.mean()) ** 2)))


def _as_layers(reps, what: str) -> dict:
    if not isinstance(reps, Mapping):
        raise InputError(
            f"{what} must be a Representations or a mapping layer name -> (n, p) array, got {type(reps).__name__}"
        )
    if len(reps) == 0:
        raise InputError(f"{what} has no layers")
    return dict(reps.items())


def _prepare_all(m: Measure, layers: Mapping, device) -> list:
    out = []
    for name, x in layers.items():
        if device is not None:
            x = torch.as_tensor(x).to(device)
        try:
            state = m.prepare(x)
        except InputError as exc:
            raise type(exc)(f"layer {name!r}: {exc}") from exc
        # Scoring would only say "x" or "y"; here we still know which layer it is (dead ReLU
        # layers are constant, and common).
        reason = getattr(state, "degenerate", None)  # optional for user-registered measures
        if reason is not None:
            raise DegenerateInputError(f"{m.name}: layer {name!r} {reason}")
        out.append(state)
    return out


def _score_matrix(m: Measure, pa: list, pb: list, *, same: bool, progress: bool = False) -> np.ndarray:
    """``S[i, j] = m.score(pa[i], pb[j])``; ``same``: pa is pb and m is symmetric (mirror)."""
    n_a = {p.n for p in pa} | {p.n for p in pb}
    if len(n_a) > 1:
        raise InputError(f"{m.name}: all layers must have the same number of examples, got {sorted(n_a)}")
    if m.matrix_fn is not None:
        return _to_numpy(m.matrix_fn(pa, pb))
    S = np.empty((len(pa), len(pb)))
    for i in _track(range(len(pa)), progress, f"compare ({m.name})"):
        for j in range(i if same else 0, len(pb)):
            S[i, j] = float(m.score(pa[i], pb[j]))
            if same:
                S[j, i] = S[i, j]
    return S


def _to_numpy(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().to("cpu", torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


def _track(items, progress: bool, description: str):
    if not progress:
        return items
    from rich.progress import track

    return track(list(items), description=description, transient=True)
