"""Training: one recipe, one loop with callbacks, the batched ensemble, checkpoints and the cache.

Modules: ``recipe`` (hyperparameters and schedule), ``spec`` (what names a trained network and its
cache key), ``loop`` (:func:`fit`), ``ensemble`` (:func:`fit_ensemble`), ``_steps`` (the step
helpers both share), ``state`` (callbacks and results), ``augment``, ``checkpoint`` and ``cache``,
``resume`` (epoch checkpoints) and ``pruning`` (masks, global magnitude pruning, IMP).
Imports only models, data and the package's core modules (never measures or representations).
"""

from layer_sim.training._steps import evaluate
from layer_sim.training.augment import random_shift
from layer_sim.training.cache import checkpoint_dir, train_or_load, train_or_load_ensemble
from layer_sim.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from layer_sim.training.ensemble import fit_ensemble
from layer_sim.training.loop import fit
from layer_sim.training.recipe import DEFAULT_RECIPE, Recipe
from layer_sim.training.spec import DEFAULT_SPEC, NetworkSpec
from layer_sim.training.state import Callback, FitResult, TrainState
from layer_sim.training.pruning import PrunedNetwork, PruningSpec, global_magnitude_prune, imp

__all__ = [
    "Recipe",
    "DEFAULT_RECIPE",
    "NetworkSpec",
    "DEFAULT_SPEC",
    "fit",
    "fit_ensemble",
    "evaluate",
    "random_shift",
    "Callback",
    "TrainState",
    "FitResult",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_dir",
    "train_or_load",
    "train_or_load_ensemble",
    "PruningSpec",
    "PrunedNetwork",
    "global_magnitude_prune",
    "imp",
]
