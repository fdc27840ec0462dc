"""Checkpoints: a directory with ``model.pt`` (state dict) and ``meta.json``, written atomically.

One layout whatever trained the network (:func:`~layer_sim.training.fit`,
:func:`~layer_sim.training.fit_ensemble`, ``layer-sim train``, the sanity check): the cache
(:mod:`layer_sim.training.cache`) keeps each network in ``<cache_dir>/<spec key>/seed-<k>/``::

    model.pt    the final weights (a state dict, loaded with ``weights_only=True``)
    meta.json   written last, so its presence means the checkpoint is complete: spec, key,
                seed, trainer, metrics (test accuracy, train seconds, history), model class and
                config, library versions

Other names in a checkpoint directory are reserved for the in-progress epoch checkpoint
``epoch.pt`` (model, optimizer, scheduler and generator state, epoch; see
:mod:`layer_sim.training.resume`), which is not ``meta.json`` and so is never mistaken for a
finished network.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from layer_sim._io import atomic_write, loads_json
from layer_sim._options import strict_signature
from layer_sim.errors import ConfigError, DataError, LayerSimError
from layer_sim.models import MLP, LeNet5, Tiny10

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "read_meta", "MODEL_CLASSES"]

#: Model classes a checkpoint can rebuild, by name; each must expose ``.config`` and ``cls(**config)``.
MODEL_CLASSES: dict[str, type[nn.Module]] = {"MLP": MLP, "LeNet5": LeNet5, "Tiny10": Tiny10}

_WEIGHTS, _META = "model.pt", "meta.json"


class Checkpoint(NamedTuple):
    """A restored network and its metadata (``spec``, ``seed``, ``trainer``, ``metrics``, ``versions``, ...)."""

    model: nn.Module
    meta: dict[str, Any]


@strict_signature
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
    if meta is not None and not isinstance(meta, dict):
        raise ConfigError(f"save_checkpoint: meta must be a dict, got {type(meta).__name__}")
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
    try:
        text = json.dumps(full, indent=2, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"save_checkpoint: meta must hold only what JSON can ({exc})") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    # An overwrite must never leave an old meta.json vouching for new (or half-replaced) weights.
    (directory / _META).unlink(missing_ok=True)
    atomic_write(directory / _WEIGHTS, lambda fh: torch.save(state, fh))
    atomic_write(directory / _META, lambda fh: fh.write(text.encode()))
    return directory


@strict_signature
def load_checkpoint(directory, *, map_location: str | torch.device | None = None) -> Checkpoint:
    """Rebuild the network saved by :func:`save_checkpoint`: same class, config and weights.

    Weights are loaded with ``torch.load(weights_only=True)`` (no arbitrary code execution) onto
    ``map_location`` (default CPU). The model is returned in eval mode.

    Raises
    ------
    DataError
        The directory has no complete checkpoint, ``meta.json`` is not a JSON object or names an
        unknown model class, ``model.pt`` is damaged (e.g. truncated), or the weights do not
        match the model ``meta.json`` describes; the message names the file.
    """
    directory = Path(directory)
    meta_path, weights_path = directory / _META, directory / _WEIGHTS
    if not (meta_path.is_file() and weights_path.is_file()):
        raise DataError(f"load_checkpoint: {directory} has no complete checkpoint ({_WEIGHTS} + {_META})")
    meta = read_meta(directory)
    try:
        cls = MODEL_CLASSES[meta["model_class"]]
        with torch.random.fork_rng(devices=[]):  # its initial draw is overwritten anyway
            model = cls(**meta["model_config"])
    except (KeyError, TypeError, LayerSimError) as exc:
        raise DataError(f"load_checkpoint: {meta_path} does not describe a layer_sim model ({exc!r})") from None
    try:
        state = torch.load(weights_path, map_location=map_location or "cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated/foreign files raise EOFError, RuntimeError, UnpicklingError...
        raise DataError(f"load_checkpoint: {weights_path} is damaged or not a state dict ({exc})") from None
    problem = _unusable_weights(state, model)
    if problem:
        raise DataError(f"load_checkpoint: {weights_path} {problem}; delete the directory to retrain")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise DataError(
            f"load_checkpoint: the weights in {weights_path} do not match the model that {meta_path} describes "
            f"({str(exc).splitlines()[0]})"
        ) from None
    if map_location is not None:
        model.to(map_location)
    return Checkpoint(model.eval(), meta)


def _unusable_weights(state, model: nn.Module) -> str | None:
    """What makes ``state`` unfit to be ``model``'s weights beyond a shape mismatch, or None.

    ``load_state_dict`` would accept NaN/Inf weights (a diverged network) and silently cast
    integer tensors into float parameters; neither is a network anyone trained.
    """
    if not isinstance(state, dict):
        return None  # load_state_dict names the mismatch
    own = model.state_dict()
    for name, t in state.items():
        if not isinstance(t, torch.Tensor) or name not in own:
            continue
        if own[name].is_floating_point() and not t.is_floating_point():
            return f"holds {name} as {t.dtype}, not floating-point weights"
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"holds NaN or Inf in {name} (the weights of a diverged network)"
    return None


def read_meta(directory) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint directory, as a dict.

    Raises
    ------
    DataError
        The file is missing, is not JSON, or is not a JSON object; the message names it.
    """
    path = Path(directory) / _META
    try:
        meta = loads_json(path.read_text())
    except FileNotFoundError:
        raise DataError(f"load_checkpoint: {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"load_checkpoint: {path} is a directory, not a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"load_checkpoint: {path} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"load_checkpoint: {path} holds a JSON {type(meta).__name__}, not an object")
    return meta


def _version() -> str:
    from layer_sim._version import __version__

    return __version__
