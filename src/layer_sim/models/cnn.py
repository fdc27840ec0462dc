"""Convolutional networks for 28 x 28 MNIST whose every layer is a named, hookable module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from layer_sim._options import Int, check, strict_signature
from layer_sim.errors import InputError
from layer_sim.models._init import fan_in_uniform_
from layer_sim.models._spec import spec_from_dict

__all__ = ["LeNet5", "LeNet5Spec", "LENET5_LAYER_TYPES", "Tiny10", "Tiny10Spec"]

#: Module types whose outputs are LeNet-5's layer representations: post-activation and pooling
#: (the original layer_sim's ``layer_types_to_hook=(nn.ReLU, nn.AvgPool2d)``).
LENET5_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.AvgPool2d)

_INPUT_SHAPE = (1, 28, 28)


@strict_signature
class LeNet5(nn.Module):
    r"""LeNet-5 with ReLU and average pooling, for 1 x 28 x 28 images, as in the original layer_sim.

    ``features``: conv 6@5x5 -> ReLU -> avg-pool 2 -> conv 16@5x5 -> ReLU -> avg-pool 2, giving
    a 16 x 4 x 4 map that ``flatten`` turns into 256 values; ``classifier``: 256 -> 120 -> ReLU ->
    84 -> ReLU -> ``num_classes``. Against LeCun et al. (1998) it uses ReLU instead of tanh, plain
    average pooling, and connects all 6 maps to every second-layer channel.

    Module names follow the original library (``nn.Sequential`` indices), so its pruning patterns
    ``["features", r"classifier\.[02]\."]`` select the convolutions and the two hidden Linear
    layers but not the readout ``classifier.4``. :attr:`layer_names` are the modules whose
    outputs are the layer representations, with per-example shapes:

    ===============  =============  ==========================
    name             module         output shape per example
    ===============  =============  ==========================
    ``features.1``   ReLU           (6, 24, 24)
    ``features.2``   AvgPool2d      (6, 12, 12)
    ``features.4``   ReLU           (16, 8, 8)
    ``features.5``   AvgPool2d      (16, 4, 4)
    ``classifier.1`` ReLU           (120,)
    ``classifier.3`` ReLU           (84,)
    ===============  =============  ==========================

    Parameters
    ----------
    num_classes : int >= 2, default=10
        Width of the readout.
    seed : int or None, default=None
        Initialise from a private generator seeded with it (bit-identical weights for a seed,
        global RNG untouched); None uses the global RNG. PyTorch's default distribution:
        weights and biases :math:`\sim U(-1/\sqrt{f}, 1/\sqrt{f})`, :math:`f` the fan-in.

    References
    ----------
    LeCun, Bottou, Bengio & Haffner (1998). Gradient-based learning applied to document
    recognition. Proc. IEEE 86(11). Ansuini, Medvet, Pellegrino & Zullich (2020). On the
    similarity between hidden layers of pruned and unpruned convolutional neural networks. ICPRAM.

    Examples
    --------
    >>> import torch
    >>> net = LeNet5(seed=0)
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> net.layer_names[:2], net.readout is net.classifier[4]
    (('features.1', 'features.2'), True)
    """

    def __init__(self, num_classes: int = 10, *, seed: int | None = None) -> None:
        super().__init__()
        self.num_classes = _check_num_classes("LeNet5", num_classes)
        skip = nn.utils.skip_init  # no draw from the global RNG before fan_in_uniform_ runs
        self.features = nn.Sequential(
            skip(nn.Conv2d, 1, 6, kernel_size=5),
            nn.ReLU(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            skip(nn.Conv2d, 6, 16, kernel_size=5),
            nn.ReLU(),
            nn.AvgPool2d(kernel_size=2, stride=2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            skip(nn.Linear, 16 * 4 * 4, 120),
            nn.ReLU(),
            skip(nn.Linear, 120, 84),
            nn.ReLU(),
            skip(nn.Linear, 84, self.num_classes),
        )
        self.layer_names: tuple[str, ...] = tuple(
            name for name, m in self.named_modules() if isinstance(m, LENET5_LAYER_TYPES)
        )
        fan_in_uniform_(self, seed=seed)

    @property
    def config(self) -> dict:
        """JSON-serialisable constructor arguments (without ``seed``): ``LeNet5(**config)`` rebuilds it."""
        return {"num_classes": self.num_classes}

    @property
    def readout(self) -> nn.Linear:
        """The last Linear layer (``classifier.4``), which maps the 84 features to the logits."""
        return self.classifier[4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, num_classes)`` for images ``x`` of shape ``(n, 1, 28, 28)``."""
        _check_images("LeNet5", x)
        return self.classifier(self.flatten(self.features(x)))


def _check_images(where: str, x: torch.Tensor) -> None:
    # Both CNNs take MNIST-shaped batches; a wrong shape would otherwise fail deep in a conv layer.
    if x.ndim != 4 or tuple(x.shape[1:]) != _INPUT_SHAPE:
        raise InputError(f"{where}: expected images of shape (n, 1, 28, 28), got shape {tuple(x.shape)}")


def _check_num_classes(where: str, num_classes) -> int:
    return check(where, "num_classes", Int(2), num_classes)


@dataclass(frozen=True)
class _ClassifierSpec:
    # What LeNet5Spec and Tiny10Spec share: a CNN on 28x28 images is named by its class count.
    num_classes: int = 10

    #: The model class this spec builds (recorded as ``"kind"``).
    kind: ClassVar[str]
    _model: ClassVar[type[nn.Module]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_classes", _check_num_classes(type(self).__name__, self.num_classes))

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., "num_classes": ...}`` (JSON-serialisable)."""
        return {"kind": self.kind, "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Inverse of :meth:`to_dict` (``"kind"`` may be omitted); an unknown key is an :class:`UnknownNameError`."""
        return spec_from_dict(cls, d)

    def build(self, *, seed: int | None = None) -> nn.Module:
        """The untrained network, initialised from ``seed``."""
        return self._model(self.num_classes, seed=seed)


@strict_signature
@dataclass(frozen=True)
class LeNet5Spec(_ClassifierSpec):
    """What names a :class:`LeNet5`: its number of classes (the seed is not part of it).

    Examples
    --------
    >>> LeNet5Spec().to_dict()
    {'kind': 'LeNet5', 'num_classes': 10}
    >>> LeNet5Spec.from_dict({"kind": "LeNet5", "num_classes": 3}).build(seed=0).readout.out_features
    3
    """

    kind: ClassVar[str] = "LeNet5"
    _model: ClassVar[type[nn.Module]] = LeNet5


# ----------------------------------------------------------------------------- Tiny-10

#: Tiny-10's convolutions (Kornblith et al. 2019, Table E.1): (out channels, kernel, stride, padding).
#: On 28 x 28 inputs the maps are 28, 28, 14, 14, 14, 7, 5, 5 pixels wide ("valid" = no padding).
TINY10_CONVS: tuple[tuple[int, int, int, int], ...] = (
    (16, 3, 1, 1), (16, 3, 1, 1), (32, 3, 2, 1), (32, 3, 1, 1), (32, 3, 1, 1), (64, 3, 2, 1), (64, 3, 1, 0),
    (64, 1, 1, 0),
)


class _ConvBlock(nn.Module):
    """conv (no bias: the BatchNorm's shift replaces it) -> BatchNorm -> ReLU, each a named module."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.utils.skip_init(nn.Conv2d, c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


@strict_signature
class Tiny10(nn.Module):
    r"""Kornblith et al.'s (2019) all-convolutional Tiny-10, adapted to 1 x 28 x 28 MNIST images.

    Eight blocks ``block1`` ... ``block8`` of conv -> BatchNorm -> ReLU (3x3 16, 3x3 16,
    3x3 32 stride 2, 3x3 32, 3x3 32, 3x3 64 stride 2, 3x3 64 without padding, 1x1 64; see
    :data:`TINY10_CONVS`), global average pooling ``pool`` and the Linear readout ``logits``
    (64 -> ``num_classes``). The only change from the CIFAR-10 original is the input: one channel
    of 28 x 28, so the maps are 28, 28, 14, 14, 14, 7, 5, 5 pixels wide instead of 32 ... 6.
    :attr:`layer_names` are nine layer representations: each block's ReLU (``block<k>.relu``,
    per-example shapes (16, 28, 28) ... (64, 5, 5)) and ``pool`` (64,); with the logits
    (``extract``'s ``"output"``) they are Tiny-10's ten layers.

    BatchNorm uses batch statistics in training and its running averages in eval mode, which is
    the mode :func:`~layer_sim.representations.extract` and evaluation use, so representations
    of one example never depend on the others.

    Parameters
    ----------
    num_classes : int >= 2, default=10
    seed : int or None, default=None
        As for :class:`LeNet5` (BatchNorm starts at weight 1, bias 0).

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019). Similarity of neural network representations
    revisited. ICML (Appendix, Table E.1).

    Examples
    --------
    >>> net = Tiny10(seed=0)
    >>> net(torch.zeros(2, 1, 28, 28)).shape, len(net.layer_names), net.layer_names[-1]
    (torch.Size([2, 10]), 9, 'pool')
    """

    def __init__(self, num_classes: int = 10, *, seed: int | None = None) -> None:
        super().__init__()
        self.num_classes = _check_num_classes("Tiny10", num_classes)
        c_in = _INPUT_SHAPE[0]
        for k, (c_out, kernel, stride, padding) in enumerate(TINY10_CONVS, start=1):
            self.add_module(f"block{k}", _ConvBlock(c_in, c_out, kernel, stride, padding))
            c_in = c_out
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.logits = nn.utils.skip_init(nn.Linear, c_in, self.num_classes)
        self.layer_names: tuple[str, ...] = (*(f"block{k}.relu" for k in range(1, len(TINY10_CONVS) + 1)), "pool")
        fan_in_uniform_(self, seed=seed)

    @property
    def config(self) -> dict:
        """JSON-serialisable constructor arguments (without ``seed``)."""
        return {"num_classes": self.num_classes}

    @property
    def readout(self) -> nn.Linear:
        """The Linear layer ``logits``."""
        return self.logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, num_classes)`` for images ``x`` of shape ``(n, 1, 28, 28)``."""
        _check_images("Tiny10", x)
        h = x
        for k in range(1, len(TINY10_CONVS) + 1):
            h = getattr(self, f"block{k}")(h)
        return self.logits(self.flatten(self.pool(h)))


@strict_signature
@dataclass(frozen=True)
class Tiny10Spec(_ClassifierSpec):
    """What names a :class:`Tiny10`: its number of classes.

    Examples
    --------
    >>> Tiny10Spec().to_dict()
    {'kind': 'Tiny10', 'num_classes': 10}
    """

    kind: ClassVar[str] = "Tiny10"
    _model: ClassVar[type[nn.Module]] = Tiny10
