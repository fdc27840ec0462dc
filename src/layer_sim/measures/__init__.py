"""Similarity indexes: pure functions on (n_examples, n_features) arrays/tensors, plus a registry."""

from layer_sim.measures._registry import Measure, available, get, register
from layer_sim.measures.cca import (
    STATISTICS,
    canonical_correlations,
    cca,
    linear_regression,
    procrustes,
    pwcca,
    svcca,
)
from layer_sim.measures.streaming_cca import StreamingCCA

__all__ = [
    "Measure",
    "available",
    "get",
    "register",
    "STATISTICS",
    "canonical_correlations",
    "cca",
    "svcca",
    "pwcca",
    "linear_regression",
    "procrustes",
    "StreamingCCA",
]
