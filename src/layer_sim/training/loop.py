"""Deterministic minibatch training of classifiers, with callbacks, checkpoints and a keyed cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from layer_sim._io import atomic_write
from layer_sim.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from layer_sim.errors import ConfigError, InputError
from layer_sim.models import DEFAULT_WIDTHS, MLP

if TYPE_CHECKING:
    from layer_sim.analysis.stats import SeedSummary

__all__ = [
    "TrainConfig",
    "DEFAULT_CONFIG",
    "TrainState",
    "Callback",
    "FitResult",
    "fit",
    "evaluate",
    "random_shift",
    "train_model",
    "train_or_load",
    "checkpoint_dir",
    "load_data",
    "parse_seeds",
    "train_seeds",
    "SeedsResult",
]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained network apart from its seed.

    Two configs with equal fields give bit-identical networks for the same seed on CPU; the
    :meth:`key` of a config names its checkpoints in the cache of :func:`train_or_load`.
    The model fields are :class:`~layer_sim.models.MLP` arguments, the rest :func:`fit`
    arguments; ``limit_train`` keeps only the first *n* training examples (``None`` = all 60,000).
    """

    widths: tuple[int, ...] = DEFAULT_WIDTHS
    activation: str = "relu"
    skip: bool = False
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    readout_lr: float | None = None
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 10
    schedule: str = "cosine"
    warmup_epochs: float = 0.5
    shift: int = 0
    limit_train: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields (``widths`` as a list)."""
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"TrainConfig: unknown field(s) {unknown}; valid fields are {sorted(names)}")
        return cls(**d)

    def key(self) -> str:
        """12 hex digits of the SHA-256 of the canonical JSON of :meth:`to_dict`."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:12]

    def build_model(self, *, seed: int) -> MLP:
        """The untrained :class:`MLP` of this config, initialised from ``seed``."""
        return MLP(self.widths, activation=self.activation, skip=self.skip, seed=seed)

    def fit_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`fit` that this config fixes."""
        names = ("optimizer", "lr", "momentum", "readout_lr", "weight_decay", "batch_size", "epochs",
                 "schedule", "warmup_epochs", "shift")  # fmt: skip
        return {n: getattr(self, n) for n in names}


#: The default network and recipe (see the README for measured accuracy and time).
DEFAULT_CONFIG = TrainConfig()


# ----------------------------------------------------------------------------- callbacks


@dataclass
class TrainState:
    """What a callback sees.

    After a batch: ``inputs``/``targets`` are the (augmented) batch, ``outputs`` the detached
    logits, ``loss`` the detached mean cross-entropy; parameters have just been updated by
    ``optimizer.step()`` and their ``.grad`` still hold this batch's gradients.
    After an epoch: ``metrics`` holds that epoch's row of :attr:`FitResult.history` and the
    batch fields are those of the epoch's last batch.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int  # 1-based: the epoch in progress (batch end) or just finished (epoch end)
    step: int  # number of optimizer steps taken so far
    inputs: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    outputs: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    metrics: dict[str, float] | None = None


class Callback:
    """Base class of training callbacks; override either hook. Both default to doing nothing."""

    def on_batch_end(self, state: TrainState) -> None:
        """Called after every optimizer step."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after every epoch, once test metrics are computed."""


@dataclass
class FitResult:
    """Outcome of :func:`fit`: one history row per epoch and the final test accuracy.

    Each row has ``epoch, train_loss, train_accuracy, test_loss, test_accuracy, lr, seconds``
    (``lr`` = base learning rate at the end of the epoch, ``seconds`` = cumulative wall time).
    """

    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]["test_accuracy"] if self.history else math.nan

    @property
    def seconds(self) -> float:
        return self.history[-1]["seconds"] if self.history else 0.0


# ----------------------------------------------------------------------------- training


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
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
    seed: int = 0,
    device: str | torch.device | None = None,
    callbacks: Iterable[Callback] = (),
    progress: bool | None = None,
) -> FitResult:
    r"""Train ``model`` in place by minibatch gradient descent on the cross-entropy loss.

    Every epoch visits the training set once in an order drawn from a private
    :class:`torch.Generator` seeded with ``seed``; the same generator draws the augmentation
    shifts. With the same initial weights, data and arguments, two calls on CPU give
    bit-identical weights; the global RNG is not used.

    The learning rate of step :math:`s` out of :math:`S`, with :math:`W` warm-up steps, is
    :math:`\eta_s = \eta \, s / W` for :math:`s < W`, then for ``schedule="cosine"``
    :math:`\eta_s = \tfrac{\eta}{2}\bigl(1 + \cos(\pi (s - W) / (S - W))\bigr)`
    (Loshchilov & Hutter, 2017) and :math:`\eta_s = \eta` for ``"constant"``.
    The readout (last Linear layer) follows the same schedule from ``readout_lr``.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier mapping a batch of inputs to logits. Its readout is ``model.readout`` if it
        has one, else its last :class:`~torch.nn.Linear`.
    train, test : (inputs, labels) tensors
        Inputs of shape ``(n, ...)`` and int64 labels of shape ``(n,)``. ``test`` may be None
        (then test metrics are NaN).
    optimizer : {"sgd", "adam"}, default="sgd"
        SGD with (heavy-ball) momentum, or Adam with :math:`\beta_1` = ``momentum``,
        :math:`\beta_2 = 0.999` (Kingma & Ba, 2015).
    lr : float, default=0.05
        Peak learning rate of all layers but the readout.
    momentum : float in [0, 1), default=0.9
    readout_lr : float or None, default=None
        Peak learning rate of the readout; None = ``lr``.
    weight_decay : float, default=0.0
        L2 penalty coefficient on all parameters (coupled, as in ``torch.optim``).
    batch_size : int, default=128
    epochs : int, default=10
    schedule : {"cosine", "constant"}, default="cosine"
    warmup_epochs : float, default=0.0
        Length of the linear warm-up, in epochs.
    shift : int, default=0
        Data augmentation: translate each training image by a uniform random integer offset in
        :math:`[-\text{shift}, \text{shift}]^2` pixels (zero fill); 0 disables it. Needs inputs of
        shape ``(n, C, H, W)``.
    seed : int, default=0
        Seeds shuffling and augmentation (not the initial weights; see ``MLP(seed=...)``).
    device : str, torch.device or None, default=None
        Where to train; None = the device of the model's parameters. Data are moved there once.
    callbacks : iterable of Callback
        ``on_batch_end(state)`` after every step, ``on_epoch_end(state)`` after every epoch,
        with a :class:`TrainState`.
    progress : bool or None, default=None
        Show a progress bar; None = only when stderr is a terminal.

    Returns
    -------
    FitResult
        Per-epoch history; ``.test_accuracy`` is the final test accuracy.

    Raises
    ------
    ConfigError
        For invalid hyperparameters.
    InputError
        If inputs and labels disagree in length, or ``shift > 0`` with non-image inputs.

    References
    ----------
    I. Loshchilov, F. Hutter. SGDR: Stochastic gradient descent with warm restarts. ICLR 2017.
    D. P. Kingma, J. Ba. Adam: A method for stochastic optimization. ICLR 2015.
    """
    _check_hparams(optimizer=optimizer, lr=lr, momentum=momentum, readout_lr=readout_lr,
                   weight_decay=weight_decay, batch_size=batch_size, epochs=epochs,
                   schedule=schedule, warmup_epochs=warmup_epochs, shift=shift)  # fmt: skip
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    model.to(device)
    x_train, y_train = _check_data(train, "train", shift=shift)
    x_train, y_train = x_train.to(device), y_train.to(device)
    if test is not None:
        x_test, y_test = _check_data(test, "test", shift=0)
        x_test, y_test = x_test.to(device), y_test.to(device)

    opt = _make_optimizer(model, optimizer=optimizer, lr=lr, momentum=momentum,
                          readout_lr=readout_lr, weight_decay=weight_decay)  # fmt: skip
    n = len(x_train)
    steps_per_epoch = math.ceil(n / batch_size)
    total = steps_per_epoch * epochs
    warmup = round(warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, total=total, warmup=warmup, schedule=schedule)
    )
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    # Duck typing: an object may implement only one of the two hooks.
    callbacks = tuple(callbacks)
    batch_hooks = [cb.on_batch_end for cb in callbacks if hasattr(cb, "on_batch_end")]
    epoch_hooks = [cb.on_epoch_end for cb in callbacks if hasattr(cb, "on_epoch_end")]
    loss_fn = nn.CrossEntropyLoss()
    result = FitResult()
    start = time.perf_counter()
    step = 0
    with _progress_bar(progress, total) as advance:
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen).to(device)
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            for i in range(steps_per_epoch):
                idx = order[i * batch_size : (i + 1) * batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if shift:
                    xb = random_shift(xb, shift, generator=gen)
                opt.zero_grad(set_to_none=True)
                out = model(xb)
                loss = loss_fn(out, yb)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                out, loss = out.detach(), loss.detach()
                loss_sum += loss.double() * len(yb)
                correct += (out.argmax(1) == yb).sum()
                state = TrainState(model=model, optimizer=opt, epoch=epoch, step=step,
                                   inputs=xb, targets=yb, outputs=out, loss=loss)  # fmt: skip
                for hook in batch_hooks:
                    hook(state)
                advance()
            test_loss, test_acc = evaluate(model, x_test, y_test) if test is not None else (math.nan,) * 2
            row = {
                "epoch": epoch,
                "train_loss": float(loss_sum) / n,
                "train_accuracy": int(correct) / n,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - start,
            }
            result.history.append(row)
            state.metrics = row
            for hook in epoch_hooks:
                hook(state)
    return result


@torch.no_grad()
def evaluate(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1000
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(inputs, labels)``, in eval mode.

    The model's train/eval mode is restored afterwards. Inputs are moved to the model's device
    batch by batch.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct = 0.0, 0
    try:
        for i in range(0, len(inputs), batch_size):
            xb = inputs[i : i + batch_size].to(device)
            yb = labels[i : i + batch_size].to(device)
            out = model(xb)
            loss_sum += float(nn.functional.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    return loss_sum / len(inputs), correct / len(inputs)


def random_shift(x: torch.Tensor, max_shift: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Translate each image of ``x`` (shape ``(n, C, H, W)``) by its own random offset.

    Offsets :math:`(d_y, d_x)` are uniform integers in :math:`[-m, m]^2` drawn on CPU from
    ``generator``; output pixel :math:`(i, j)` is input pixel :math:`(i - d_y, j - d_x)`, or 0
    when that falls outside the image.
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


def _lr_factor(step: int, *, total: int, warmup: int, schedule: str) -> float:
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _make_optimizer(model, *, optimizer, lr, momentum, readout_lr, weight_decay):
    readout = getattr(model, "readout", None)
    if not isinstance(readout, nn.Module):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError("fit: the model has no Linear layer to serve as readout")
        readout = linears[-1]
    head = {id(p) for p in readout.parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in head], "lr": lr},
        {"params": list(readout.parameters()), "lr": lr if readout_lr is None else readout_lr},
    ]
    groups = [g for g in groups if g["params"]]
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(groups, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


def _check_hparams(*, optimizer, lr, momentum, readout_lr, weight_decay, batch_size, epochs,
                   schedule, warmup_epochs, shift) -> None:  # fmt: skip
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"fit: unknown optimizer {optimizer!r}; choose one of {list(OPTIMIZERS)}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"fit: unknown schedule {schedule!r}; choose one of {list(SCHEDULES)}")
    for name, value in (("lr", lr), ("readout_lr", lr if readout_lr is None else readout_lr)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"fit: {name} must be a positive finite number, got {value!r}")
    if not 0 <= momentum < 1:
        raise ConfigError(f"fit: momentum must be in [0, 1), got {momentum!r}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ConfigError(f"fit: weight_decay must be >= 0, got {weight_decay!r}")
    for name, value, low in (("batch_size", batch_size, 1), ("epochs", epochs, 1), ("shift", shift, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"fit: {name} must be an integer >= {low}, got {value!r}")
    if not (math.isfinite(warmup_epochs) and 0 <= warmup_epochs <= epochs):
        raise ConfigError(f"fit: warmup_epochs must be in [0, epochs={epochs}], got {warmup_epochs!r}")


def _check_data(data, name: str, *, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        x, y = data
    except (TypeError, ValueError) as exc:
        raise InputError(f"fit: {name} must be an (inputs, labels) pair of tensors") from exc
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise InputError(f"fit: {name} must be an (inputs, labels) pair of tensors")
    if len(x) != len(y) or len(x) == 0:
        raise InputError(f"fit: {name} has {len(x)} inputs but {len(y)} labels (need equal, > 0)")
    if y.dtype != torch.int64 or y.ndim != 1:
        raise InputError(f"fit: {name} labels must be int64 of shape (n,), got {y.dtype} {tuple(y.shape)}")
    if shift and x.ndim != 4:
        raise InputError(f"fit: shift={shift} needs images of shape (n, C, H, W), got {tuple(x.shape)}")
    return x, y


class _progress_bar:
    """Context manager yielding an ``advance()`` callable; a rich bar only on a terminal."""

    def __init__(self, enabled: bool | None, total: int) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.total = total

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress("training", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             transient=True)  # fmt: skip
        self._bar.start()
        task = self._bar.add_task("fit", total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._bar.stop()


# ----------------------------------------------------------------------------- whole recipes


def load_data(
    config: TrainConfig, *, data_dir=None
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """MNIST (train, test) as used by ``config`` (``limit_train`` applied)."""
    from layer_sim.data import load_mnist

    train = load_mnist("train", data_dir)
    test = load_mnist("test", data_dir)
    if config.limit_train is not None:
        train = (train[0][: config.limit_train], train[1][: config.limit_train])
    return train, test


def train_model(
    config: TrainConfig = DEFAULT_CONFIG,
    *,
    seed: int,
    data=None,
    data_dir=None,
    device=None,
    callbacks: Iterable[Callback] = (),
    progress: bool | None = None,
) -> tuple[MLP, FitResult]:
    """Build ``config``'s MLP from ``seed`` and :func:`fit` it on MNIST with the same seed.

    ``data`` = ``(train, test)`` pairs skips loading (``limit_train`` is still applied).
    """
    if data is None:
        train, test = load_data(config, data_dir=data_dir)
    else:
        train, test = data
        if config.limit_train is not None:
            train = (train[0][: config.limit_train], train[1][: config.limit_train])
    model = config.build_model(seed=seed)
    result = fit(model, train, test, seed=seed, device=device, callbacks=callbacks, progress=progress,
                 **config.fit_kwargs())  # fmt: skip
    return model, result


def checkpoint_dir(cache_dir, config: TrainConfig, seed: int) -> Path:
    """``cache_dir / <config.key()> / seed-<seed>``: where :func:`train_or_load` keeps a network."""
    return Path(cache_dir) / config.key() / f"seed-{int(seed)}"


def train_or_load(
    config: TrainConfig = DEFAULT_CONFIG,
    seed: int = 0,
    *,
    cache_dir=None,
    directory=None,
    data=None,
    data_dir=None,
    device=None,
    progress: bool | None = None,
) -> Checkpoint:
    """The network of ``(config, seed)``: loaded from its checkpoint if present, else trained and saved.

    Give exactly one of ``cache_dir`` (the checkpoint lives in
    :func:`checkpoint_dir` ``(cache_dir, config, seed)``, so any number of configs share a cache)
    or ``directory`` (the checkpoint directory itself). A checkpoint is reused only if its
    metadata has the same config key and seed; a ``directory`` holding a different network is a
    :class:`ConfigError` rather than being overwritten.

    Returns
    -------
    Checkpoint
        ``(model, meta)``; ``meta["metrics"]["test_accuracy"]`` is the final test accuracy and
        ``meta["reused"]`` says whether it came from disk.
    """
    if (cache_dir is None) == (directory is None):
        raise ConfigError("train_or_load: give exactly one of cache_dir= or directory=")
    path = checkpoint_dir(cache_dir, config, seed) if directory is None else Path(directory)
    if (path / "meta.json").is_file():
        ckpt = load_checkpoint(path, map_location=device)
        if ckpt.meta.get("config_key") == config.key() and ckpt.meta.get("seed") == seed:
            ckpt.meta["reused"] = True
            return ckpt
        raise ConfigError(
            f"train_or_load: {path} holds a checkpoint of another config/seed "
            f"(key {ckpt.meta.get('config_key')}, seed {ckpt.meta.get('seed')}; wanted key "
            f"{config.key()}, seed {seed}); choose another directory or delete it"
        )
    model, result = train_model(config, seed=seed, data=data, data_dir=data_dir, device=device,
                                progress=progress)  # fmt: skip
    meta = {
        "config": config.to_dict(),
        "config_key": config.key(),
        "seed": seed,
        "metrics": {"test_accuracy": result.test_accuracy, "train_seconds": result.seconds,
                    "history": result.history},  # fmt: skip
    }
    save_checkpoint(path, model, meta=meta)
    # Same state as a reused checkpoint: eval mode, metadata as stored on disk.
    return Checkpoint(model.eval(), load_checkpoint(path).meta | {"reused": False})


def parse_seeds(spec: str | Sequence[int]) -> list[int]:
    """Seeds from ``"0-4"`` (inclusive range), ``"0,2,5"``, a mix ``"0-2,7"``, or a list of ints."""
    if not isinstance(spec, str):
        seeds = [int(s) for s in spec]
    else:
        seeds = []
        for part in spec.replace(" ", "").split(","):
            try:
                if "-" in part[1:]:
                    lo, hi = part.split("-", 1) if not part.startswith("-") else (None, None)
                    lo, hi = int(lo), int(hi)
                    if hi < lo:
                        raise ValueError
                    seeds.extend(range(lo, hi + 1))
                else:
                    seeds.append(int(part))
            except (TypeError, ValueError):
                raise ConfigError(
                    f"seeds: cannot parse {part!r} in {spec!r}; use a range like 0-4 or a list like 0,2,5"
                ) from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: need distinct non-negative seeds, got {spec!r}")
    return seeds


@dataclass
class SeedsResult:
    """Outcome of :func:`train_seeds`: per-seed accuracy and time, and the across-seed statistics."""

    config: TrainConfig
    seeds: list[int]
    test_accuracy: list[float]
    train_seconds: list[float]
    reused: list[bool]
    summary: SeedSummary | None  # None when all accuracies are equal (e.g. one seed): no t-test

    def to_dict(self) -> dict[str, Any]:
        """The content of ``summary.json``: per-seed lists, config, and the summary's fields."""
        d: dict[str, Any] = {
            "seeds": self.seeds,
            "test_accuracy": self.test_accuracy,
            "train_seconds": self.train_seconds,
            "reused": self.reused,
            "config": self.config.to_dict(),
            "config_key": self.config.key(),
        }
        stats = self.summary.to_dict() if self.summary is not None else {}
        stats.pop("values", None)  # already stored as test_accuracy
        for name in ("mean", "std", "ci_low", "ci_high", "confidence", "threshold", "t", "df", "p_value"):
            d[name] = stats.get(name)
        return d


def train_seeds(
    seeds: Sequence[int] | str,
    *,
    output,
    config: TrainConfig = DEFAULT_CONFIG,
    threshold: float = 0.98,
    data_dir=None,
    device=None,
    progress: bool | None = None,
    log=None,
) -> SeedsResult:
    r"""Train (or reuse) ``config``'s network for every seed and test mean accuracy > ``threshold``.

    Checkpoints go to ``output/seed-<k>/`` (reused by :func:`train_or_load` when they match
    ``config`` and the seed), the summary to ``output/summary.json``. The statistics are those
    of :func:`layer_sim.analysis.stats.summarize`: mean, std, 95% t interval and the one-sided one-sample
    t-test of :math:`H_0\colon \mu \le` ``threshold``.

    Parameters
    ----------
    seeds : sequence of int or str
        Seeds, or a spec for :func:`parse_seeds` such as ``"0-4"``.
    output : path-like
        Output directory (created if needed).
    config : TrainConfig, default=DEFAULT_CONFIG
    threshold : float, default=0.98
    data_dir, device, progress
        As in :func:`train_or_load`.
    log : callable or None
        Called with one line of text per finished seed.

    Returns
    -------
    SeedsResult
    """
    from layer_sim.analysis.stats import summarize  # scipy: imported only when needed

    seeds = parse_seeds(seeds)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    data = load_data(config, data_dir=data_dir)
    accs, secs, reused = [], [], []
    for seed in seeds:
        start = time.perf_counter()
        ckpt = train_or_load(config, seed, directory=output / f"seed-{seed}", data=data, device=device,
                             progress=progress)  # fmt: skip
        accs.append(float(ckpt.meta["metrics"]["test_accuracy"]))
        secs.append(float(ckpt.meta["metrics"]["train_seconds"]))
        reused.append(bool(ckpt.meta["reused"]))
        if log is not None:
            how = "reused" if reused[-1] else f"trained in {time.perf_counter() - start:.0f} s"
            log(f"seed {seed}: test accuracy {accs[-1]:.4f} ({how})")
    # A t-test needs two differing values; report None rather than failing after training.
    summary = summarize(accs, threshold=threshold) if len(set(accs)) > 1 else None
    result = SeedsResult(config, seeds, accs, secs, reused, summary)
    text = json.dumps(result.to_dict(), indent=2)
    atomic_write(output / "summary.json", lambda fh: fh.write(text.encode()))
    return result
