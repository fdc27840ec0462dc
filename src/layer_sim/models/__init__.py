"""Network architectures studied by layer_sim, and the specs that name them."""

from layer_sim.models.mlp import ACTIVATIONS, DEFAULT_WIDTHS, MLP, MLPSpec

#: Model specs by ``kind`` (what a checkpoint or a cache key records as the model's class).
MODEL_SPECS: dict[str, type[MLPSpec]] = {MLPSpec.kind: MLPSpec}

__all__ = ["MLP", "MLPSpec", "MODEL_SPECS", "DEFAULT_WIDTHS", "ACTIVATIONS"]
