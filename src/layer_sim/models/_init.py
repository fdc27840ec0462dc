"""PyTorch's default initialisation of Linear and Conv2d layers, drawn from a private generator."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fan_in_uniform_"]

#: Layer types whose weight and bias :func:`fan_in_uniform_` re-draws.
INITIALISED: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


def fan_in_uniform_(model: nn.Module, *, seed: int | None) -> None:
    r"""Re-draw every Linear/Conv2d weight and bias (if any) of ``model`` from :math:`U(-1/\sqrt{f}, 1/\sqrt{f})`.

    :math:`f` is the layer's fan-in (``in_features``, or ``in_channels`` times the kernel area),
    which is PyTorch's default (``kaiming_uniform_(a=sqrt(5))`` for the weight, the same bound for
    the bias). Layers are visited in ``model.modules()`` order, weight then bias. With ``seed`` the
    draws come from a private CPU generator (the same seed gives the same weights on every device
    and the global RNG is untouched); ``seed=None`` uses the global RNG.
    """
    gen = None if seed is None else torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, INITIALISED):
                bound = module.weight[0].numel() ** -0.5
                for p in (module.weight, module.bias):
                    if p is None:  # e.g. a convolution before a BatchNorm
                        continue
                    # Drawn on CPU, then copied: the same seed gives the same weights on every device.
                    p.copy_(torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=gen))
