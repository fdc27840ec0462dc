"""Fully connected networks whose every layer is a named, hookable module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from layer_sim._options import Choice, Flag, Int, Maybe, check, strict_signature
from layer_sim.errors import ConfigError, InputError
from layer_sim.models._init import fan_in_uniform_
from layer_sim.models._spec import spec_from_dict

__all__ = ["MLP", "MLPSpec", "DEFAULT_WIDTHS", "ACTIVATIONS"]

#: Default architecture: 784 inputs, four hidden ReLU layers of 256 units, 10 classes.
DEFAULT_WIDTHS: tuple[int, ...] = (784, 256, 256, 256, 256, 10)

#: Activation names accepted by :class:`MLP`, mapped to their module classes.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
}


class _Add(nn.Module):
    """``h + shortcut`` as its own module, so a forward hook sees the residual-stream output."""

    def forward(self, h: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return h + shortcut


@strict_signature
class MLP(nn.Module):
    r"""Multilayer perceptron with named, addressable layers and optional residual connections.

    Hidden layer :math:`k = 1, \dots, L` computes

    .. math::

        a_k = \phi(W_k h_{k-1} + b_k), \qquad
        h_k = \begin{cases} a_k + h_{k-1} & \text{skip and } d_k = d_{k-1},\ k \ge 2 \\
                            a_k & \text{otherwise} \end{cases}

    with :math:`h_0 = x` (flattened) and logits :math:`W_{\mathrm{out}} h_L + b_{\mathrm{out}}`.

    Module names (in forward order): ``fc1, act1, [res1], fc2, act2, [res2], ..., fc_out``.
    ``fc<k>`` is the :class:`~torch.nn.Linear` of hidden layer *k*, ``act<k>`` its activation
    and ``res<k>`` (only where a skip connection exists) the residual addition. A forward hook on
    the module named in :attr:`layer_names` ``[k-1]`` receives :math:`h_k`, the representation of
    hidden layer *k*; ``fc_out`` (the readout) produces the logits.

    Parameters
    ----------
    widths : sequence of int, default=DEFAULT_WIDTHS
        ``(d_in, d_1, ..., d_L, d_out)``; at least two entries, all positive.
    activation : {"relu", "tanh", "gelu", "sigmoid", "linear"}, default="relu"
        Nonlinearity :math:`\phi` of every hidden layer.
    skip : bool, default=False
        Add residual connections :math:`h_k = \phi(\cdot) + h_{k-1}` between consecutive hidden
        layers of equal width. It is a :class:`~layer_sim.errors.ConfigError` to ask for skips when
        no two consecutive hidden layers have equal width.
    seed : int or None, default=None
        If given, parameters are initialised from a private :class:`torch.Generator` seeded with
        it, so the same seed gives bit-identical weights without touching the global RNG.
        Otherwise PyTorch's global RNG is used. The distribution is PyTorch's default for
        :class:`~torch.nn.Linear`: :math:`W, b \sim U(-1/\sqrt{d_{k-1}}, 1/\sqrt{d_{k-1}})`.

    Raises
    ------
    ConfigError
        If ``widths``, ``activation``, ``skip`` or ``seed`` are invalid.

    Examples
    --------
    >>> import torch
    >>> from layer_sim.models import MLP
    >>> net = MLP((784, 64, 64, 10), skip=True, seed=0)
    >>> net.layer_names
    ('act1', 'res2')
    >>> net(torch.zeros(5, 1, 28, 28)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        *,
        activation: str = "relu",
        skip: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        widths, activation, skip, self._skip_at = _check_config("MLP", widths, activation, skip)
        seed = check("MLP", "seed", Maybe(Int(0)), seed)
        self.widths = widths
        self.activation = activation
        self.skip = skip
        names = []
        for k, (d_in, d_out) in enumerate(zip(widths[:-2], widths[1:-1]), start=1):
            self.add_module(f"fc{k}", _linear(d_in, d_out))
            self.add_module(f"act{k}", ACTIVATIONS[activation]())
            if self._skip_at[k - 1]:
                self.add_module(f"res{k}", _Add())
                names.append(f"res{k}")
            else:
                names.append(f"act{k}")
        self.fc_out = _linear(widths[-2], widths[-1])
        self.layer_names: tuple[str, ...] = tuple(names)
        self.reset_parameters(seed=seed)

    @property
    def config(self) -> dict:
        """JSON-serialisable constructor arguments (without ``seed``): ``MLP(**config)`` rebuilds it."""
        return {"widths": list(self.widths), "activation": self.activation, "skip": self.skip}

    @property
    def readout(self) -> nn.Linear:
        """The last Linear layer (``fc_out``), which maps :math:`h_L` to the logits."""
        return self.fc_out

    def reset_parameters(self, *, seed: int | None = None) -> None:
        """Re-draw all weights and biases from :math:`U(-1/\\sqrt{d_{in}}, 1/\\sqrt{d_{in}})`.

        With ``seed`` the draw uses a private generator (reproducible, global RNG untouched).
        """
        seed = check("MLP.reset_parameters", "seed", Maybe(Int(0)), seed)
        fan_in_uniform_(self, seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(n, d_out)`` for ``x`` of shape ``(n, d_in)`` or ``(n, *image)``."""
        h = x.flatten(start_dim=1) if x.ndim > 2 else x
        if h.ndim != 2 or h.shape[1] != self.widths[0]:
            raise InputError(
                f"MLP: expected input of shape (n, {self.widths[0]}) or (n, *dims) with "
                f"{self.widths[0]} values per example, got shape {tuple(x.shape)}"
            )
        for k in range(1, len(self.widths) - 1):
            a = getattr(self, f"act{k}")(getattr(self, f"fc{k}")(h))
            h = getattr(self, f"res{k}")(a, h) if self._skip_at[k - 1] else a
        return self.fc_out(h)

    def extra_repr(self) -> str:
        return f"widths={self.widths}, activation={self.activation!r}, skip={self.skip}"


def _linear(d_in: int, d_out: int) -> nn.Linear:
    # skip_init: nn.Linear would otherwise draw from the global RNG before reset_parameters runs.
    return nn.utils.skip_init(nn.Linear, d_in, d_out)


def _check_config(where: str, widths, activation, skip) -> tuple[tuple[int, ...], str, bool, tuple[bool, ...]]:
    """The one check of an MLP configuration (used by :class:`MLP` and :class:`MLPSpec`).

    Returns the normalised ``(widths, activation, skip)`` and, per hidden layer, whether it has
    a residual connection.
    """
    widths = _check_widths(where, widths)
    activation = Choice(*ACTIVATIONS).check(f"{where}: activation", activation)
    skip = Flag().check(f"{where}: skip", skip)
    hidden = widths[1:-1]
    has_skip = [k >= 1 and hidden[k] == hidden[k - 1] for k in range(len(hidden))]
    if skip and not any(has_skip):
        raise ConfigError(
            f"{where}: skip=True needs two consecutive hidden layers of equal width, got widths {widths}"
        )
    return widths, activation, skip, tuple(skip and s for s in has_skip)


def _check_widths(where: str, widths) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ConfigError(f"{where}: widths must be a sequence of positive integers, got {widths!r}")
    try:
        out = tuple(int(w) for w in widths)
        exact = all(int(w) == w for w in widths)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: widths must be a sequence of positive integers, got {widths!r}") from exc
    if not exact or len(out) < 2 or min(out) < 1:
        raise ConfigError(
            f"{where}: widths must be at least two positive integers (d_in, ..., d_out), got {widths!r}"
        )
    return out


@strict_signature
@dataclass(frozen=True)
class MLPSpec:
    """What names an :class:`MLP` architecture: its constructor arguments, without the seed.

    Frozen, validated and hashable, so it can be part of a cache key; :meth:`build` makes the
    network. ``MLPSpec(**mlp.config)`` describes an existing ``mlp``.

    Examples
    --------
    >>> spec = MLPSpec((784, 64, 64, 10), skip=True)
    >>> spec.to_dict()
    {'kind': 'MLP', 'widths': [784, 64, 64, 10], 'activation': 'relu', 'skip': True}
    >>> spec.build(seed=0).layer_names
    ('act1', 'res2')
    """

    widths: tuple[int, ...] = DEFAULT_WIDTHS
    activation: str = "relu"
    skip: bool = False

    #: The model class this spec builds (recorded as ``"kind"``).
    kind: ClassVar[str] = "MLP"

    def __post_init__(self) -> None:
        widths, activation, skip, _ = _check_config("MLPSpec", self.widths, self.activation, self.skip)
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "activation", activation)
        object.__setattr__(self, "skip", skip)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "MLP", "widths": [...], "activation", "skip"}`` (JSON-serialisable)."""
        return {"kind": self.kind, "widths": list(self.widths), "activation": self.activation, "skip": self.skip}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MLPSpec:
        """Inverse of :meth:`to_dict` (``"kind"`` may be omitted); an unknown key is an :class:`UnknownNameError`."""
        return spec_from_dict(cls, d)

    def build(self, *, seed: int | None = None) -> MLP:
        """The untrained :class:`MLP`, initialised from ``seed`` (see ``MLP(seed=...)``)."""
        return MLP(self.widths, activation=self.activation, skip=self.skip, seed=seed)
