"""What names a trained network apart from its seed: model, task and recipe, and the cache key they give.

The key is :func:`layer_sim._io.content_key` ``("network", KEY_VERSION, fields)`` over an explicit
list of fields (:data:`KEYED`). A field added to a component later is hashed only when it differs
from its default: give it a default that reproduces the old behaviour and every existing key,
hence every cached network, stays valid. Bump :data:`KEY_VERSION` only when the meaning of a
hashed field changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from layer_sim._io import content_key
from layer_sim._options import strict_signature
from layer_sim.data.tasks import Task, TaskSpec
from layer_sim.errors import ConfigError, UnknownNameError
from layer_sim.models import MODEL_SPECS, LeNet5Spec, MLPSpec, Tiny10Spec
from layer_sim.training.recipe import Recipe

__all__ = ["NetworkSpec", "DEFAULT_SPEC", "KEY_VERSION", "KEYED"]

#: Version of the key's meaning (1: the fields of :data:`KEYED`, introduced with NetworkSpec).
KEY_VERSION = 1

#: Fields hashed by key version 1 whatever their value, per component (models per ``kind``).
#: Any other field is hashed only when it is not at its default.
KEYED: dict[str, tuple[str, ...]] = {
    "model:MLP": ("kind", "widths", "activation", "skip"),
    "model:LeNet5": ("kind", "num_classes"),
    "model:Tiny10": ("kind", "num_classes"),
    "task": ("name", "loss", "limit_train"),
    "recipe": ("optimizer", "lr", "momentum", "readout_lr", "weight_decay", "batch_size", "epochs",
               "schedule", "warmup_epochs", "shift"),  # fmt: skip
}


@strict_signature
@dataclass(frozen=True)
class NetworkSpec:
    """A network to train: architecture (``model``), data and loss (``task``), hyperparameters (``recipe``).

    With a seed, it determines the trained network: the same spec and seed give bit-identical
    weights for the same thread count on CPU (:func:`~layer_sim.training.train_or_load`).
    Frozen and hashable; :meth:`key` names its checkpoints in the cache.

    Examples
    --------
    >>> spec = NetworkSpec().replace(epochs=2, limit_train=1000)
    >>> spec.recipe.epochs, spec.task.limit_train, spec.model.widths
    (2, 1000, (784, 256, 256, 256, 256, 10))
    >>> len(spec.key()), spec.key() == NetworkSpec.from_dict(spec.to_dict()).key()
    (24, True)
    """

    model: MLPSpec | LeNet5Spec | Tiny10Spec = field(default_factory=MLPSpec)
    task: TaskSpec = field(default_factory=TaskSpec)
    recipe: Recipe = field(default_factory=Recipe)

    def __post_init__(self) -> None:
        for name, kind in (("model", tuple(MODEL_SPECS.values())), ("task", TaskSpec), ("recipe", Recipe)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"NetworkSpec: {name} must be a {_names(kind)}, got {type(getattr(self, name)).__name__}")

    # ------------------------------------------------------------------ key and serialisation

    def key_fields(self) -> dict[str, dict[str, Any]]:
        """Exactly what :meth:`key` hashes: per component, the :data:`KEYED` fields and any non-default one."""
        return {
            "model": _keyed(self.model, KEYED.get(f"model:{self.model.kind}", ("kind",))),
            "task": _keyed(self.task, KEYED["task"]),
            "recipe": _keyed(self.recipe, KEYED["recipe"]),
        }

    def key(self) -> str:
        """24 hex digits: ``content_key("network", KEY_VERSION, self.key_fields())``."""
        return content_key("network", KEY_VERSION, self.key_fields())

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{"model": {...}, "task": {...}, "recipe": {...}}``, every field (JSON-serialisable)."""
        return {"model": self.model.to_dict(), "task": self.task.to_dict(), "recipe": self.recipe.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkSpec:
        """Inverse of :meth:`to_dict`; the model's ``"kind"`` picks its spec class in ``MODEL_SPECS``."""
        if not isinstance(d, dict) or set(d) != {"model", "task", "recipe"}:
            raise ConfigError(f"NetworkSpec.from_dict: expected a dict with keys model, task, recipe, got {d!r}")
        kind = d["model"].get("kind") if isinstance(d["model"], dict) else None
        if kind not in MODEL_SPECS:
            raise UnknownNameError(f"NetworkSpec.from_dict: unknown model kind {kind!r}; available: {', '.join(MODEL_SPECS)}")
        return cls(MODEL_SPECS[kind].from_dict(d["model"]), TaskSpec.from_dict(d["task"]), Recipe.from_dict(d["recipe"]))

    # ------------------------------------------------------------------ building

    def replace(self, **changes) -> NetworkSpec:
        """A copy with fields changed by name, whichever component holds them (``epochs=2, widths=...``).

        ``model=``, ``task=``, ``recipe=`` replace a whole component. An unknown name is an
        :class:`UnknownNameError` listing the valid ones.
        """
        parts = {"model": self.model, "task": self.task, "recipe": self.recipe}
        wholes = {k: changes.pop(k) for k in list(changes) if k in parts}
        parts.update(wholes)
        owners = {f.name: part for part, obj in parts.items() for f in fields(obj)}
        unknown = sorted(set(changes) - set(owners))
        if unknown:
            raise UnknownNameError(f"NetworkSpec.replace: unknown field(s) {unknown}; valid: {sorted(owners)}")
        for part in parts:
            mine = {k: v for k, v in changes.items() if owners[k] == part}
            if mine:
                parts[part] = dataclasses.replace(parts[part], **mine)
        return NetworkSpec(**parts)

    def build_model(self, *, seed: int):
        """The untrained network, initialised from ``seed``."""
        return self.model.build(seed=seed)

    def build_task(self, *, data_dir=None) -> Task:
        """The task's data (MNIST read from ``data_dir``; see :func:`~layer_sim.data.mnist_task`)."""
        return self.task.build(data_dir=data_dir)


def _keyed(component, always: tuple[str, ...]) -> dict[str, Any]:
    d = component.to_dict()
    defaults = {f.name: f.default for f in fields(component)}
    return {name: value for name, value in d.items()
            if name in always or getattr(component, name) != defaults.get(name)}  # fmt: skip


def _names(kinds) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(k.__name__ for k in kinds)


#: The default network: 784-256-256-256-256-10 ReLU MLP, MNIST with cross-entropy, :data:`~layer_sim.training.recipe.DEFAULT_RECIPE`.
DEFAULT_SPEC = NetworkSpec()
