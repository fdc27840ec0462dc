"""layer_sim: layer-by-layer similarity of neural network representations.

The public surface is listed in ``__all__``; everything else lives in submodules. Names are
imported on first use (PEP 562), so ``import layer_sim`` and the CLI's ``--help`` do not pay
for torch until something needs it.
"""

from __future__ import annotations

import importlib

from layer_sim._version import __version__

#: Public name -> the module that defines it.
_EXPORTS = {
    **dict.fromkeys(
        ["LayerSimError", "InputError", "DegenerateInputError", "UnknownNameError", "DataError", "ConfigError",
         "TrainingDivergedError", "IncompleteError", "UnitsFailedError"],
        "layer_sim.errors",
    ),
    **dict.fromkeys(["compare", "SimilarityMatrix", "layer_identification", "LayerIdentification"], "layer_sim.analysis"),
    **dict.fromkeys(["extract", "iter_representations", "Representations"], "layer_sim.representations"),
    **dict.fromkeys(["load_mnist", "mnist_task", "Task"], "layer_sim.data"),
    "MLP": "layer_sim.models",
    **dict.fromkeys(
        ["load_checkpoint", "save_checkpoint", "NetworkSpec", "Recipe", "fit", "train_or_load", "fit_ensemble",
         "train_or_load_ensemble"],
        "layer_sim.training",
    ),  # fmt: skip
    **dict.fromkeys(
        ["StreamingCCA", "StreamingLinearCKA", "canonical_correlations", "cca", "linear_cka", "linear_cka_matrix",
         "linear_hsic", "linear_regression", "minibatch_cka", "procrustes", "pwcca", "rbf_cka", "svcca"],
        "layer_sim.measures",
    ),  # fmt: skip
}

#: Subpackages reachable as attributes (``layer_sim.measures.get``) without importing them first.
_SUBPACKAGES = {"analysis", "data", "experiments", "measures", "models", "report", "representations", "training"}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"layer_sim.{name}")
    else:
        raise AttributeError(f"module 'layer_sim' has no attribute {name!r}")
    globals()[name] = value  # later lookups are plain attribute hits
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
