"""Epoch checkpoints: everything :func:`~layer_sim.training.fit` carries from one epoch to the next, written atomically.

After every epoch ``fit(..., checkpoint=DIR)`` replaces ``DIR/epoch.pt`` (a temporary file,
fsynced, then renamed over the old one), so a run killed at any moment, even by ``kill -9``,
leaves the checkpoint of its last finished epoch or of the one before, never a partial file.
Restarted with the same arguments, ``fit`` restores that state and continues; on CPU with the
same thread count the weights at the end equal an uninterrupted run's bit for bit.

The file holds (loaded with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists
and dicts only): the run's ``fingerprint`` (recipe, seed, task, model class and parameter
shapes), ``epoch``, ``step``, the ``model``, ``optimizer`` and ``scheduler`` state dicts, the
private ``generator`` state of shuffling and augmentation, the global ``rng`` states (for
modules such as dropout that draw from them), the ``history`` so far, the elapsed ``seconds``, and
the state of each callback that has ``state_dict()``/``load_state_dict()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from layer_sim._io import atomic_write
from layer_sim.errors import DataError

__all__ = ["EPOCH_FILE", "VERSION", "fingerprint", "write", "read", "remove", "rng_state", "set_rng_state"]

#: File name of the epoch checkpoint inside its directory.
EPOCH_FILE = "epoch.pt"

#: Version of the file's layout.
VERSION = 1


def fingerprint(model, task, recipe, seed: int) -> dict[str, Any]:
    """What must be equal for a checkpoint to continue this run (JSON-like)."""
    return {
        "recipe": recipe.to_dict(),
        "seed": int(seed),
        "task": {"name": task.name, "n_train": len(task.train[0]), "num_classes": task.num_classes,
                 "loss": task.loss.name},  # fmt: skip
        "model": type(model).__name__,
        "parameters": [[name, list(p.shape), str(p.dtype)] for name, p in model.named_parameters()],
    }


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global RNG states a model on ``device`` may draw from (CPU, and that CUDA device)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def write(directory, payload: dict[str, Any]) -> Path:
    """Atomically replace ``directory/epoch.pt`` with ``payload`` (tensors moved to CPU)."""
    path = Path(directory) / EPOCH_FILE
    data = {"version": VERSION, **_to_cpu(payload)}
    atomic_write(path, lambda fh: torch.save(data, fh))
    return path


def read(directory, expected: dict[str, Any]) -> dict[str, Any] | None:
    """The epoch checkpoint in ``directory`` if there is one, after checking it belongs to this run.

    Leftover temporary files of a write that was killed are removed first.

    Raises
    ------
    DataError
        The file is damaged, has another layout version, or is the checkpoint of another run
        (its fingerprint differs from ``expected``); the message names the file and what differs.
    """
    directory = Path(directory)
    for stale in directory.glob(f".{EPOCH_FILE}.*.part"):
        stale.unlink(missing_ok=True)
    path = directory / EPOCH_FILE
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated/foreign files raise EOFError, RuntimeError, UnpicklingError...
        raise DataError(f"fit: the epoch checkpoint {path} is damaged ({exc}); delete it to start over") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise DataError(f"fit: {path} is not an epoch checkpoint of layout version {VERSION}; delete it to start over")
    found = data.get("fingerprint")
    if found != expected:
        what = sorted(k for k in expected if not isinstance(found, dict) or found.get(k) != expected[k])
        raise DataError(
            f"fit: {path} is the epoch checkpoint of another run (its {', '.join(what)} differ from this run's); "
            "delete it or pass another checkpoint directory"
        )
    return data


def remove(directory) -> None:
    """Delete the epoch checkpoint in ``directory`` (a finished network needs it no more)."""
    (Path(directory) / EPOCH_FILE).unlink(missing_ok=True)


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj
