"""One context manager owns everything extraction changes on a model: hooks, train/eval flags, device.

Whatever happens inside (an exception in the forward pass, a generator closed half-way), on exit
every hook is removed, every module's ``training`` flag is what it was, and the model is back
on the device it came from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from layer_sim.errors import InputError

__all__ = ["Call", "Recorder", "recording", "model_device"]


@dataclass(frozen=True)
class Call:
    """One call of a hooked module: a private copy of its output and the live output tensor.

    The copy is what is recorded (a later in-place operation, e.g. ``ReLU(inplace=True)``, cannot
    change it); the live tensor is part of the autograd graph, for gradients.
    """

    name: str
    copy: torch.Tensor
    live: torch.Tensor


class Recorder:
    """What the hooks of :func:`recording` saw since the last :meth:`take`."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._running: list[str] = []

    def take(self) -> list[Call]:
        """The calls recorded since the last ``take``, in call order; clears them."""
        calls, self._calls = self._calls, []
        return calls

    @contextmanager
    def tracing(self, model: nn.Module) -> Iterator[None]:
        """Track which module is running, so an exception can name the module that raised.

        After an exception inside the block, :attr:`innermost` is the deepest module that was
        entered and not left (forward hooks do not run when ``forward`` raises).
        """
        self._running.clear()

        # Hooks must return None: a value returned by a hook replaces the module's input/output.
        def enter(label: str):
            def pre_hook(module, inputs) -> None:
                self._running.append(label)

            return pre_hook

        def leave(module, inputs, out) -> None:
            self._running.pop()

        handles = []
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(enter(name or "the model itself")))
            handles.append(module.register_forward_hook(leave))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @property
    def innermost(self) -> str | None:
        """The module that was running when the traced forward pass raised (None if none was)."""
        return self._running[-1] if self._running else None

    def _hook(self, name: str):
        def hook(module, inputs, out):
            if not isinstance(out, torch.Tensor):
                raise InputError(
                    f"extract: module {name!r} returned {type(out).__name__}, not a tensor; "
                    "choose a module that returns one tensor"
                )
            self._calls.append(Call(name, out.detach().clone(), out))

        return hook


@contextmanager
def recording(
    model: nn.Module, modules: Sequence[tuple[str, nn.Module]], *, device: torch.device | None
) -> Iterator[Recorder]:
    """Hook ``modules`` of ``model``, put it in eval mode on ``device``; restore everything on exit.

    Parameters
    ----------
    model : torch.nn.Module
        The model to run.
    modules : sequence of (name, module)
        Submodules whose outputs are recorded, under these names.
    device : torch.device or None
        Where the model runs inside the block; ``None`` leaves it where it is. On exit it is
        moved back to the device of its first parameter (or buffer) on entry.

    Yields
    ------
    Recorder
        Collects one :class:`Call` per call of a hooked module.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 2), nn.ReLU()).train()
    >>> with recording(net, [("1", net[1])], device=None) as rec:
    ...     _ = net(torch.ones(4, 3))
    ...     [(c.name, tuple(c.copy.shape)) for c in rec.take()], net.training
    ([('1', (4, 2))], False)
    >>> net.training, len(net[1]._forward_hooks)
    (True, 0)
    """
    modes = {m: m.training for m in model.modules()}
    home = model_device(model)
    move = device is not None and device != home
    recorder = Recorder()
    handles = []
    try:
        if move:
            model.to(device)
        model.eval()
        for name, module in modules:
            handles.append(module.register_forward_hook(recorder._hook(name)))
        yield recorder
    finally:
        for h in handles:
            h.remove()
        recorder.take()
        for m, was_training in modes.items():
            m.train(was_training)
        if move:
            model.to(home)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model with neither."""
    first = next(model.parameters(), None)
    if first is None:
        first = next(model.buffers(), None)
    return first.device if first is not None else torch.device("cpu")
