"""Analyses on representations: every-layer comparison, layer identification, statistics."""

from layer_sim.analysis.comparison import SimilarityMatrix, compare
from layer_sim.analysis.identification import LayerIdentification, layer_identification

__all__ = ["LayerIdentification", "SimilarityMatrix", "compare", "layer_identification"]
