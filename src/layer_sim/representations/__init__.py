"""Representations of any ``nn.Module``: hooks, batch by batch, with gradients of any objective."""

from layer_sim.representations.extraction import (
    ACTIVATION_TYPES,
    OUTPUT,
    Representations,
    extract,
    iter_representations,
)

__all__ = ["ACTIVATION_TYPES", "OUTPUT", "Representations", "extract", "iter_representations"]
