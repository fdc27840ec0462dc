"""Similarity indexes: pure functions on (n_examples, n_features) arrays/tensors, plus a registry."""

from layer_sim.measures._registry import Measure, available, get, register
from layer_sim.measures._fast import linear_cka_matrix
from layer_sim.measures.streaming import StreamingLinearCKA
from layer_sim.measures._cca import (
    STATISTICS,
    canonical_correlations,
    cca,
    linear_regression,
    procrustes,
    pwcca,
    svcca,
)
from layer_sim.measures._cka import linear_cka, linear_hsic, minibatch_cka, rbf_cka
from layer_sim.measures.streaming_cca import StreamingCCA
from layer_sim.measures.reduction import svd_reduction

__all__ = [
    "linear_cka_matrix",
    "StreamingLinearCKA",
    "Measure",
    "available",
    "get",
    "register",
    "STATISTICS",
    "canonical_correlations",
    "cca",
    "svcca",
    "pwcca",
    "svd_reduction",
    "linear_regression",
    "procrustes",
    "StreamingCCA",
    "linear_cka",
    "linear_hsic",
    "rbf_cka",
    "minibatch_cka",
]
