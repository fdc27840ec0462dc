"""What a training run exposes: the state callbacks see, the callback protocol, the result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["TrainState", "Callback", "FitResult"]


@dataclass
class TrainState:
    """What a callback sees.

    After a batch: ``inputs``/``targets`` are the (augmented) batch, ``outputs`` the detached
    outputs, ``loss`` the detached batch loss of the task; parameters have just been updated by
    ``optimizer.step()`` and their ``.grad`` still hold this batch's gradients.
    After an epoch: ``metrics`` holds that epoch's row of :attr:`FitResult.history` and the
    batch fields are those of the epoch's last batch.

    ``model``, ``optimizer``, ``scheduler`` and ``generator`` (the private generator of
    shuffling and augmentation) together are everything a run carries from one step to the
    next, so their ``state_dict()``/``get_state()`` at an epoch end is a complete epoch checkpoint.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    epoch: int  # 1-based: the epoch in progress (batch end) or just finished (epoch end)
    step: int  # number of optimizer steps taken so far
    inputs: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    outputs: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    metrics: dict[str, float] | None = None


class Callback:
    """Base class of training callbacks; override either hook. Both default to doing nothing.

    Any object with one or both methods works too (duck typing).
    """

    def on_batch_end(self, state: TrainState) -> None:
        """Called after every optimizer step."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after every epoch, once test metrics are computed."""


@dataclass
class FitResult:
    """Outcome of a training run: one history row per epoch.

    Each row has ``epoch, train_loss, train_accuracy, test_loss, test_accuracy, lr, seconds``
    (``train_*`` from the training batches as they were seen, ``test_*`` NaN without a test
    split, ``lr`` = peak-scaled base learning rate at the end of the epoch, ``seconds`` =
    cumulative wall time).
    """

    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]["test_accuracy"] if self.history else math.nan

    @property
    def seconds(self) -> float:
        return self.history[-1]["seconds"] if self.history else 0.0
