"""Checkpoints: a directory with ``model.pt`` (state dict) and ``meta.json``, written atomically."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from layer_sim._io import atomic_write
from layer_sim.errors import ConfigError, DataError
from layer_sim.models import MLP

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "MODEL_CLASSES"]

#: Model classes a checkpoint can rebuild, by name; each must expose ``.config`` and ``cls(**config)``.
MODEL_CLASSES: dict[str, type[nn.Module]] = {"MLP": MLP}

_WEIGHTS, _META = "model.pt", "meta.json"


class Checkpoint(NamedTuple):
    """A restored network and its metadata (``config``, ``seed``, ``metrics``, ``versions``, ...)."""

    model: nn.Module
    meta: dict[str, Any]


def save_checkpoint(directory, model: nn.Module, *, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` and JSON metadata to ``directory`` (created if needed).

    ``meta.json`` gets ``model_class``, ``model_config``, library ``versions`` and the caller's
    ``meta`` (config, seed, metrics, ...; must be JSON-serialisable). Each file is written to a
    temporary name and moved into place with :func:`os.replace`, weights first, so a complete
    ``meta.json`` implies complete weights and an interrupted save leaves no partial file.

    Returns
    -------
    pathlib.Path
        ``directory``.
    """
    cls = type(model).__name__
    if MODEL_CLASSES.get(cls) is not type(model):
        raise ConfigError(f"save_checkpoint: cannot checkpoint {cls}; supported: {sorted(MODEL_CLASSES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    full = {
        **(meta or {}),
        "model_class": cls,
        "model_config": model.config,
        "versions": {
            "layer_sim": _version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    text = json.dumps(full, indent=2, sort_keys=True, allow_nan=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(directory / _WEIGHTS, lambda fh: torch.save(state, fh))
    atomic_write(directory / _META, lambda fh: fh.write(text.encode()))
    return directory


def load_checkpoint(directory, *, map_location: str | torch.device | None = None) -> Checkpoint:
    """Rebuild the network saved by :func:`save_checkpoint`: same class, config and weights.

    Weights are loaded with ``torch.load(weights_only=True)`` (no arbitrary code execution) onto
    ``map_location`` (default CPU). The model is returned in eval mode.

    Raises
    ------
    DataError
        If the directory has no complete checkpoint or names an unknown model class.
    """
    directory = Path(directory)
    meta_path, weights_path = directory / _META, directory / _WEIGHTS
    if not (meta_path.is_file() and weights_path.is_file()):
        raise DataError(f"load_checkpoint: {directory} has no complete checkpoint ({_WEIGHTS} + {_META})")
    try:
        meta = json.loads(meta_path.read_text())
        cls = MODEL_CLASSES[meta["model_class"]]
        with torch.random.fork_rng(devices=[]):  # its initial draw is overwritten anyway
            model = cls(**meta["model_config"])
    except (json.JSONDecodeError, KeyError) as exc:
        raise DataError(f"load_checkpoint: {meta_path} is not a layer_sim checkpoint ({exc!r})") from exc
    state = torch.load(weights_path, map_location=map_location or "cpu", weights_only=True)
    model.load_state_dict(state)
    if map_location is not None:
        model.to(map_location)
    return Checkpoint(model.eval(), meta)


def _version() -> str:
    from layer_sim._version import __version__

    return __version__
