"""Experiments built on the library: each returns a result object; the CLI only prints and saves."""

from layer_sim.experiments.sanity import SanityCheckResult, sanity_check

__all__ = ["sanity_check", "SanityCheckResult"]
