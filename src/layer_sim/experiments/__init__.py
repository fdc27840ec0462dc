"""Experiments built on the library: each = spec -> stages of units -> run by the sweep driver -> collect(store).

:mod:`~layer_sim.experiments.driver` says what an experiment is (:class:`Experiment`) and runs one
(:func:`run_experiment`); :mod:`~layer_sim.experiments.networks` is the shared unit "train one
network"; :mod:`~layer_sim.experiments.sanity` (Kornblith et al.'s Table 2) and
:mod:`~layer_sim.experiments.seeds` (``layer-sim train``) are the experiments. Results are data
only; the CLI and :mod:`layer_sim.report` turn them into files.
"""

from layer_sim.experiments.driver import (
    Experiment,
    done_runs,
    experiment_key,
    experiment_names,
    get_experiment,
    register_experiment,
    run_experiment,
)
from layer_sim.experiments.sanity import SanityCheckResult, SanityCheckSpec, sanity_check
from layer_sim.experiments.seeds import SeedsResult, SeedsSpec, train_seeds

__all__ = [
    "Experiment",
    "register_experiment",
    "get_experiment",
    "experiment_names",
    "experiment_key",
    "run_experiment",
    "done_runs",
    "sanity_check",
    "SanityCheckSpec",
    "SanityCheckResult",
    "train_seeds",
    "SeedsSpec",
    "SeedsResult",
]
