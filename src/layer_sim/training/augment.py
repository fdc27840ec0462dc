"""Data augmentation applied by the trainers to each training batch."""

from __future__ import annotations

import torch
from torch import nn

from layer_sim._options import strict_signature

__all__ = ["random_shift"]


@strict_signature
def random_shift(x: torch.Tensor, max_shift: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Translate each image of ``x`` (shape ``(n, C, H, W)``) by its own random offset.

    Offsets :math:`(d_y, d_x)` are uniform integers in :math:`[-m, m]^2` drawn on CPU from
    ``generator``; output pixel :math:`(i, j)` is input pixel :math:`(i - d_y, j - d_x)`, or 0
    when that falls outside the image.

    Examples
    --------
    >>> x = torch.arange(9.0).reshape(1, 1, 3, 3)
    >>> random_shift(x, 0).equal(x)
    True
    """
    n, _, h, w = x.shape
    m = int(max_shift)
    d = torch.randint(-m, m + 1, (2, n), generator=generator).to(x.device)
    padded = nn.functional.pad(x, (m, m, m, m))
    rows = torch.arange(h, device=x.device) + m - d[0][:, None]  # (n, h)
    cols = torch.arange(w, device=x.device) + m - d[1][:, None]  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indexing gathers padded[b, :, rows[b, i], cols[b, j]] -> (n, h, w, C).
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
