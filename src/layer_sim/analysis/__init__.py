"""Analyses on representations: every-layer comparison, layer identification, statistics."""

from layer_sim.analysis.comparison import LayerIdentification, SimilarityMatrix, compare, layer_identification

__all__ = ["LayerIdentification", "SimilarityMatrix", "compare", "layer_identification"]
