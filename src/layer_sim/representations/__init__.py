"""Representations of any ``nn.Module``: hooks, batch by batch, with optional gradients."""

from layer_sim.representations.extraction import ACTIVATION_TYPES, OUTPUT, Representations, extract

__all__ = ["ACTIVATION_TYPES", "OUTPUT", "Representations", "extract"]
