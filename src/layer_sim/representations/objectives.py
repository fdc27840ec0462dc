r"""Per-example objectives whose gradients :func:`~layer_sim.representations.iter_representations` returns.

An objective is a callable ``(output, targets) -> (n,)`` tensor: one value per example, so that
the gradient of their sum with respect to a layer's output has, in row *i*, the gradient of
example *i*'s own value (:math:`\partial f_i / \partial h_i`) when the model does not couple
examples. A :class:`layer_sim.data.tasks.Loss` is an objective through its ``per_example``
(not its batch mean, which would scale every gradient by 1/batch size).

An objective that needs no targets sets an attribute ``needs_targets = False``; targets are
then passed as given (``None`` when the data has none).

Named objectives (``objective="..."`` in :func:`~layer_sim.representations.extract`):

- ``"loss"``: the task's own per-example loss with the true labels (data must be a
  :class:`~layer_sim.data.tasks.Task`; otherwise pass the :class:`Loss` itself);
- ``"tang"``: :class:`Tang` with ``beta=0.5``, Tang et al.'s (2020) label-free objective.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from layer_sim._options import Real, check
from layer_sim.data.tasks import Loss
from layer_sim.errors import ConfigError, InputError, UnknownNameError

__all__ = ["Objective", "Tang", "NAMES", "resolve", "as_objective", "needs_targets", "evaluate"]

#: ``(output, targets) -> (n,)`` per-example values.
Objective = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class Tang:
    r"""Tang et al.'s (2020) objective: :math:`f_i = \sum_c q_{ic} \log p_{ic}`, no labels needed.

    .. math::

        p_i = \mathrm{softmax}(o_i), \qquad
        q_i = \frac{p_i^\beta}{\sum_c p_{ic}^\beta} = \mathrm{softmax}(\beta\, o_i)
        \quad\text{(held constant)},

    so the gradient at the logits is :math:`\partial f_i / \partial o_i = q_i - p_i` (because
    :math:`\sum_c q_{ic} = 1`). This is what Tang et al.'s code differentiates
    (``torch.autograd.backward(log_softmax(o), grad_tensors=q)``). ``q`` is computed as
    ``softmax(beta * o)``, which equals :math:`p^\beta / \sum p^\beta` without underflow.

    Parameters
    ----------
    beta : float >= 0, default=0.5
        Smoothing of the predicted distribution (their default 0.5; 0 makes q uniform).
        ``beta=1`` is refused: then q = p and every gradient is identically zero.

    Raises
    ------
    ConfigError
        ``beta`` is not a finite number >= 0, or equals 1.

    References
    ----------
    Tang, Maddox, Dickens, Diethe & Damianou (2020). Similarity of neural networks with
    gradients. arXiv:2003.11498 (and the authors' code, ``amzn/xfer/nn_similarity_index``).

    Examples
    --------
    >>> import torch
    >>> o = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    >>> Tang()(o, None).sum().backward()
    >>> p, q = torch.softmax(o, 1), torch.softmax(0.5 * o, 1)
    >>> bool(torch.allclose(o.grad, q - p))
    True
    """

    name = "tang"
    needs_targets = False

    def __init__(self, *, beta: float = 0.5):
        beta = check("Tang", "beta", Real(0.0, None), beta)
        if beta == 1.0:
            raise ConfigError("Tang: beta must not be 1 (then q = p and the gradient q - p is identically zero)")
        self.beta = beta

    def __call__(self, output: torch.Tensor, targets=None) -> torch.Tensor:
        if output.ndim != 2 or output.shape[1] < 2:
            raise InputError(f"Tang: the model output must be (n, classes >= 2) logits, got shape {tuple(output.shape)}")
        q = torch.softmax(self.beta * output.detach(), dim=1)
        return (q * torch.log_softmax(output, dim=1)).sum(dim=1)

    def __eq__(self, other) -> bool:
        return isinstance(other, Tang) and other.beta == self.beta

    def __hash__(self) -> int:
        return hash(("tang", self.beta))

    def __repr__(self) -> str:
        return f"Tang(beta={self.beta:g})"


#: The named objectives ``resolve`` accepts.
NAMES = ("loss", "tang")


def resolve(objective, *, task_loss: Loss | None, where: str):
    """The objective a name stands for (``"loss"``: ``task_loss``; ``"tang"``: ``Tang()``); others pass through.

    >>> resolve("tang", task_loss=None, where="extract")
    Tang(beta=0.5)
    """
    if not isinstance(objective, str):
        return objective
    if objective == "tang":
        return Tang()
    if objective == "loss":
        if task_loss is None:
            raise ConfigError(
                f"{where}: objective='loss' means the task's own loss, so data must be a Task; with other data "
                "pass the loss itself, e.g. objective=CrossEntropy()"
            )
        return task_loss
    raise UnknownNameError(
        f"{where}: unknown objective {objective!r}; available: {', '.join(NAMES)}, a Loss (e.g. CrossEntropy()) "
        "or a callable (output, targets) -> (n,)"
    )


def as_objective(objective, *, where: str) -> Objective:
    """The per-example callable of ``objective`` (a :class:`Loss` or any callable).

    >>> from layer_sim.data.tasks import CrossEntropy
    >>> as_objective(CrossEntropy(), where="extract").__name__
    'per_example'
    """
    if isinstance(objective, Loss):
        return objective.per_example
    if not callable(objective):
        raise ConfigError(
            f"{where}: objective must be a Loss (e.g. CrossEntropy()) or a callable (output, targets) -> (n,), "
            f"got {type(objective).__name__}"
        )
    return objective


def needs_targets(objective) -> bool:
    """Whether ``objective`` needs the data's targets (true unless it says ``needs_targets = False``)."""
    return bool(getattr(objective, "needs_targets", True))


def evaluate(objective, output: torch.Tensor, targets, *, where: str) -> torch.Tensor:
    """``objective(output, targets)`` (see :func:`as_objective`) checked to be ``(n,)`` and finite; a failure names the objective.

    For a :class:`Loss` (whose targets are class labels ``0 .. C - 1``, see
    :mod:`layer_sim.data.tasks`) the labels are checked first, so a float label or one outside
    the model's ``C`` outputs is reported as such rather than as an indexing error.
    """
    n = output.shape[0]
    if isinstance(objective, Loss) and targets is not None:
        _check_labels(targets, output, objective, where=where)
    try:
        values = as_objective(objective, where=where)(output, targets)
    except (RuntimeError, IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            f"{where}: objective {objective!r} failed on output {tuple(output.shape)} and targets "
            f"{None if targets is None else tuple(targets.shape)}: {exc}"
        ) from exc
    if not isinstance(values, torch.Tensor) or values.shape != (n,):
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise InputError(
            f"{where}: objective must return one value per example, shape ({n},), got {got}; "
            "a batch sum or mean would make gradients depend on the batch"
        )
    if not torch.isfinite(values.detach()).all():
        bad = torch.nonzero(~torch.isfinite(values.detach())).flatten()[:5].tolist()
        raise InputError(f"{where}: objective is NaN or Inf for examples {bad} of the batch (counted from 0)")
    return values


def _check_labels(labels: torch.Tensor, output: torch.Tensor, objective, *, where: str) -> None:
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise InputError(f"{where}: targets must be integer class labels for {objective!r}, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise InputError(f"{where}: targets must be a vector of class labels, got shape {tuple(labels.shape)}")
    if output.ndim != 2:
        raise InputError(f"{where}: the model output must be (n, classes) for a Loss, got {tuple(output.shape)}")
    classes = output.shape[1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise InputError(
            f"{where}: targets must be class labels in 0..{classes - 1} (the model has {classes} outputs), "
            f"got values in {int(labels.min())}..{int(labels.max())}"
        )
