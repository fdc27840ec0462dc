"""Train several seeds of one MLP at once, as a batched ensemble with per-member maths of :func:`fit`.

Small MLPs leave a CPU mostly idle: each optimizer step of :func:`~layer_sim.training.loop.fit` is a
handful of small GEMMs plus Python and autograd overhead. Stacking the :math:`K` members' weights
into ``(K, d_in, d_out)`` tensors turns the :math:`K` forward/backward passes into one pass of
block-batched matrix products (``torch.baddbmm``), and the :math:`K` optimizer steps into one step
on stacked tensors. Nothing couples the members: member :math:`k` sees its own initial weights,
its own shuffling and augmentation stream (seeded with ``seeds[k]``) and its own gradients, and
every optimizer update is elementwise, so it follows the same arithmetic as ``fit(models[k],
seed=seeds[k])`` up to floating-point rounding of the batched GEMMs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from layer_sim._options import strict_signature
from layer_sim._progress import progress_bar
from layer_sim.data.tasks import Task
from layer_sim.errors import ConfigError
from layer_sim.models import MLP
from layer_sim.training import _steps
from layer_sim.training.augment import random_shift
from layer_sim.training.recipe import Recipe
from layer_sim.training.state import FitResult

__all__ = ["fit_ensemble"]


@strict_signature
def fit_ensemble(
    models: Sequence[MLP],
    task: Task,
    recipe: Recipe,
    *,
    seeds: Sequence[int],
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> list[FitResult]:
    r"""Train ``models[k]`` in place on ``task`` with seed ``seeds[k]``, all members in one batched pass.

    Equivalent to the loop ::

        [fit(m, task, recipe, seed=s) for m, s in zip(models, seeds)]

    (same initial weights, batch order, augmentation, loss, optimizer and learning-rate schedule
    per member; see :func:`~layer_sim.training.fit`), but each step runs the
    :math:`K` = ``len(models)`` members together. With parameters stacked as
    :math:`W_\ell \in \mathbb{R}^{K \times d_\ell \times d_{\ell-1}}`, member :math:`k`'s batch
    :math:`X^{(k)} \in \mathbb{R}^{B \times d_0}` (its own rows, drawn by its own generator)
    goes through

    .. math::

        H_\ell^{(k)} = \phi\bigl(H_{\ell-1}^{(k)} W_\ell^{(k)\top} + \mathbf{1} b_\ell^{(k)\top}\bigr)
        \quad \text{for all } k \text{ in one } \texttt{baddbmm},

    and the loss :math:`\sum_k \bar{L}^{(k)}` (sum of the members' batch means of
    ``task.loss``) has gradient :math:`\partial \bar{L}^{(k)} / \partial W^{(k)}` with respect to
    member *k*'s block, because no member's loss depends on another's weights. SGD-momentum, Adam
    and coupled weight decay act elementwise, so ``torch.optim`` on the stacked tensors applies to
    each block exactly the per-member update (one param group for the hidden layers, one for the
    readout).

    The results agree with sequential training to floating-point rounding, not bit for bit: a
    batched GEMM may sum the :math:`d_{\ell-1}` products in another order than the single GEMM
    of ``nn.Linear``. After 10 steps of a small MLP the largest weight difference is ~1e-16 in
    float64 and ~3e-8 in float32 (weights of order 0.1); like any rounding perturbation it grows
    slowly with training.

    Parameters
    ----------
    models : sequence of MLP
        :math:`K \ge 1` distinct networks of one architecture (equal ``config``), dtype and
        device, typically ``[MLP(widths, seed=s) for s in seeds]``. Trained in place.
    task : Task
        As for :func:`~layer_sim.training.fit`.
    recipe : Recipe
        Shared by all members.
    seeds : sequence of int
        One distinct shuffling/augmentation seed per model.
    device : str, torch.device or None, default=None
        Where to train; None = the device of the models' parameters.
    progress : bool or None, default=None
        Show a progress bar; None = only when stderr is a terminal.

    Returns
    -------
    list of FitResult
        Per member, the history :func:`~layer_sim.training.fit` would return; ``seconds`` is the
        wall time of the whole ensemble. ``train_loss`` and ``train_accuracy`` are computed from
        the same batches, and test metrics by :func:`~layer_sim.training.evaluate` on each member.

    Raises
    ------
    ConfigError
        No models, models that are not MLPs of one config/dtype/device or repeat an object,
        ``len(seeds) != len(models)``, repeated seeds, a bad ``task``/``recipe`` type or
        ``device``; all before any work.
    InputError
        Task inputs that do not fit the models (see :func:`~layer_sim.training.fit`).
    TrainingDivergedError
        A member's loss or weights became NaN/Inf (checked once per epoch); the message names
        the member's seed, the epoch, the step and the learning rate.

    Notes
    -----
    Callbacks are not supported: a per-batch hook would need one model object per member,
    which is what batching avoids. Train sequentially with :func:`~layer_sim.training.fit` when
    per-batch callbacks are needed.

    Examples
    --------
    >>> import torch
    >>> from layer_sim.data import Task
    >>> from layer_sim.models import MLP
    >>> x, y = torch.rand(64, 1, 4, 4), torch.randint(0, 3, (64,))
    >>> nets = [MLP((16, 8, 3), seed=s) for s in (0, 1)]
    >>> task = Task("toy", (x, y), None, 3, "cross_entropy")
    >>> results = fit_ensemble(nets, task, Recipe(epochs=1, batch_size=16), seeds=(0, 1))
    >>> len(results), results[0].history[0]["epoch"]
    (2, 1)
    """
    device = _steps.check_arguments("fit_ensemble", task, recipe, device)
    models, seeds = _check_members(models, seeds)
    if device is None:
        device = next(models[0].parameters()).device
    for m in models:
        m.to(device)
    _steps.check_fits("fit_ensemble", models[0], task, recipe)
    x_train, y_train = (t.to(device) for t in task.train)
    test = None if task.test is None else tuple(t.to(device) for t in task.test)

    stack = _StackedMLP(models)
    opt = _steps.make_optimizer(recipe, *stack.parameter_groups())
    n, k_members, batch_size = len(x_train), len(models), recipe.batch_size
    steps_per_epoch = math.ceil(n / batch_size)
    sched = _steps.make_scheduler(opt, recipe, steps_per_epoch)
    # One private generator per member, drawn from in the same order as fit() draws from its
    # own: a permutation per epoch, then (with shift) one offset draw per batch.
    gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
    x_flat = x_train.reshape(n, -1)
    loss_fn = task.loss
    diverged = dict(where="fit_ensemble", recipe=recipe, steps_per_epoch=steps_per_epoch, seeds=seeds)
    results = [FitResult() for _ in models]
    start = time.perf_counter()
    step = 0
    with progress_bar(progress, steps_per_epoch * recipe.epochs, f"fit_ensemble ({k_members} members)") as advance:
        for epoch in range(1, recipe.epochs + 1):
            orders = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
            loss_sum = torch.zeros(k_members, device=device, dtype=torch.float64)
            correct = torch.zeros(k_members, device=device, dtype=torch.int64)
            losses = torch.empty(steps_per_epoch, k_members, device=device, dtype=torch.float64)
            for i in range(steps_per_epoch):
                idx = orders[:, i * batch_size : (i + 1) * batch_size]  # (K, B)
                yb = y_train[idx]
                if recipe.shift:
                    xb = torch.stack([random_shift(x_train[j], recipe.shift, generator=g).reshape(len(j), -1)
                                      for j, g in zip(idx, gens)])  # fmt: skip
                else:
                    # index_select is a plain row gather, ~2x faster than x_flat[idx] on CPU.
                    xb = x_flat.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)  # (K, B, d_in)
                opt.zero_grad(set_to_none=True)
                out = stack(xb)  # (K, B, d_out)
                member_losses = loss_fn.per_example(
                    out.reshape(-1, out.shape[-1]), yb.reshape(-1)
                ).view(k_members, -1).mean(dim=1)
                member_losses.sum().backward()
                if recipe.clip_norm is not None:
                    stack.clip_grad_norm_(recipe.clip_norm)
                opt.step()
                sched.step()
                step += 1
                losses[i] = member_losses.detach()
                loss_sum += member_losses.detach().double() * yb.shape[1]
                correct += (out.detach().argmax(2) == yb).sum(dim=1)
                advance()
            _steps.check_losses(losses=losses, epoch=epoch, first_step=step - steps_per_epoch + 1, **diverged)
            stack.write_back(models)
            _steps.check_weights(models=models, epoch=epoch, step=step, **diverged)
            tests = [_steps.evaluate(m, test, loss=loss_fn) for m in models]
            seconds = time.perf_counter() - start
            for res, ls, c, test_metrics in zip(results, loss_sum.tolist(), correct.tolist(), tests):
                res.history.append(_steps.history_row(
                    epoch=epoch, train_loss=ls / n, train_accuracy=c / n, test=test_metrics,
                    lr=opt.param_groups[0]["lr"], seconds=seconds,
                ))  # fmt: skip
    return results


# ----------------------------------------------------------------------------- private kernels


class _StackedMLP:
    """The parameters of K equal-config MLPs stacked on a leading member axis, and their forward.

    ``weights[l]`` has shape ``(K, d_{l-1}, d_l)``: block k is ``fc.weight.T`` of member k, stored
    contiguously so that ``baddbmm`` reads it without a transpose and its gradient
    :math:`H_{l-1}^\top G_l` comes out contiguous, with no copy per step. ``biases[l]`` has shape
    ``(K, d_l)``. Both are fresh leaf tensors, so training them never touches the source models
    until :meth:`write_back`. (Optimizer updates are elementwise, so the layout does not change
    the arithmetic.)
    """

    def __init__(self, models: Sequence[MLP]) -> None:
        ref = models[0]
        self.linear_names = [f"fc{k}" for k in range(1, len(ref.widths) - 1)] + ["fc_out"]
        # Activation and residual modules are stateless and elementwise, so one member's modules
        # apply to the stacked (K, B, d) activations unchanged.
        self.activations = [getattr(ref, f"act{k}") for k in range(1, len(ref.widths) - 1)]
        self.residuals = [getattr(ref, f"res{k}", None) for k in range(1, len(ref.widths) - 1)]
        with torch.no_grad():
            self.weights = [torch.stack([m.get_submodule(name).weight.T for m in models]).requires_grad_()
                            for name in self.linear_names]  # fmt: skip
            self.biases = [torch.stack([m.get_submodule(name).bias for m in models]).requires_grad_()
                           for name in self.linear_names]  # fmt: skip

    def parameter_groups(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(hidden-layer tensors, readout tensors), mirroring fit's two param groups."""
        body = [t for w, b in zip(self.weights[:-1], self.biases[:-1]) for t in (w, b)]
        return body, [self.weights[-1], self.biases[-1]]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, d_out)`` of member k on its own rows ``x[k]``; ``x`` is ``(K, B, d_in)``."""
        h = x
        for w, b, act, res in zip(self.weights, self.biases, self.activations, self.residuals):
            a = act(torch.baddbmm(b.unsqueeze(1), h, w))
            h = res(a, h) if res is not None else a
        return torch.baddbmm(self.biases[-1].unsqueeze(1), h, self.weights[-1])

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> None:
        """Per member k, ``torch.nn.utils.clip_grad_norm_`` of k's gradient blocks: scale by min(1, max_norm / (norm + 1e-6))."""
        tensors = [*self.weights, *self.biases]
        k = tensors[0].shape[0]
        # Norm of the per-tensor norms: the order clip_grad_norm_ reduces in.
        norms = torch.stack([torch.linalg.vector_norm(t.grad.reshape(k, -1), dim=1) for t in tensors])
        coef = (max_norm / (torch.linalg.vector_norm(norms, dim=0) + 1e-6)).clamp(max=1.0)
        for t in tensors:
            t.grad.mul_(coef.view(k, *[1] * (t.ndim - 1)))

    @torch.no_grad()
    def write_back(self, models: Sequence[MLP]) -> None:
        """Copy member k's trained block into ``models[k]``."""
        for name, w, b in zip(self.linear_names, self.weights, self.biases):
            for k, m in enumerate(models):
                layer = m.get_submodule(name)
                layer.weight.copy_(w[k].T)
                layer.bias.copy_(b[k])


def _check_members(models, seeds) -> tuple[list[MLP], list[int]]:
    """Validate models and seeds; return them as lists."""
    seeds = _steps.check_seeds("fit_ensemble", seeds)
    models = list(models)
    if not models:
        raise ConfigError("fit_ensemble: need at least one model, got none")
    if len(models) != len(seeds):
        raise ConfigError(f"fit_ensemble: got {len(models)} models but {len(seeds)} seeds (need one seed per model)")
    if not all(type(m) is MLP for m in models):
        kinds = sorted({type(m).__name__ for m in models})
        raise ConfigError(f"fit_ensemble: every model must be a layer_sim MLP, got {kinds}")
    if len({id(m) for m in models}) != len(models):
        raise ConfigError("fit_ensemble: the same model object appears more than once")
    ref = models[0]
    ref_param = next(ref.parameters())
    for k, m in enumerate(models[1:], start=1):
        if m.config != ref.config:
            raise ConfigError(f"fit_ensemble: models[{k}] has config {m.config}, models[0] has {ref.config}")
        p = next(m.parameters())
        if (p.dtype, p.device) != (ref_param.dtype, ref_param.device):
            raise ConfigError(
                f"fit_ensemble: models[{k}] is {p.dtype} on {p.device}, models[0] is "
                f"{ref_param.dtype} on {ref_param.device}"
            )
    return models, seeds
