"""Network architectures studied by layer_sim."""

from layer_sim.models.mlp import ACTIVATIONS, DEFAULT_WIDTHS, MLP

__all__ = ["MLP", "DEFAULT_WIDTHS", "ACTIVATIONS"]
