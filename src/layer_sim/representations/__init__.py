"""Representations of any ``nn.Module``: hooks, batch by batch, with gradients of any objective."""

from layer_sim.representations.extraction import (
    ACTIVATION_TYPES,
    OUTPUT,
    Representations,
    extract,
    iter_representations,
)
from layer_sim.representations.layouts import LAYOUTS, cca_rows_needed, conv_layout, with_layout

__all__ = ["ACTIVATION_TYPES", "OUTPUT", "Representations", "extract", "iter_representations", "LAYOUTS",
           "conv_layout", "with_layout", "cca_rows_needed"]
