"""What :func:`compare` and :func:`layer_identification` share: each layer prepared once, every pair scored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from layer_sim._progress import track
from layer_sim.errors import DegenerateInputError, InputError
from layer_sim.measures import Measure

__all__ = ["layer_names", "prepare_layers", "score_matrix"]


def layer_names(reps, what: str) -> list[str]:
    """The layer names of ``reps``, checked to be a non-empty mapping."""
    if not isinstance(reps, Mapping):
        raise InputError(
            f"{what} must be a Representations or a mapping layer name -> (n, p) array, got {type(reps).__name__}"
        )
    if len(reps) == 0:
        raise InputError(f"{what} has no layers")
    return list(reps)


def prepare_layers(m: Measure, reps, what: str, *, names: Sequence[str] | None = None, device=None) -> dict:
    """``{name: m.prepare(layer)}`` for ``names`` (default: every layer) of ``reps``.

    A measure with ``uses_gradients`` also receives the layer's gradients,
    ``m.prepare(x, grad=reps.gradients[name])``; errors name the layer.
    """
    names = layer_names(reps, what) if names is None else list(names)
    # getattr: measures registered before gradient-aware measures existed have no such attribute.
    uses_gradients = bool(getattr(m, "uses_gradients", False))
    grads = getattr(reps, "gradients", None) if uses_gradients else None
    if uses_gradients and grads is None:
        raise InputError(
            f"{m.name} uses gradients, but {what} has none; extract the representations with "
            "gradients=True (and an objective)"
        )
    out = {}
    for name in names:
        x = reps[name]
        if uses_gradients and name not in grads:
            raise InputError(f"{m.name}: {what} has no gradients for layer {name!r}")
        g = grads[name] if uses_gradients else None
        if device is not None:
            x = torch.as_tensor(x).to(device)
            g = None if g is None else torch.as_tensor(g).to(device)
        try:
            state = m.prepare(x, grad=g) if uses_gradients else m.prepare(x)
        except InputError as exc:
            raise type(exc)(f"layer {name!r}: {exc}") from exc
        # Scoring would only say "x" or "y"; here we still know which layer it is (dead ReLU
        # layers are constant, and common).
        reason = getattr(state, "degenerate", None)  # optional for user-registered measures
        if reason is not None:
            raise DegenerateInputError(f"{m.name}: layer {name!r} {reason}")
        out[name] = state
    return out


def score_matrix(m: Measure, pa: list, pb: list, *, same: bool, progress: bool | None = False) -> np.ndarray:
    """``S[i, j] = m.score(pa[i], pb[j])``; ``same``: pa is pb and m is symmetric (mirror)."""
    n_a = {p.n for p in pa} | {p.n for p in pb}
    if len(n_a) > 1:
        raise InputError(f"{m.name}: all layers must have the same number of examples, got {sorted(n_a)}")
    if m.matrix_fn is not None:
        return _to_numpy(m.matrix_fn(pa, pb))
    S = np.empty((len(pa), len(pb)))
    for i in track(range(len(pa)), progress, f"compare ({m.name})"):
        for j in range(i if same else 0, len(pb)):
            S[i, j] = float(m.score(pa[i], pb[j]))
            if same:
                S[j, i] = S[i, j]
    return S


def _to_numpy(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().to("cpu", torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)
