r"""Tasks: data + targets + the loss that trains on them + the accuracy that scores them.

A :class:`Task` is what a trainer fits and what gradient extraction differentiates: nothing in
the package hard-codes a loss. Targets are always integer class labels ``0 .. num_classes - 1``;
a loss that needs another encoding (one-hot for MSE) derives it itself, so accuracy means the
same thing (``argmax(output) == label``) for every task.

A :class:`TaskSpec` names a task without holding its tensors (``"mnist"``, a loss, a training
subset), so it can key a cache; :data:`TASKS` maps each name to the function that builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from layer_sim._options import Choice, Int, Maybe, check, check_options, strict_signature
from layer_sim.errors import ConfigError, InputError, UnknownNameError

__all__ = [
    "Loss",
    "CrossEntropy",
    "MSEOneHot",
    "LOSSES",
    "get_loss",
    "Task",
    "TaskSpec",
    "TASKS",
    "mnist_task",
    "digit_pair_task",
    "accuracy",
]


class Loss:
    """A training objective on ``(output, labels)``.

    Subclasses define :meth:`per_example` (one value per example, shape ``(n,)``); the batch loss
    :meth:`__call__` is its mean, which is what ``nn.CrossEntropyLoss()`` and ``nn.MSELoss()``
    compute with their default ``reduction="mean"``, and :meth:`sum` its sum (what an
    evaluation accumulates over batches).
    """

    #: Registry name (what recipes, cache keys and stores record).
    name: str = ""

    def per_example(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.per_example(output, labels).mean()

    def sum(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.per_example(output, labels).sum()

    def __eq__(self, other) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropy(Loss):
    r""":math:`\ell_i = -\log \mathrm{softmax}(o_i)_{y_i}` (``nn.functional.cross_entropy``).

    The batch mean and sum use torch's fused reductions (``reduction="mean"|"sum"``): they equal
    ``per_example(...).mean()|.sum()`` up to the rounding of the sum, and are the arithmetic the
    trainer used before tasks existed, so recorded losses stay bit-for-bit the same.
    """

    name = "cross_entropy"

    def per_example(self, output, labels):
        return nn.functional.cross_entropy(output, labels, reduction="none")

    def __call__(self, output, labels):
        return nn.functional.cross_entropy(output, labels)

    def sum(self, output, labels):
        return nn.functional.cross_entropy(output, labels, reduction="sum")


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


@strict_signature
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


@strict_signature
@dataclass(frozen=True, eq=False)
class Task:
    """Inputs and integer labels for training and testing, with the loss to train on.

    Every field is checked when the task is made, so a trainer never starts on data it cannot
    use: labels int64 of shape ``(n,)`` in ``0 .. num_classes - 1``, as many inputs as labels
    (at least one), floating inputs free of NaN/Inf. A bad field raises :class:`InputError`
    (data) or :class:`ConfigError`/:class:`UnknownNameError` (name, classes, loss) naming it.

    Attributes
    ----------
    name : str
        What the data are, e.g. ``"mnist"`` or ``"mnist-pair-2-7"``.
    train, test : (inputs, labels)
        Tensors with examples along dimension 0; labels int64 in ``0 .. num_classes - 1``.
        ``test`` may be None.
    num_classes : int
        Number of classes (the model's output width), at least 2.
    loss : Loss or str
        The training objective, also the default objective of gradient extraction; a registry
        name (see :data:`LOSSES`) is replaced by its :class:`Loss`.

    Examples
    --------
    >>> import torch
    >>> x, y = torch.rand(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    >>> Task("toy", (x, y), None, 3, "mse_one_hot")
    Task('toy', train=6, test=0, num_classes=3, loss=MSEOneHot())
    >>> Task("toy", (x, y), None, 2, "cross_entropy")
    Traceback (most recent call last):
    layer_sim.errors.InputError: Task 'toy': train labels must lie in 0..1 (num_classes=2), found 0..2
    """

    name: str
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor] | None
    num_classes: int
    loss: Loss

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Task: name must be a non-empty string, got {self.name!r}")
        where = f"Task {self.name!r}"
        object.__setattr__(self, "num_classes", check(where, "num_classes", Int(2), self.num_classes))
        object.__setattr__(self, "loss", get_loss(self.loss))
        object.__setattr__(self, "train", _check_split(where, "train", self.train, self.num_classes))
        if self.test is not None:
            object.__setattr__(self, "test", _check_split(where, "test", self.test, self.num_classes))

    def __repr__(self) -> str:
        n_test = 0 if self.test is None else len(self.test[0])
        return (f"Task({self.name!r}, train={len(self.train[0])}, test={n_test}, "
                f"num_classes={self.num_classes}, loss={self.loss!r})")  # fmt: skip


def _check_split(where: str, split: str, data, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):  # fmt: skip
        raise InputError(f"{where}: {split} must be an (inputs, labels) pair of tensors, got {type(data).__name__}")
    x, y = data
    if y.dtype != torch.int64 or y.ndim != 1:
        raise InputError(
            f"{where}: {split} labels must be int64 class indices of shape (n,), got {y.dtype} of shape "
            f"{tuple(y.shape)} (losses such as mse_one_hot derive their targets from the labels)"
        )
    if x.ndim == 0 or len(x) != len(y) or len(y) == 0:
        raise InputError(f"{where}: {split} has {len(x) if x.ndim else 0} inputs but {len(y)} labels (need equal, > 0)")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise InputError(
            f"{where}: {split} labels must lie in 0..{num_classes - 1} (num_classes={num_classes}), "
            f"found {low}..{high}"
        )
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise InputError(f"{where}: {split} inputs contain {bad} NaN or infinite values")
    return x, y


# ----------------------------------------------------------------------------- named tasks


@strict_signature
def mnist_task(*, data_dir=None, limit_train: int | None = None, loss: str | Loss = "cross_entropy") -> Task:
    """MNIST digit classification (10 classes) as a :class:`Task`, from :func:`~layer_sim.data.load_mnist`.

    Parameters
    ----------
    data_dir : path-like or None, default=None
        Where the IDX files are (see :func:`~layer_sim.data.load_mnist`).
    limit_train : int or None, default=None
        Keep only the first ``limit_train`` of the 60,000 training examples (quick runs); the
        test split is always the full 10,000.
    loss : str or Loss, default="cross_entropy"
        ``"cross_entropy"`` or ``"mse_one_hot"`` (see :data:`LOSSES`).

    Returns
    -------
    Task
        ``name="mnist"``, images ``(n, 1, 28, 28)`` float32 in [0, 1], ``num_classes=10``.
    """
    from layer_sim.data.mnist import load_mnist

    limit_train = check("mnist_task", "limit_train", Maybe(Int(1)), limit_train)
    loss = get_loss(loss)
    x, y = load_mnist("train", data_dir)
    if limit_train is not None:
        if limit_train > len(x):
            raise ConfigError(f"mnist_task: limit_train={limit_train} exceeds the {len(x)} training examples")
        x, y = x[:limit_train], y[:limit_train]
    return Task("mnist", (x, y), load_mnist("test", data_dir), 10, loss)


@strict_signature
def digit_pair_task(a: int, b: int, *, data_dir=None, limit_train: int | None = None,
                    loss: str | Loss = "mse_one_hot") -> Task:
    """Two MNIST digits as a two-class :class:`Task`: label 0 for digit ``a``, 1 for digit ``b``.

    Train and test splits are :func:`~layer_sim.data.digit_pair` of each split (every image of
    the two digits, pixels in [0, 1]). The default loss is S2's: squared error against one-hot
    targets averaged as ``nn.MSELoss()`` does (``"mse_one_hot"``).

    Parameters
    ----------
    a, b : int in 0..9, a != b
    data_dir : path-like or None, default=None
        Where the IDX files are (see :func:`~layer_sim.data.load_mnist`).
    limit_train : int or None, default=None
        Keep only the first ``limit_train`` training images of the pair (quick runs); the test
        split is always complete.
    loss : str or Loss, default="mse_one_hot"

    Returns
    -------
    Task
        ``name="mnist-pair-<a>-<b>"``, images ``(n, 1, 28, 28)``, ``num_classes=2``.

    Examples
    --------
    >>> task = digit_pair_task(2, 7, limit_train=500)
    >>> task
    Task('mnist-pair-2-7', train=500, test=2060, num_classes=2, loss=MSEOneHot())
    """
    from layer_sim.data.mnist import digit_pair

    limit_train = check("digit_pair_task", "limit_train", Maybe(Int(1)), limit_train)
    loss = get_loss(loss)
    x, y = digit_pair(a, b, "train", data_dir)
    if limit_train is not None:
        if limit_train > len(x):
            raise ConfigError(f"digit_pair_task: limit_train={limit_train} exceeds the {len(x)} training images of "
                              f"digits {a} and {b}")
        x, y = x[:limit_train], y[:limit_train]
    return Task(f"mnist-pair-{a}-{b}", (x, y), digit_pair(a, b, "test", data_dir), 2, loss)


#: Task builders by name: ``TASKS[name](data_dir=..., limit_train=..., loss=...)`` returns a :class:`Task`.
TASKS: dict[str, Callable[..., Task]] = {"mnist": mnist_task}


@strict_signature
@dataclass(frozen=True)
class TaskSpec:
    """What names a task without its tensors: a builder in :data:`TASKS`, a loss, a training subset.

    Frozen and hashable, so it can be part of a cache key; :meth:`build` makes the :class:`Task`.

    Attributes
    ----------
    name : str, default="mnist"
        A key of :data:`TASKS`.
    loss : str, default="cross_entropy"
        A key of :data:`LOSSES`.
    limit_train : int or None, default=None
        Train on the first ``limit_train`` training examples only (None: all).

    Examples
    --------
    >>> TaskSpec(loss="mse_one_hot").to_dict()
    {'name': 'mnist', 'loss': 'mse_one_hot', 'limit_train': None}
    """

    name: str = "mnist"
    loss: str = "cross_entropy"
    limit_train: int | None = None

    def __post_init__(self) -> None:
        for name, value in check_options("TaskSpec", self._declared(), self.to_dict()).items():
            object.__setattr__(self, name, value)

    @staticmethod
    def _declared():
        # Built when used: tasks registered in TASKS after import are valid names too.
        return {"name": Choice(*TASKS), "loss": Choice(*LOSSES), "limit_train": Maybe(Int(1))}

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        """Inverse of :meth:`to_dict`; an unknown key is an :class:`UnknownNameError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"TaskSpec.from_dict: expected a dict, got {type(d).__name__}")
        return cls(**check_options("TaskSpec.from_dict", cls._declared(), d))

    def build(self, *, data_dir=None) -> Task:
        """The :class:`Task` this spec names (MNIST is read from ``data_dir``, see :func:`mnist_task`)."""
        return TASKS[self.name](data_dir=data_dir, limit_train=self.limit_train, loss=self.loss)

