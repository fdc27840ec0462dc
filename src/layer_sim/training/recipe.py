r"""The training recipe: the hyperparameters shared by :func:`fit` and :func:`fit_ensemble`.

A :class:`Recipe` is frozen, validated when made (with :mod:`layer_sim._options`) and hashable,
so it can key a cache or a results store. It also owns the learning-rate schedule
(:meth:`Recipe.lr_factor`); a new schedule is one more entry in :data:`SCHEDULES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from layer_sim._options import Ascending, Choice, Int, Maybe, Real, check_options, strict_signature
from layer_sim.errors import ConfigError

__all__ = ["Recipe", "DEFAULT_RECIPE", "S1_RECIPE", "OPTIMIZERS", "SCHEDULES", "DECLARED"]

DEFAULT_GAMMA = 0.1

#: Optimizers by name: SGD with heavy-ball momentum, or Adam with beta1 = momentum.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")


def _cosine(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    total, warmup = recipe.epochs * steps_per_epoch, recipe.warmup_steps(steps_per_epoch)
    # min() keeps the factor after the last step at 0, not rising again.
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _constant(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    return 1.0


def _step(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    # Epochs finished before this step; the rate drops once per milestone already passed.
    done = step // steps_per_epoch
    return recipe.gamma ** sum(1 for m in recipe.milestones if done >= m)


#: Learning-rate schedules after the warm-up: ``f(recipe, step, steps_per_epoch)`` is the factor
#: of the peak rates for optimizer step ``step`` (0-based, counted from the start of training).
SCHEDULES: dict[str, Callable[[Recipe, int, int], float]] = {"cosine": _cosine, "constant": _constant, "step": _step}

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
    "milestones": Ascending(Int(1)),
    "gamma": Real(0, 1, low_open=True, high_open=True),
    "clip_norm": Maybe(Real(0, None, low_open=True, high_open=True)),
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
    (Loshchilov & Hutter, 2017), :math:`f_s = 1` for ``"constant"``, and for ``"step"``
    :math:`f_s = \gamma^{\#\{m \in \text{milestones} \,:\, \lfloor s / \text{steps per epoch} \rfloor \ge m\}}`:
    the rate is multiplied by ``gamma`` after each milestone epoch (step annealing; torch's
    ``MultiStepLR`` convention, milestones counted in finished epochs). The readout follows the
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
    schedule : {"cosine", "constant", "step"}, default="cosine"
    warmup_epochs : float in [0, epochs], default=0.5
        Length of the linear warm-up, in epochs.
    shift : int >= 0, default=0
        Augmentation: translate each training image by a uniform random integer offset in
        :math:`[-\text{shift}, \text{shift}]^2` pixels (zero fill); 0 disables it. Needs inputs of
        shape ``(n, C, H, W)``.
    milestones : tuple of int, default=()
        For ``schedule="step"`` only (and required there): strictly increasing epochs in
        ``[1, epochs - 1]`` after which the rate is multiplied by ``gamma``. ``(10, 12)`` with
        15 epochs trains epochs 1-10 at ``lr``, 11-12 at ``gamma * lr``, 13-15 at ``gamma**2 * lr``.
        (The original layer_sim anneals after its 0-based epoch index, one epoch later.)
    gamma : float in (0, 1), default=0.1
        The factor of each step (0.1 divides the rate by 10); for ``schedule="step"`` only.
    clip_norm : float > 0 or None, default=None
        If given, rescale each step's gradient (of all parameters together, after the backward
        pass and before the optimizer step) to Euclidean norm at most ``clip_norm``, as
        ``torch.nn.utils.clip_grad_norm_`` does (the original layer_sim clips at 1). None: no clipping.

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
    >>> step = Recipe(epochs=3, schedule="step", milestones=(1, 2), warmup_epochs=0)
    >>> [step.lr_factor(s, steps_per_epoch=2) for s in range(6)]
    [1.0, 1.0, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002]
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
    milestones: tuple[int, ...] = ()
    gamma: float = DEFAULT_GAMMA
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        # Only the declared fields: every field has a declaration (a test holds that), and a
        # subclass adding one validates its own.
        for name, value in check_options("Recipe", DECLARED, {n: getattr(self, n) for n in DECLARED}).items():
            object.__setattr__(self, name, value)
        if self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"Recipe: warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs!r}"
            )
        if self.schedule == "step":
            if not self.milestones or self.milestones[-1] >= self.epochs:
                raise ConfigError(
                    f"Recipe: schedule='step' needs milestones in [1, epochs - 1 = {self.epochs - 1}] (epochs after "
                    f"which the rate is multiplied by gamma), got {list(self.milestones)}"
                )
        elif self.milestones or self.gamma != DEFAULT_GAMMA:
            # They would change the cache key without changing the training.
            raise ConfigError(
                f"Recipe: milestones and gamma apply only to schedule='step', got schedule={self.schedule!r} with "
                f"milestones={list(self.milestones)}, gamma={self.gamma!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict (``milestones`` as a list, as JSON gives it back)."""
        return {**asdict(self), "milestones": list(self.milestones)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        """Inverse of :meth:`to_dict`; an unknown key is an :class:`UnknownNameError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"Recipe.from_dict: expected a dict, got {type(d).__name__}")
        return cls(**check_options("Recipe.from_dict", DECLARED, d))

    def warmup_steps(self, steps_per_epoch: int) -> int:
        """:math:`W` = round(``warmup_epochs`` × steps per epoch), the number of warm-up steps."""
        return round(self.warmup_epochs * steps_per_epoch)

    def lr_factor(self, step: int, *, steps_per_epoch: int) -> float:
        """The factor :math:`f_s` of the peak learning rates for optimizer step ``step`` (0-based)."""
        warmup = self.warmup_steps(steps_per_epoch)
        if step < warmup:
            return (step + 1) / warmup
        return SCHEDULES[self.schedule](self, step, steps_per_epoch)


#: The default network's recipe.
DEFAULT_RECIPE = Recipe()

#: The original layer_sim's LeNet-5 recipe on MNIST (S1's demo): SGD, lr 0.1, momentum 0.9, weight
#: decay 1e-4, batch 128, 15 epochs, the rate divided by 10 after epochs 10 and 12, gradients
#: clipped to norm 1, no warm-up, no augmentation.
S1_RECIPE = Recipe(lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128, epochs=15, schedule="step",
                   warmup_epochs=0.0, milestones=(10, 12), gamma=0.1, clip_norm=1.0)
