"""Step helpers shared by both trainers (:func:`fit` and :func:`fit_ensemble`).

Everything here is arithmetic or checking that the sequential and the batched trainer must do
identically: the checks before any work, the optimizer with its readout group, the
learning-rate schedule, the divergence checks, the history row and the test evaluation.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import nn

from layer_sim._device import resolve_device
from layer_sim._options import Int, check, strict_signature
from layer_sim.data.tasks import Loss, Task, accuracy, get_loss
from layer_sim.errors import ConfigError, InputError, TrainingDivergedError
from layer_sim.training.recipe import Recipe

__all__ = ["evaluate"]


# ----------------------------------------------------------------------------- checks before any work


def check_arguments(where: str, task, recipe, device) -> torch.device | None:
    """Types of ``task`` and ``recipe``; ``device`` resolved (None stays None)."""
    if not isinstance(task, Task):
        raise ConfigError(f"{where}: task must be a layer_sim.data.Task, got {type(task).__name__}")
    if not isinstance(recipe, Recipe):
        raise ConfigError(f"{where}: recipe must be a layer_sim.training.Recipe, got {type(recipe).__name__}")
    return resolve_device(where, device)


def check_seeds(where: str, seeds) -> list[int]:
    """``seeds`` as a non-empty list of distinct integers >= 0."""
    try:
        seeds = list(seeds)
    except TypeError:
        raise ConfigError(f"{where}: seeds must be a sequence of integers, got {seeds!r}") from None
    if not seeds:
        raise ConfigError(f"{where}: need at least one seed, got none")
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{where}: seeds must be integers, got {seeds!r}")
    seeds = [check(where, "seed", Int(0), s) for s in seeds]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"{where}: seeds must be distinct (a repeated seed trains the same network twice), "
            f"got {repeated} more than once"
        )
    return seeds


def check_fits(where: str, model: nn.Module, task: Task, recipe: Recipe) -> None:
    """Raise :class:`InputError` unless ``model`` can train on ``task`` with ``recipe``.

    Checks that the model's dtype can hold the recipe's rates (else :class:`ConfigError`), the input dtype against the model's, the image shape that ``shift`` needs, and then
    runs the model on the first example of each split (eval mode, no gradients: no state or RNG
    changes) to check that the inputs fit and the output width is ``task.num_classes``.
    """
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None:
        largest = torch.finfo(param.dtype).max
        for name in ("lr", "readout_lr", "weight_decay"):
            value = getattr(recipe, name)
            if value is not None and value > largest:
                raise ConfigError(
                    f"{where}: {name}={value:g} is larger than the largest {param.dtype} ({largest:g}), "
                    "the dtype the optimizer updates the model in"
                )
    splits = [(name, data[0]) for name, data in (("train", task.train), ("test", task.test)) if data is not None]
    for name, x in splits:
        if param is not None and x.is_floating_point() and x.dtype != param.dtype:
            raise InputError(f"{where}: task.{name} inputs are {x.dtype} but the model is {param.dtype}; cast one")
    if recipe.shift and task.train[0].ndim != 4:
        raise InputError(
            f"{where}: shift={recipe.shift} needs images of shape (n, C, H, W), got task.train inputs of "
            f"shape {tuple(task.train[0].shape)}"
        )
    device = param.device if param is not None else torch.device("cpu")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            for name, x in splits:
                try:
                    out = model(x[:1].to(device))
                except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                    raise InputError(
                        f"{where}: task.{name} inputs of shape {tuple(x.shape)} do not fit the model ({exc})"
                    ) from None
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, task.num_classes):
                    got = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise InputError(
                        f"{where}: the model maps each task.{name} input to {got}, but task {task.name!r} has "
                        f"num_classes={task.num_classes} (the model needs that many outputs)"
                    )
    finally:
        for m, was_training in modes.items():
            m.train(was_training)


# ----------------------------------------------------------------------------- optimizer and schedule


def readout_split(where: str, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(every parameter but the readout's, the readout's): ``model.readout`` if any, else its last Linear."""
    readout = getattr(model, "readout", None)
    if not isinstance(readout, nn.Module):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(f"{where}: the model has no Linear layer to serve as readout")
        readout = linears[-1]
    head = {id(p) for p in readout.parameters()}
    return [p for p in model.parameters() if id(p) not in head], list(readout.parameters())


def make_optimizer(recipe: Recipe, body: list[torch.Tensor], readout: list[torch.Tensor]) -> torch.optim.Optimizer:
    """One param group at ``lr`` for ``body``, one at ``readout_lr`` (or ``lr``) for ``readout``."""
    groups = [{"params": body, "lr": recipe.lr},
              {"params": readout, "lr": recipe.lr if recipe.readout_lr is None else recipe.readout_lr}]  # fmt: skip
    groups = [g for g in groups if g["params"]]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(groups, lr=recipe.lr, betas=(recipe.momentum, 0.999), weight_decay=recipe.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int):
    """Each group's rate is its peak times :meth:`Recipe.lr_factor` of the steps taken so far."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: recipe.lr_factor(s, steps_per_epoch=steps_per_epoch))


# ----------------------------------------------------------------------------- divergence


def check_losses(where: str, losses: torch.Tensor, *, epoch: int, first_step: int, recipe: Recipe,
                 steps_per_epoch: int, seeds: Sequence[int] | None = None) -> None:  # fmt: skip
    """Raise :class:`TrainingDivergedError` at the first non-finite entry of ``losses``.

    ``losses`` has shape ``(steps, members)``; row *i* is optimizer step ``first_step + i``
    (1-based). ``seeds`` names the members of an ensemble.
    """
    bad = ~torch.isfinite(losses)
    if not bool(bad.any()):
        return
    i, k = (int(v) for v in bad.nonzero()[0])
    step = first_step + i
    _diverged(where, f"the loss is {float(losses[i, k])}", epoch=epoch, step=step, recipe=recipe,
              steps_per_epoch=steps_per_epoch, member=None if seeds is None else (k, seeds[k]))  # fmt: skip


def check_weights(where: str, models: Sequence[nn.Module], *, epoch: int, step: int, recipe: Recipe,
                  steps_per_epoch: int, seeds: Sequence[int] | None = None) -> None:  # fmt: skip
    """Raise :class:`TrainingDivergedError` if a parameter of a model is NaN/Inf after ``step``."""
    for k, model in enumerate(models):
        for name, p in model.named_parameters():
            if not bool(torch.isfinite(p).all()):
                _diverged(where, f"parameter {name} is not finite", epoch=epoch, step=step, recipe=recipe,
                          steps_per_epoch=steps_per_epoch, member=None if seeds is None else (k, seeds[k]))  # fmt: skip


def _diverged(where, what, *, epoch, step, recipe, steps_per_epoch, member) -> None:
    factor = recipe.lr_factor(step - 1, steps_per_epoch=steps_per_epoch)  # the factor step `step` used
    lr = f"learning rate {recipe.lr * factor:.3g}"
    if recipe.readout_lr is not None:
        lr += f", readout {recipe.readout_lr * factor:.3g}"
    who = "" if member is None else f" (member {member[0]}, seed {member[1]})"
    raise TrainingDivergedError(
        f"{where}: training diverged{who}: {what} at epoch {epoch}, step {step} ({lr}); nothing was saved. "
        "Lower lr (or readout_lr), or add warmup_epochs"
    )


# ----------------------------------------------------------------------------- per-epoch results


def history_row(*, epoch: int, train_loss: float, train_accuracy: float, test: tuple[float, float],
                lr: float, seconds: float) -> dict[str, float]:  # fmt: skip
    """One row of :attr:`FitResult.history`."""
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,
        "test_loss": test[0],
        "test_accuracy": test[1],
        "lr": lr,
        "seconds": seconds,
    }


@strict_signature
@torch.no_grad()
def evaluate(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor] | None, *, loss: Loss | str,
             batch_size: int = 1000) -> tuple[float, float]:  # fmt: skip
    """Mean ``loss`` and accuracy of ``model`` on ``data = (inputs, labels)``, in eval mode.

    The model's train/eval mode is restored afterwards. Inputs are moved to the model's device
    batch by batch. ``data=None`` gives ``(nan, nan)``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.eye(2)), net.bias.zero_()
    >>> evaluate(net, (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])), loss="mse_one_hot")
    (0.5, 0.5)
    """
    if data is None:
        return math.nan, math.nan
    loss = get_loss(loss)
    inputs, labels = data
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct = 0.0, 0
    try:
        for i in range(0, len(inputs), batch_size):
            xb = inputs[i : i + batch_size].to(device)
            yb = labels[i : i + batch_size].to(device)
            out = model(xb)
            loss_sum += float(loss.sum(out, yb))
            correct += int(accuracy(out, yb))
    finally:
        model.train(was_training)
    return loss_sum / len(inputs), correct / len(inputs)
