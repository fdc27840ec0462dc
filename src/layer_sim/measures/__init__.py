"""Similarity indexes: pure functions on (n_examples, n_features) arrays/tensors, plus a registry."""

from layer_sim.measures._registry import Measure, available, get, register

__all__ = ["Measure", "available", "get", "register"]
