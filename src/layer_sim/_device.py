"""The one check of a ``device=`` argument: it must name a device that exists on this machine.

Checked before any work, so ``device="cuda"`` on a machine without CUDA is a one-line
:class:`~layer_sim.errors.ConfigError` naming the argument, not a torch ``AssertionError`` after
the data were loaded.
"""

from __future__ import annotations

import torch

from layer_sim.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(where: str, device: str | torch.device | int | None) -> torch.device | None:
    """``torch.device(device)`` if that device is usable here; None passes through.

    Raises
    ------
    ConfigError
        ``device`` is not a device name (e.g. ``"gpu"``), names CUDA/MPS on a machine without
        them, a CUDA index beyond the devices present, the data-less ``"meta"`` device, or any
        other device torch cannot allocate on.

    Examples
    --------
    >>> resolve_device("fit", "cpu")
    device(type='cpu')
    >>> resolve_device("fit", "gpu")
    Traceback (most recent call last):
    layer_sim.errors.ConfigError: fit: device='gpu' is not a torch device name; use e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'
    """
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise ConfigError(f"{where}: device must be a string such as 'cpu' or a torch.device, got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(
            f"{where}: device={device!r} is not a torch device name; use e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "meta":
        raise ConfigError(f"{where}: device='meta' holds no data; use e.g. 'cpu'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{where}: device={device!r} but CUDA is not available on this machine; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{where}: device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where}: device={device!r} but MPS is not available on this machine; use device='cpu'")
    try:
        torch.empty(0, device=dev)
    except Exception as exc:  # noqa: BLE001 - torch raises AssertionError/RuntimeError/NotImplementedError here
        raise ConfigError(f"{where}: device={device!r} is not usable on this machine ({exc})") from None
    return dev
