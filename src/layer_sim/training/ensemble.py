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
from torch import nn

from layer_sim.training.checkpoint import Checkpoint, save_checkpoint
from layer_sim.errors import ConfigError, InputError
from layer_sim.models import MLP
from layer_sim.training.loop import (
    FitResult,
    TrainConfig,
    checkpoint_dir,
    load_data,
    _check_data,
    _check_hparams,
    _lr_factor,
    _progress_bar,
    evaluate,
    random_shift,
    train_or_load,
)

__all__ = ["fit_ensemble", "train_ensemble", "train_or_load_ensemble"]


def fit_ensemble(
    models: Sequence[MLP],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    seeds: Sequence[int],
    optimizer: str = "sgd",
    lr: float = 0.05,
    momentum: float = 0.9,
    readout_lr: float | None = None,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    epochs: int = 10,
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    shift: int = 0,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> list[FitResult]:
    r"""Train ``models[k]`` in place with seed ``seeds[k]``, all members in one batched pass.

    Equivalent to the loop ::

        [fit(m, train, test, seed=s, **options) for m, s in zip(models, seeds)]

    (same initial weights, batch order, augmentation, loss, optimizer and learning-rate schedule
    per member; see :func:`~layer_sim.training.loop.fit` for the options), but each step runs the
    :math:`K` = ``len(models)`` members together. With parameters stacked as
    :math:`W_\ell \in \mathbb{R}^{K \times d_\ell \times d_{\ell-1}}`, member :math:`k`'s batch
    :math:`X^{(k)} \in \mathbb{R}^{B \times d_0}` (its own rows, drawn by its own generator)
    goes through

    .. math::

        H_\ell^{(k)} = \phi\bigl(H_{\ell-1}^{(k)} W_\ell^{(k)\top} + \mathbf{1} b_\ell^{(k)\top}\bigr)
        \quad \text{for all } k \text{ in one } \texttt{baddbmm},

    and the loss :math:`\sum_k \bar{L}^{(k)}` (sum of the members' mean cross-entropies) has
    gradient :math:`\partial \bar{L}^{(k)} / \partial W^{(k)}` with respect to member *k*'s block,
    because no member's loss depends on another's weights. SGD-momentum, Adam and coupled weight
    decay act elementwise, so ``torch.optim`` on the stacked tensors applies to each block exactly
    the per-member update (one param group for the hidden layers, one for the readout).

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
    train, test : (inputs, labels) tensors
        As for :func:`~layer_sim.training.loop.fit`; ``test`` may be None (test metrics are NaN).
    seeds : sequence of int
        One distinct shuffling/augmentation seed per model.
    optimizer, lr, momentum, readout_lr, weight_decay, batch_size, epochs, schedule, \
warmup_epochs, shift, progress
        As for :func:`~layer_sim.training.loop.fit`, shared by all members.
    device : str, torch.device or None, default=None
        Where to train; None = the device of the models' parameters.

    Returns
    -------
    list of FitResult
        Per member, the history :func:`~layer_sim.training.loop.fit` would return; ``seconds`` is the
        wall time of the whole ensemble. ``train_loss`` and ``train_accuracy`` are computed from
        the same batches, and test metrics by :func:`~layer_sim.training.loop.evaluate` on each member.

    Raises
    ------
    ConfigError
        No models, models that are not MLPs of one config/dtype/device or repeat an object,
        ``len(seeds) != len(models)``, repeated seeds, or invalid hyperparameters.
    InputError
        Bad ``train``/``test`` data (see :func:`~layer_sim.training.loop.fit`).

    Notes
    -----
    Callbacks are not supported: a per-batch hook would need one model object per member,
    which is what batching avoids. Train sequentially with :func:`~layer_sim.training.loop.fit` when
    per-batch callbacks are needed.

    Examples
    --------
    >>> import torch
    >>> from layer_sim.models import MLP
    >>> x, y = torch.rand(64, 1, 4, 4), torch.randint(0, 3, (64,))
    >>> nets = [MLP((16, 8, 3), seed=s) for s in (0, 1)]
    >>> results = fit_ensemble(nets, (x, y), seeds=(0, 1), epochs=1, batch_size=16)
    >>> len(results), results[0].history[0]["epoch"]
    (2, 1)
    """
    _check_hparams(optimizer=optimizer, lr=lr, momentum=momentum, readout_lr=readout_lr,
                   weight_decay=weight_decay, batch_size=batch_size, epochs=epochs,
                   schedule=schedule, warmup_epochs=warmup_epochs, shift=shift)  # fmt: skip
    models, seeds = _check_members(models, seeds)
    if device is None:
        device = next(models[0].parameters()).device
    device = torch.device(device)
    for m in models:
        m.to(device)
    x_train, y_train = _check_data(train, "train", shift=shift)
    x_train, y_train = x_train.to(device), y_train.to(device)
    if test is not None:
        x_test, y_test = _check_data(test, "test", shift=0)
        x_test, y_test = x_test.to(device), y_test.to(device)
    d_in, dtype = models[0].widths[0], next(models[0].parameters()).dtype
    for name, x in (("train", x_train), ("test", None if test is None else x_test)):
        if x is not None and x.dtype != dtype:
            raise InputError(f"fit_ensemble: {name} inputs are {x.dtype} but the models are {dtype}; cast one")
    if x_train[0].numel() != d_in:
        raise InputError(
            f"fit_ensemble: the MLPs take {d_in} values per example, train inputs have shape "
            f"{tuple(x_train.shape)}"
        )

    stack = _StackedMLP(models)
    opt = _make_stacked_optimizer(stack, optimizer=optimizer, lr=lr, momentum=momentum,
                                  readout_lr=readout_lr, weight_decay=weight_decay)  # fmt: skip
    n, k_members = len(x_train), len(models)
    steps_per_epoch = math.ceil(n / batch_size)
    total = steps_per_epoch * epochs
    warmup = round(warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, total=total, warmup=warmup, schedule=schedule)
    )
    # One private generator per member, drawn from in the same order as fit() draws from its
    # own: a permutation per epoch, then (with shift) one offset draw per batch.
    gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
    x_flat = x_train.reshape(n, -1)
    results = [FitResult() for _ in models]
    start = time.perf_counter()
    with _progress_bar(progress, total) as advance:
        for epoch in range(1, epochs + 1):
            orders = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
            loss_sum = torch.zeros(k_members, device=device, dtype=torch.float64)
            correct = torch.zeros(k_members, device=device, dtype=torch.int64)
            for i in range(steps_per_epoch):
                idx = orders[:, i * batch_size : (i + 1) * batch_size]  # (K, B)
                yb = y_train[idx]
                if shift:
                    xb = torch.stack([random_shift(x_train[j], shift, generator=g).reshape(len(j), -1)
                                      for j, g in zip(idx, gens)])  # fmt: skip
                else:
                    # index_select is a plain row gather, ~2x faster than x_flat[idx] on CPU.
                    xb = x_flat.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)  # (K, B, d_in)
                opt.zero_grad(set_to_none=True)
                out = stack(xb)  # (K, B, d_out)
                losses = nn.functional.cross_entropy(
                    out.reshape(-1, out.shape[-1]), yb.reshape(-1), reduction="none"
                ).view(k_members, -1).mean(dim=1)
                losses.sum().backward()
                opt.step()
                sched.step()
                loss_sum += losses.detach().double() * yb.shape[1]
                correct += (out.detach().argmax(2) == yb).sum(dim=1)
                advance()
            stack.write_back(models)
            tests = [evaluate(m, x_test, y_test) if test is not None else (math.nan,) * 2 for m in models]
            seconds = time.perf_counter() - start
            for res, ls, c, (test_loss, test_acc) in zip(results, loss_sum.tolist(), correct.tolist(), tests):
                res.history.append({
                    "epoch": epoch,
                    "train_loss": ls / n,
                    "train_accuracy": c / n,
                    "test_loss": test_loss,
                    "test_accuracy": test_acc,
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": seconds,
                })  # fmt: skip
    return results


def train_ensemble(
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    data,
    device=None,
    progress: bool | None = None,
) -> list[tuple[MLP, FitResult]]:
    """Batched counterpart of :func:`~layer_sim.training.loop.train_model` for several seeds.

    Member *k* is ``config.build_model(seed=seeds[k])`` trained with ``seed=seeds[k]`` and
    ``config.fit_kwargs()``, exactly as ``train_model(config, seed=seeds[k], data=data)``
    (to floating-point rounding; see :func:`fit_ensemble`).

    Parameters
    ----------
    config : TrainConfig
        Architecture and recipe; ``limit_train`` is applied to ``data``.
    seeds : sequence of int
        Distinct seeds, one per network (initial weights and data order).
    data : ((inputs, labels), (inputs, labels) or None)
        The ``(train, test)`` pairs, e.g. from :func:`~layer_sim.training.loop.load_data`.
    device, progress
        As for :func:`fit_ensemble`.

    Returns
    -------
    list of (MLP, FitResult)
        One trained network and its history per seed, in the order of ``seeds``.
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"train_ensemble: config must be a TrainConfig, got {type(config).__name__}")
    train, test = data
    if config.limit_train is not None:
        train = (train[0][: config.limit_train], train[1][: config.limit_train])
    _, seeds = _check_members(None, seeds)
    models = [config.build_model(seed=s) for s in seeds]
    results = fit_ensemble(models, train, test, seeds=seeds, device=device, progress=progress,
                           **config.fit_kwargs())  # fmt: skip
    return list(zip(models, results))


def train_or_load_ensemble(
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    cache_dir,
    data=None,
    data_dir=None,
    device=None,
    progress: bool | None = None,
) -> list[Checkpoint]:
    """:func:`~layer_sim.training.loop.train_or_load` for several seeds, training the missing ones together.

    Seeds whose checkpoint exists in :func:`~layer_sim.training.loop.checkpoint_dir` ``(cache_dir,
    config, seed)`` are loaded by :func:`~layer_sim.training.loop.train_or_load` (same reuse rules and
    errors); the others are trained in one :func:`train_ensemble` call and saved there with the
    metadata ``train_or_load`` writes, plus ``"trainer": "fit_ensemble"``. Later
    ``train_or_load`` calls reuse them. They equal sequentially trained networks to floating-point
    rounding, not bit for bit (see :func:`fit_ensemble`), which the ``trainer`` field records;
    ``train_seconds`` is the wall time of the whole ensemble.

    Parameters
    ----------
    config : TrainConfig
    seeds : sequence of int
        Distinct seeds.
    cache_dir : path-like
        Checkpoint cache shared with ``train_or_load``.
    data : ((inputs, labels), (inputs, labels)) or None, default=None
        ``(train, test)``; None loads MNIST from ``data_dir`` (only if something must be trained).
    data_dir, device, progress
        As for :func:`~layer_sim.training.loop.train_or_load`.

    Returns
    -------
    list of Checkpoint
        One ``(model, meta)`` per seed, in the order of ``seeds``; ``meta["reused"]`` says
        whether it came from disk.
    """
    _, seeds = _check_members(None, seeds)
    done = {s: (checkpoint_dir(cache_dir, config, s) / "meta.json").is_file() for s in seeds}
    missing = [s for s in seeds if not done[s]]
    if missing:
        if data is None:
            data = load_data(config, data_dir=data_dir)
        for seed, (model, result) in zip(missing, train_ensemble(config, missing, data=data, device=device,
                                                                 progress=progress)):  # fmt: skip
            meta = {
                "config": config.to_dict(),
                "config_key": config.key(),
                "seed": seed,
                "trainer": "fit_ensemble",
                "metrics": {"test_accuracy": result.test_accuracy, "train_seconds": result.seconds,
                            "history": result.history},  # fmt: skip
            }
            save_checkpoint(checkpoint_dir(cache_dir, config, seed), model, meta=meta)
    out = []
    for s in seeds:
        ckpt = train_or_load(config, s, cache_dir=cache_dir, device=device)
        out.append(Checkpoint(ckpt.model, ckpt.meta | {"reused": done[s]}))
    return out


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
    def write_back(self, models: Sequence[MLP]) -> None:
        """Copy member k's trained block into ``models[k]``."""
        for name, w, b in zip(self.linear_names, self.weights, self.biases):
            for k, m in enumerate(models):
                layer = m.get_submodule(name)
                layer.weight.copy_(w[k].T)
                layer.bias.copy_(b[k])


def _make_stacked_optimizer(stack: _StackedMLP, *, optimizer, lr, momentum, readout_lr, weight_decay):
    # Same groups and constructor arguments as train._make_optimizer, applied to stacked tensors.
    body, head = stack.parameter_groups()
    groups = [{"params": body, "lr": lr},
              {"params": head, "lr": lr if readout_lr is None else readout_lr}]  # fmt: skip
    groups = [g for g in groups if g["params"]]
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(groups, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


def _check_members(models, seeds) -> tuple[list[MLP] | None, list[int]]:
    """Validate seeds (and models, unless None); return them as lists."""
    try:
        seeds = list(seeds)
    except TypeError:
        raise ConfigError(f"fit_ensemble: seeds must be a sequence of integers, got {seeds!r}") from None
    if not seeds:
        raise ConfigError("fit_ensemble: need at least one seed, got none")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"fit_ensemble: seeds must be integers, got {seeds!r}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"fit_ensemble: seeds must be distinct (a repeated seed trains the same network twice), "
            f"got {repeated} more than once"
        )
    if models is None:
        return None, seeds
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
