"""Network architectures studied by layer_sim, and the specs that name them."""

from layer_sim.models.cnn import LENET5_LAYER_TYPES, LeNet5, LeNet5Spec, Tiny10, Tiny10Spec
from layer_sim.models.mlp import ACTIVATIONS, DEFAULT_WIDTHS, MLP, MLPSpec

#: Model specs by ``kind`` (what a checkpoint or a cache key records as the model's class).
MODEL_SPECS: dict[str, type] = {spec.kind: spec for spec in (MLPSpec, LeNet5Spec, Tiny10Spec)}

__all__ = ["MLP", "MLPSpec", "LeNet5", "LeNet5Spec", "LENET5_LAYER_TYPES", "Tiny10", "Tiny10Spec", "MODEL_SPECS",
           "DEFAULT_WIDTHS", "ACTIVATIONS"]
