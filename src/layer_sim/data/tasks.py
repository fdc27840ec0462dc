r"""Tasks: data + targets + the loss that trains on them + the accuracy that scores them.

A :class:`Task` is what a trainer fits and what gradient extraction differentiates: nothing in
the package hard-codes a loss. Targets are always integer class labels ``0 .. num_classes - 1``;
a loss that needs another encoding (one-hot for MSE) derives it itself, so accuracy means the
same thing (``argmax(output) == label``) for every task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from layer_sim.errors import UnknownNameError

__all__ = ["Loss", "CrossEntropy", "MSEOneHot", "LOSSES", "get_loss", "Task", "accuracy"]


class Loss:
    """A training objective on ``(output, labels)``.

    Subclasses define :meth:`per_example` (one value per example, shape ``(n,)``); the batch loss
    :meth:`__call__` is its mean, which is what ``nn.CrossEntropyLoss()`` and ``nn.MSELoss()``
    compute with their default ``reduction="mean"``.
    """

    #: Registry name (what recipes, cache keys and stores record).
    name: str = ""

    def per_example(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.per_example(output, labels).mean()

    def __eq__(self, other) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropy(Loss):
    r""":math:`\ell_i = -\log \mathrm{softmax}(o_i)_{y_i}` (``nn.functional.cross_entropy``)."""

    name = "cross_entropy"

    def per_example(self, output, labels):
        return nn.functional.cross_entropy(output, labels, reduction="none")


class MSEOneHot(Loss):
    r"""Squared error against one-hot targets, averaged over the outputs.

    .. math:: \ell_i = \frac{1}{C} \sum_{c=1}^{C} (o_{ic} - [y_i = c])^2,

    so the batch mean equals ``nn.MSELoss()(output, one_hot(labels).float())``, the loss of the
    report's digit-pair runs (S2 in ``shared/reference/seed-systems.md``).
    """

    name = "mse_one_hot"

    def per_example(self, output, labels):
        target = nn.functional.one_hot(labels, output.shape[-1]).to(output.dtype)
        return (output - target).square().mean(dim=-1)


#: Losses by registry name.
LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (CrossEntropy, MSEOneHot)}


def get_loss(name: str | Loss) -> Loss:
    """The loss called ``name`` (a :class:`Loss` passes through)."""
    if isinstance(name, Loss):
        return name
    try:
        return LOSSES[name]()
    except (KeyError, TypeError):
        raise UnknownNameError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}") from None


def accuracy(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Number of examples whose largest output is their label (an int64 0-d tensor)."""
    return (output.argmax(dim=-1) == labels).sum()


@dataclass(frozen=True, eq=False)
class Task:
    """Inputs and integer labels for training and testing, with the loss to train on.

    Attributes
    ----------
    name : str
        What the data are, e.g. ``"mnist"`` or ``"mnist-pair-2-7"`` (recorded in cache keys).
    train, test : (inputs, labels)
        Tensors with examples along dimension 0; labels int64 in ``0 .. num_classes - 1``.
        ``test`` may be None.
    num_classes : int
        Number of classes (the model's output width).
    loss : Loss
        The training objective, also the default objective of gradient extraction.
    """

    name: str
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor] | None
    num_classes: int
    loss: Loss

    def __repr__(self) -> str:
        n_test = 0 if self.test is None else len(self.test[0])
        return (f"Task({self.name!r}, train={len(self.train[0])}, test={n_test}, "
                f"num_classes={self.num_classes}, loss={self.loss!r})")  # fmt: skip
