"""Learning dynamics: how layers align with the targets while a network trains.

:class:`AlignmentRecorder` is a trainer callback (``fit(..., callbacks=[recorder])``) that records
the alignment index between chosen layers and the targets after every (or every k-th) optimiser
step, and on fixed probe sets at epoch ends; :func:`probe_sets` picks those probe sets from a task.
Imports measures and representations; never training, analysis or experiments (a recorder is a
callback, and the trainer knows callbacks only by their two methods).
"""

from layer_sim.dynamics.recorder import BATCH, AlignmentRecorder, one_hot_targets, probe_sets

__all__ = ["AlignmentRecorder", "BATCH", "one_hot_targets", "probe_sets"]
