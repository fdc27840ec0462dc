r"""How a convolutional map becomes a ``(rows, features)`` matrix for a similarity index.

A conv layer's output for :math:`n` examples is :math:`A \in \mathbb{R}^{n \times c \times h \times w}`.
Indexes compare matrices whose rows are paired observations, so a layout must be chosen:

==================  ==================  ================================================================
layout              matrix              rows / features
==================  ==================  ================================================================
``"flatten"``       ``(n, c·h·w)``      one row per example; every (channel, position) is a feature
                                        (the default, and what :func:`~layer_sim.representations.extract`
                                        returns)
``"channels"``      ``(n·h·w, c)``      one row per (example, position), rows ordered example, then
                                        row ``y``, then column ``x``; channels are the neurons (the
                                        original layer_sim's ``reshape_4d_tensor(t, neurons_are_channels=True)``,
                                        used there before CCA)
``"spatial_mean"``  ``(n, c)``          one row per example; each channel averaged over positions
==================  ==================  ================================================================

Layers without spatial dimensions (``(p,)`` per example, e.g. after a Linear) are unchanged by
every layout.

Consequences, which the indexes do not hide:

- **CCA family, n vs p.** With ``"flatten"`` a conv layer has more features than there are
  examples (LeNet-5's first ReLU: 3,456 features), and when the two ranks add up to more than
  :math:`n - 1` some canonical correlations are 1 whatever the data; with :math:`p \ge n - 1`
  all are (see :func:`~layer_sim.measures.canonical_correlations`). ``"channels"`` gives
  :math:`n h w` rows for :math:`c` features, so CCA is well posed; :func:`cca_rows_needed` says
  how many rows an input needs.
- **Rows are not examples under ``"channels"``.** Positions of one image are strongly dependent
  observations, so :math:`n h w` overstates the sample size; and two layers can only be
  compared if they have the same :math:`h \times w` (the same layer of two networks): a pair
  with different numbers of rows is an :class:`~layer_sim.errors.InputError` from the index.
- **``"spatial_mean"``** discards where in the image a channel fired; invariances of the index
  then hold for channel mixing only.
"""

from __future__ import annotations

import torch

from layer_sim._options import Choice, strict_signature
from layer_sim.errors import InputError
from layer_sim.representations.extraction import Representations

__all__ = ["LAYOUTS", "conv_layout", "with_layout", "cca_rows_needed"]

#: The layouts, by name (see the module docstring).
LAYOUTS: tuple[str, ...] = ("flatten", "channels", "spatial_mean")


@strict_signature
def conv_layout(maps: torch.Tensor, layout: str = "flatten") -> torch.Tensor:
    """The ``(rows, features)`` matrix of conv maps ``(n, c, h, w)`` in ``layout``.

    Parameters
    ----------
    maps : torch.Tensor of shape (n, c, h, w)
    layout : {"flatten", "channels", "spatial_mean"}, default="flatten"

    Returns
    -------
    torch.Tensor
        ``(n, c*h*w)`` (a view), ``(n*h*w, c)`` or ``(n, c)``.

    Raises
    ------
    UnknownNameError
        An unknown ``layout``.
    InputError
        ``maps`` is not 4-dimensional.

    Examples
    --------
    >>> a = torch.arange(16.0).reshape(2, 2, 2, 2)  # 2 examples, 2 channels, 2 x 2 positions
    >>> conv_layout(a, "channels")[:3].tolist()      # example 0: positions (0,0), (0,1), (1,0)
    [[0.0, 4.0], [1.0, 5.0], [2.0, 6.0]]
    >>> conv_layout(a, "spatial_mean").tolist()
    [[1.5, 5.5], [9.5, 13.5]]
    >>> conv_layout(a).shape
    torch.Size([2, 8])
    """
    layout = Choice(*LAYOUTS).check("conv_layout: layout", layout)
    if not isinstance(maps, torch.Tensor) or maps.ndim != 4:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise InputError(f"conv_layout: maps must be a tensor of shape (n, c, h, w), got {shape}")
    n, c, h, w = maps.shape
    if layout == "flatten":
        return maps.reshape(n, c * h * w)
    if layout == "channels":
        return maps.permute(0, 2, 3, 1).reshape(n * h * w, c)
    return maps.mean(dim=(2, 3))


@strict_signature
def with_layout(reps: Representations, layout: str) -> Representations:
    """``reps`` with every layer of per-example shape ``(c, h, w)`` in ``layout`` (others unchanged).

    Gradients, if any, get the same layout. The result's :attr:`~Representations.layout` is
    ``layout`` and its :attr:`~Representations.shapes` are the new per-row shapes.

    Examples
    --------
    >>> r = Representations({"conv": torch.rand(3, 2 * 4 * 4), "fc": torch.rand(3, 5)},
    ...                     shapes={"conv": (2, 4, 4), "fc": (5,)})
    >>> with_layout(r, "channels")
    Representations(conv: (48, 2), fc: (3, 5), layout='channels')
    """
    layout = Choice(*LAYOUTS).check("with_layout: layout", layout)
    if not isinstance(reps, Representations):
        raise InputError(f"with_layout: reps must be Representations, got {type(reps).__name__}")
    if reps.layout != "flatten":
        raise InputError(f"with_layout: reps already have layout {reps.layout!r}; apply a layout to extracted ones")

    def convert(r: Representations) -> Representations:
        tensors, shapes = {}, {}
        for name, shape in r.shapes.items():
            if len(shape) == 3:
                tensors[name] = conv_layout(r.unflattened(name), layout)
                shapes[name] = tuple(tensors[name].shape[1:])
            else:
                tensors[name], shapes[name] = r[name], shape
        return Representations(tensors, shapes=shapes, layout=layout)

    out = convert(reps)
    if reps.gradients is not None:
        out.gradients = convert(reps.gradients)
    return out


@strict_signature
def cca_rows_needed(p: int, q: int) -> int:
    r"""Fewest rows for which CCA between ``p`` and ``q`` generic features has no forced unit correlation.

    Centring leaves rank at most :math:`n - 1`; two column spaces of dimensions :math:`p, q` in
    :math:`\mathbb{R}^{n-1}` must share :math:`p + q - (n - 1)` dimensions when that is positive,
    each a canonical correlation of exactly 1. So :math:`n \ge p + q + 1` rows are needed.

    Examples
    --------
    >>> cca_rows_needed(120, 120)
    241
    """
    return int(p) + int(q) + 1
