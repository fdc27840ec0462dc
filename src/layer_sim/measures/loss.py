r"""Linear CKA as a differentiable training loss: ``cka_loss(x, y) = 1 - CKA(x, y)``.

Unlike the checked indexes (:func:`~layer_sim.measures.linear_cka`), this is a pure tensor
function for use inside a training step: it keeps the input dtype (float32 stays float32), never
moves a value to the host (no ``float()``, ``.item()`` or branch on tensor values, so no device
synchronisation on CUDA/MPS), and works under ``torch.func.grad`` and ``torch.func.vmap`` (e.g. a
batch of student/teacher pairs). The price of no host synchronisation is no validation of
values: a constant ``x`` or ``y`` gives NaN rather than an error; shapes are checked.

References
----------
Kornblith, Norouzi, Lee & Hinton (2019). Similarity of neural network representations revisited. ICML.
"""

from __future__ import annotations

import torch

from layer_sim._options import Flag, check, strict_signature
from layer_sim.errors import InputError
from layer_sim.measures import _hsic as core
from layer_sim.measures._features import centre

__all__ = ["cka_loss"]


@strict_signature
def cka_loss(x: torch.Tensor, y: torch.Tensor, *, debiased: bool = False) -> torch.Tensor:
    r"""One minus linear CKA, differentiable in both arguments: :math:`1 - \mathrm{CKA}(X, Y)`.

    .. math::

        \mathcal L(X, Y) = 1 - \frac{\lVert Y_c^\top X_c\rVert_F^2}{\lVert X_c^\top X_c\rVert_F\,\lVert Y_c^\top Y_c\rVert_F},

    with :math:`X_c, Y_c` column-centred over the examples (dimension -2). ``debiased`` uses
    Song et al.'s HSIC_1 in all three terms, as :func:`~layer_sim.measures.linear_cka` does.
    Each input is multiplied by the power of two that brings its largest entry into [0.5, 1)
    (exact, detached), so float32 products cannot overflow; CKA is unchanged by it.

    Parameters
    ----------
    x : Tensor of shape (..., n_examples, n_features_x)
        E.g. a student's hidden layer on a batch; leading dimensions are batch dimensions only
        under ``torch.func.vmap`` (this function itself takes one pair).
    y : Tensor of shape (..., n_examples, n_features_y)
        The target representation on the same examples (e.g. a teacher's layer, detached).
    debiased : bool, default=False
        Unbiased HSIC_1 (needs n >= 4).

    Returns
    -------
    Tensor
        0-d, in [0, 1] (debiased: [0, 2]), in the inputs' dtype and on their device.

    Raises
    ------
    InputError
        Not a 2-d floating tensor pair with the same number of rows, or on different devices.
    ConfigError
        ``debiased`` is not a bool.

    Examples
    --------
    >>> import torch
    >>> from layer_sim.measures import cka_loss
    >>> x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    >>> float(cka_loss(x, 2 * x + 1)) < 1e-6
    True
    >>> w = torch.zeros(8, 3, requires_grad=True)
    >>> cka_loss(x @ (w + torch.eye(8)[:, :3]), x).backward()  # differentiable in the student's weights
    >>> w.grad.shape, cka_loss(x.double(), x.double()[:, :4]).dtype
    (torch.Size([8, 3]), torch.float64)
    """
    debiased = check("cka_loss", "debiased", Flag(), debiased)
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.ndim != 2:
            got = f"{t.dtype} tensor of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"cka_loss: {name} must be a 2-d floating tensor (n_examples, n_features), got {got}")
    if x.shape[0] != y.shape[0] or x.device != y.device:
        raise InputError(
            f"cka_loss: x and y must hold the same examples on one device, got {tuple(x.shape)} on {x.device} "
            f"and {tuple(y.shape)} on {y.device}"
        )
    if x.shape[0] < (4 if debiased else 2):
        raise InputError(f"cka_loss: needs at least {4 if debiased else 2} examples, got {x.shape[0]}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    return 1 - core.cka_features(centre(x.to(dtype)), centre(y.to(dtype)), debiased=debiased)
