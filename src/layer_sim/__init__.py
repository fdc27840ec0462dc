"""layer_sim: layer-by-layer similarity of neural network representations.

The public surface is listed in ``__all__``; everything else lives in submodules.
"""

from layer_sim.errors import (
    ConfigError,
    DataError,
    DegenerateInputError,
    InputError,
    LayerSimError,
    UnknownNameError,
)
from layer_sim.analysis import LayerIdentification, SimilarityMatrix, compare, layer_identification
from layer_sim.representations import Representations, extract, iter_representations
from layer_sim.data import load_mnist
from layer_sim.models import MLP
from layer_sim.training import load_checkpoint, save_checkpoint
from layer_sim.training import TrainConfig, fit, train_or_load
from layer_sim.training import fit_ensemble, train_ensemble, train_or_load_ensemble
from layer_sim.measures import (
    StreamingCCA,
    StreamingLinearCKA,
    canonical_correlations,
    cca,
    linear_cka,
    linear_cka_matrix,
    linear_hsic,
    linear_regression,
    minibatch_cka,
    procrustes,
    pwcca,
    rbf_cka,
    svcca,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "linear_cka_matrix",
    "StreamingLinearCKA",
    "LayerSimError",
    "InputError",
    "DegenerateInputError",
    "UnknownNameError",
    "DataError",
    "ConfigError",
    "MLP",
    "load_mnist",
    "fit",
    "TrainConfig",
    "train_or_load",
    "fit_ensemble",
    "train_ensemble",
    "train_or_load_ensemble",
    "save_checkpoint",
    "load_checkpoint",
    "extract",
    "iter_representations",
    "Representations",
    "compare",
    "SimilarityMatrix",
    "layer_identification",
    "LayerIdentification",
    "canonical_correlations",
    "cca",
    "svcca",
    "pwcca",
    "linear_regression",
    "procrustes",
    "StreamingCCA",
    "linear_cka",
    "linear_hsic",
    "rbf_cka",
    "minibatch_cka",
]
