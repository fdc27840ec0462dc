r"""The training recipe: the ten hyperparameters shared by :func:`fit` and :func:`fit_ensemble`.

A :class:`Recipe` is frozen, validated when made (with :mod:`layer_sim._options`) and hashable,
so it can key a cache or a results store. It also owns the learning-rate schedule
(:meth:`Recipe.lr_factor`); a new schedule is one more entry in :data:`SCHEDULES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from layer_sim._options import Choice, Int, Maybe, Real, check_options, strict_signature
from layer_sim.errors import ConfigError

__all__ = ["Recipe", "DEFAULT_RECIPE", "OPTIMIZERS", "SCHEDULES", "DECLARED"]

#: Optimizers by name: SGD with heavy-ball momentum, or Adam with beta1 = momentum.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")


def _cosine(t: int, span: int) -> float:
    # t steps after the warm-up out of span; min() keeps the last step's factor at 0, not below.
    progress = t / max(1, span)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _constant(t: int, span: int) -> float:
    return 1.0


#: Learning-rate schedules after the warm-up: ``f(t, span)`` for step ``t`` of ``span`` post-warm-up steps.
SCHEDULES: dict[str, Callable[[int, int], float]] = {"cosine": _cosine, "constant": _constant}

#: How each field is checked (one entry per field).
DECLARED = {
    "optimizer": Choice(*OPTIMIZERS),
    "lr": Real(0, None, low_open=True, high_open=True),
    "momentum": Real(0, 1, high_open=True),
    "readout_lr": Maybe(Real(0, None, low_open=True, high_open=True)),
    "weight_decay": Real(0, None, high_open=True),
    "batch_size": Int(1),
    "epochs": Int(1),
    "schedule": Choice(*SCHEDULES),
    "warmup_epochs": Real(0, None, high_open=True),
    "shift": Int(0),
}


@strict_signature
@dataclass(frozen=True)
class Recipe:
    r"""How a network is trained, apart from its seed: optimizer, learning rates, schedule, batches.

    The defaults are the default network's recipe (> 98 % MNIST test accuracy for the default
    MLP; see the README).

    The learning rate of optimizer step :math:`s = 0, 1, \dots, S - 1` (:math:`S` = steps per
    epoch × ``epochs``, :math:`W` = round(``warmup_epochs`` × steps per epoch)) is
    :math:`\eta_s = \eta \, f_s` with :math:`f_s = (s + 1) / W` for :math:`s < W`, then for
    ``"cosine"`` :math:`f_s = \tfrac{1}{2}\bigl(1 + \cos(\pi \min(1, (s - W) / \max(1, S - W)))\bigr)`
    (Loshchilov & Hutter, 2017) and :math:`f_s = 1` for ``"constant"``. The readout follows the
    same factor from ``readout_lr``.

    Attributes
    ----------
    optimizer : {"sgd", "adam"}, default="sgd"
        SGD with (heavy-ball) momentum, or Adam with :math:`\beta_1` = ``momentum``,
        :math:`\beta_2 = 0.999` (Kingma & Ba, 2015).
    lr : float > 0, default=0.05
        Peak learning rate of every layer but the readout.
    momentum : float in [0, 1), default=0.9
    readout_lr : float > 0 or None, default=None
        Peak learning rate of the readout (the model's ``readout`` or last Linear); None = ``lr``.
    weight_decay : float >= 0, default=5e-4
        L2 penalty on all parameters, coupled as in ``torch.optim``.
    batch_size : int >= 1, default=128
        The last batch of an epoch holds the remainder.
    epochs : int >= 1, default=10
    schedule : {"cosine", "constant"}, default="cosine"
    warmup_epochs : float in [0, epochs], default=0.5
        Length of the linear warm-up, in epochs.
    shift : int >= 0, default=0
        Augmentation: translate each training image by a uniform random integer offset in
        :math:`[-\text{shift}, \text{shift}]^2` pixels (zero fill); 0 disables it. Needs inputs of
        shape ``(n, C, H, W)``.

    Raises
    ------
    UnknownNameError
        An unknown ``optimizer`` or ``schedule`` (or an unknown key in :meth:`from_dict`).
    ConfigError
        A value of the wrong type or outside its range.

    References
    ----------
    I. Loshchilov, F. Hutter. SGDR: Stochastic gradient descent with warm restarts. ICLR 2017.
    D. P. Kingma, J. Ba. Adam: A method for stochastic optimization. ICLR 2015.

    Examples
    --------
    >>> r = Recipe(epochs=2, warmup_epochs=0, schedule="constant")
    >>> r.lr, r.batch_size, r == Recipe.from_dict(r.to_dict())
    (0.05, 128, True)
    >>> [r.lr_factor(s, steps_per_epoch=4) for s in (0, 7)]
    [1.0, 1.0]
    >>> Recipe(lr=0)
    Traceback (most recent call last):
    layer_sim.errors.ConfigError: Recipe: lr must be a finite number in (0, inf), got 0.0
    """

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

    def __post_init__(self) -> None:
        # Only the declared fields: every field has a declaration (a test holds that), and a
        # subclass adding one validates its own.
        for name, value in check_options("Recipe", DECLARED, {n: getattr(self, n) for n in DECLARED}).items():
            object.__setattr__(self, name, value)
        if self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"Recipe: warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        """Inverse of :meth:`to_dict`; an unknown key is an :class:`UnknownNameError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"Recipe.from_dict: expected a dict, got {type(d).__name__}")
        return cls(**check_options("Recipe.from_dict", DECLARED, d))

    def lr_factor(self, step: int, *, steps_per_epoch: int) -> float:
        """The factor :math:`f_s` of the peak learning rates for optimizer step ``step`` (0-based)."""
        total = steps_per_epoch * self.epochs
        warmup = round(self.warmup_epochs * steps_per_epoch)
        if step < warmup:
            return (step + 1) / warmup
        return SCHEDULES[self.schedule](step - warmup, total - warmup)


#: The default network's recipe.
DEFAULT_RECIPE = Recipe()
