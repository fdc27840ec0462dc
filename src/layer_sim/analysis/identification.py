"""Kornblith et al.'s (2019) layer identification: can a similarity index find the corresponding layer?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from layer_sim._options import strict_signature
from layer_sim._progress import track
from layer_sim.analysis._layers import layer_names, prepare_layers, score_matrix
from layer_sim.analysis.comparison import SimilarityMatrix
from layer_sim.errors import InputError
from layer_sim.measures import Measure, get

__all__ = ["LayerIdentification", "layer_identification"]


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


@strict_signature
def layer_identification(
    reps_list: Sequence[Mapping],
    measure: str | Measure = "linear_cka",
    *,
    exclude: Sequence[str] = ("output",),
    device: str | torch.device | None = None,
    progress: bool | None = None,
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
        One entry per network, all with the same layer names and the same examples (with
        ``.gradients`` when the measure uses gradients).
    measure : str or Measure, default="linear_cka"
        Similarity index.
    exclude : sequence of str, default=("output",)
        Layers left out (the paper excludes the logits).
    device : str or torch.device, default=None
        Where to compute.
    progress : bool or None, default=None
        Progress bar over network pairs; ``None``: only when stderr is a terminal.
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
    skip = set(exclude)
    nets = [layer_names(r, f"reps_list[{k}]") for k, r in enumerate(reps_list)]
    names = [k for k in nets[0] if k not in skip]
    for k, net in enumerate(nets[1:], start=1):
        if [n for n in net if n not in skip] != names:
            raise InputError(
                f"layer_identification: network {k} has layers {[n for n in net if n not in skip]}, "
                f"network 0 has {names}; all networks need the same layers"
            )
    if not names:
        raise InputError("layer_identification: no layers left after exclude")
    N, L = len(nets), len(names)
    prepared = [list(prepare_layers(m, r, f"reps_list[{k}]", names=names, device=device).values())
                for k, r in enumerate(reps_list)]  # fmt: skip
    for k in range(1, N):
        if prepared[k][0].n != prepared[0][0].n:
            raise InputError(
                f"layer_identification: network {k} has {prepared[k][0].n} examples, "
                f"network 0 has {prepared[0][0].n}; use the same examples for every network"
            )

    scores = np.full((N, N, L, L), np.nan)
    pairs = [(a, b) for a in range(N) for b in range(a + 1, N)]
    for a, b in track(pairs, progress, f"layer identification ({m.name})"):
        scores[a, b] = score_matrix(m, prepared[a], prepared[b], same=False)
        scores[b, a] = scores[a, b].T if m.symmetric else score_matrix(m, prepared[b], prepared[a], same=False)

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
