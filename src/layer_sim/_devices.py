"""The one check of a ``device=`` argument: it must name a torch device that exists on this machine.

Without it, ``device="cuda"`` on a CPU-only machine fails deep inside the first ``.to()`` with
an ``AssertionError`` ("Torch not compiled with CUDA enabled") or a ``RuntimeError`` that names
no argument, possibly after minutes of work.
"""

from __future__ import annotations

import torch

from layer_sim.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device, *, where: str) -> torch.device | None:
    """``device`` as a :class:`torch.device` that exists here; ``None`` passes through.

    Parameters
    ----------
    device : str, torch.device or None
        E.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    where : str
        Prefix of the error message, e.g. ``"extract: device"``.

    Raises
    ------
    ConfigError
        Not a device string, or a device this machine does not have (the message says which
        devices it has).

    Examples
    --------
    >>> resolve_device("cpu", where="extract: device")
    device(type='cpu')
    >>> resolve_device("gpu", where="extract: device")
    Traceback (most recent call last):
    layer_sim.errors.ConfigError: extract: device 'gpu' is not a torch device (e.g. cpu, cuda, cuda:1, mps); available here: cpu
    """
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise ConfigError(f"{where} must be a device name such as 'cpu' or 'cuda', got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"{where} {device!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps); available here: {_available()}"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index is not None and dev.index >= count):
            have = "no CUDA device" if count == 0 else f"{count} CUDA device(s)"
            raise ConfigError(f"{where} {str(device)!r} is not available: this machine has {have}; available here: {_available()}")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{where} 'mps' is not available on this machine; available here: {_available()}")
        return dev
    # Other backends (xpu, ...): a tensor on it either can be made or it cannot.
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"{where} {str(device)!r} is not available ({exc}); available here: {_available()}") from None
    return dev


def _available() -> str:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{k}" for k in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return ", ".join(names)
