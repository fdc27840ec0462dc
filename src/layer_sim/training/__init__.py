"""Training: one recipe, one loop with callbacks, the batched ensemble, checkpoints and the cache."""

from layer_sim.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from layer_sim.training.ensemble import fit_ensemble, train_ensemble, train_or_load_ensemble
from layer_sim.training.loop import DEFAULT_CONFIG, TrainConfig, fit, train_or_load

__all__ = [
    "Checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "fit_ensemble",
    "train_ensemble",
    "train_or_load_ensemble",
    "DEFAULT_CONFIG",
    "TrainConfig",
    "fit",
    "train_or_load",
]
