"""Deterministic minibatch training of one model on a task, with callbacks."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable

import torch
from torch import nn

from layer_sim._options import Int, check, strict_signature
from layer_sim._progress import progress_bar
from layer_sim.data.tasks import Task, accuracy
from layer_sim.errors import ConfigError
from layer_sim.training import _steps, resume
from layer_sim.training.augment import random_shift
from layer_sim.training.recipe import Recipe
from layer_sim.training.state import Callback, FitResult, TrainState

__all__ = ["fit"]


@strict_signature
def fit(
    model: nn.Module,
    task: Task,
    recipe: Recipe,
    *,
    seed: int,
    device: str | torch.device | None = None,
    callbacks: Iterable[Callback] = (),
    progress: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> FitResult:
    r"""Train ``model`` in place on ``task`` by minibatch gradient descent on the task's loss.

    Every epoch visits ``task.train`` once in an order drawn from a private
    :class:`torch.Generator` seeded with ``seed``; the same generator draws the augmentation
    shifts. With the same initial weights, task, recipe and thread count, two calls on CPU give
    bit-identical weights; the global RNG is not used. Step :math:`s` minimises the batch mean
    :math:`\tfrac{1}{B}\sum_{i \in \text{batch}} \ell(f(x_i), y_i)` of ``task.loss`` with the
    optimizer, learning rates and schedule of ``recipe`` (see :class:`Recipe`).

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of ``task`` inputs to ``(B, task.num_classes)`` outputs. Its readout is
        ``model.readout`` if it has one, else its last :class:`~torch.nn.Linear`.
    task : Task
        Training data, test data (or None: test metrics are NaN), loss and number of classes.
    recipe : Recipe
        Optimizer, learning rates, schedule, batch size, epochs, augmentation.
    seed : int >= 0
        Seeds shuffling and augmentation (not the initial weights; see ``MLP(seed=...)``).
    device : str, torch.device or None, default=None
        Where to train; None = the device of the model's parameters. Data are moved there once.
    callbacks : iterable of Callback
        ``on_batch_end(state)`` after every step, ``on_epoch_end(state)`` after every epoch,
        with a :class:`TrainState`. An object may implement only one of them.
    progress : bool or None, default=None
        Show a progress bar; None = only when stderr is a terminal.
    checkpoint : path-like or None, default=None
        A directory for the epoch checkpoint (created if needed; see
        :mod:`layer_sim.training.resume`). After every epoch, and after the callbacks have seen
        it, the whole training state is written there atomically. If the directory already
        holds one, training resumes after its epoch: model, optimizer, schedule, generators and
        history are restored (``model``'s own weights are overwritten), callbacks with
        ``state_dict()``/``load_state_dict()`` get theirs back, and the result equals an
        uninterrupted run's, bit for bit on CPU with the same thread count. A checkpoint of the
        last epoch makes ``fit`` return at once. None: no checkpoints.

    Returns
    -------
    FitResult
        Per-epoch history; ``.test_accuracy`` is the final test accuracy.

    Raises
    ------
    ConfigError
        A bad ``recipe``/``task`` type, ``seed`` or ``device`` (e.g. ``"cuda"`` on a machine
        without CUDA), or a model without a Linear readout; all before any work.
    InputError
        Task inputs that do not fit the model (shape, dtype, output width vs ``num_classes``),
        or ``shift > 0`` with inputs that are not images; before any work.
    DataError
        ``checkpoint`` holds a damaged epoch checkpoint or one of another run (another recipe,
        seed, task or model); the message names the file and what differs.
    TrainingDivergedError
        The loss or a weight became NaN/Inf; the message names epoch, step and learning rate.
        Checked after every step when there are batch callbacks (they must not see a diverged
        model), else once per epoch, so that training never waits on the device each step.

    Examples
    --------
    >>> import torch
    >>> from layer_sim.data import Task
    >>> from layer_sim.models import MLP
    >>> x = torch.rand(64, 8); y = (x[:, 0] > 0.5).long()
    >>> task = Task("toy", (x, y), (x, y), 2, "cross_entropy")
    >>> result = fit(MLP((8, 16, 2), seed=0), task, Recipe(epochs=3, batch_size=16), seed=0)
    >>> [row["epoch"] for row in result.history]
    [1, 2, 3]
    """
    seed = check("fit", "seed", Int(0), seed)
    if not isinstance(model, nn.Module) or next(model.parameters(), None) is None:
        raise ConfigError(f"fit: model must be a torch.nn.Module with parameters, got {type(model).__name__}")
    device = _steps.check_arguments("fit", task, recipe, device)
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise ConfigError(f"fit: checkpoint must be a directory path or None, got {type(checkpoint).__name__}")
    if device is None:
        device = next(model.parameters()).device
    model.to(device)
    _steps.check_fits("fit", model, task, recipe)
    body, head = _steps.readout_split("fit", model)
    x_train, y_train = (t.to(device) for t in task.train)
    test = None if task.test is None else tuple(t.to(device) for t in task.test)

    opt = _steps.make_optimizer(recipe, body, head)
    n, batch_size = len(x_train), recipe.batch_size
    steps_per_epoch = math.ceil(n / batch_size)
    sched = _steps.make_scheduler(opt, recipe, steps_per_epoch)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    try:
        callbacks = tuple(callbacks)
    except TypeError:
        raise ConfigError(f"fit: callbacks must be an iterable of callbacks, got {type(callbacks).__name__}") from None
    batch_hooks = [cb.on_batch_end for cb in callbacks if hasattr(cb, "on_batch_end")]
    epoch_hooks = [cb.on_epoch_end for cb in callbacks if hasattr(cb, "on_epoch_end")]
    loss_fn = task.loss
    diverged = dict(where="fit", recipe=recipe, steps_per_epoch=steps_per_epoch)
    result = FitResult()
    step = done = elapsed = 0
    if checkpoint is not None:
        run_id = resume.fingerprint(model, task, recipe, seed)
        saved = resume.read(checkpoint, run_id)
        if saved is not None:
            done, step, elapsed = saved["epoch"], saved["step"], saved["seconds"]
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            gen.set_state(saved["generator"])
            resume.set_rng_state(saved["rng"], device)
            result.history.extend(saved["history"])
            _restore_callbacks(callbacks, saved["callbacks"], checkpoint)
    start = time.perf_counter() - elapsed
    with progress_bar(progress, steps_per_epoch * recipe.epochs, "fit") as advance:
        advance(step)
        for epoch in range(done + 1, recipe.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen).to(device)
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            # Batch losses stay on the device until the epoch's divergence check (no sync per step).
            losses = torch.empty(steps_per_epoch, 1, device=device, dtype=torch.float64)
            for i in range(steps_per_epoch):
                idx = order[i * batch_size : (i + 1) * batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if recipe.shift:
                    xb = random_shift(xb, recipe.shift, generator=gen)
                opt.zero_grad(set_to_none=True)
                out = model(xb)
                loss = loss_fn(out, yb)
                loss.backward()
                if recipe.clip_norm is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
                opt.step()
                sched.step()
                step += 1
                out, loss = out.detach(), loss.detach()
                losses[i] = loss
                loss_sum += loss.double() * len(yb)
                correct += accuracy(out, yb)
                if batch_hooks:
                    _steps.check_losses(losses=losses[i : i + 1], epoch=epoch, first_step=step, **diverged)
                state = TrainState(model=model, optimizer=opt, scheduler=sched, generator=gen, epoch=epoch,
                                   step=step, inputs=xb, targets=yb, outputs=out, loss=loss)  # fmt: skip
                for hook in batch_hooks:
                    hook(state)
                advance()
            _steps.check_losses(losses=losses, epoch=epoch, first_step=step - steps_per_epoch + 1, **diverged)
            _steps.check_weights(models=[model], epoch=epoch, step=step, **diverged)
            row = _steps.history_row(
                epoch=epoch, train_loss=float(loss_sum) / n, train_accuracy=int(correct) / n,
                test=_steps.evaluate(model, test, loss=loss_fn), lr=opt.param_groups[0]["lr"],
                seconds=time.perf_counter() - start,
            )  # fmt: skip
            result.history.append(row)
            state.metrics = row
            for hook in epoch_hooks:
                hook(state)
            if checkpoint is not None:
                resume.write(checkpoint, {
                    "fingerprint": run_id, "epoch": epoch, "step": step, "seconds": time.perf_counter() - start,
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "generator": gen.get_state(), "rng": resume.rng_state(device), "history": result.history,
                    "callbacks": [[type(cb).__qualname__, cb.state_dict() if _stateful(cb) else None]
                                  for cb in callbacks],
                })  # fmt: skip
    return result


def _stateful(callback) -> bool:
    return hasattr(callback, "state_dict") and hasattr(callback, "load_state_dict")


def _restore_callbacks(callbacks, saved: list, checkpoint) -> None:
    """Give each stateful callback the state saved for the callback of its class at its position."""
    for i, cb in enumerate(callbacks):
        if not _stateful(cb):
            continue
        name = type(cb).__qualname__
        if i >= len(saved) or saved[i][0] != name or saved[i][1] is None:
            raise ConfigError(
                f"fit: callback {i} ({name}) has a state_dict, but the epoch checkpoint in {checkpoint} holds no "
                "state for it; resume with the callbacks the run started with"
            )
        cb.load_state_dict(saved[i][1])
