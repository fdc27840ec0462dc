"""Similarity indexes: pure functions on (n_examples, n_features) arrays/tensors, plus a registry.

Public indexes (``linear_cka``, ``rbf_cka``, ``cca``, ...) validate their input, prepare each
representation once and score pairs; ``get(name, **params)`` returns the same index as a
:class:`Measure` (prepare / score / matrix), named by a picklable :class:`MeasureSpec`.
Kernels and CKA on given Gram matrices: :func:`gram_linear`, :func:`gram_rbf`,
:func:`centre_gram`, :func:`gram_cka`. With gradients (Tang et al. 2020): :func:`gram_gradient`,
:func:`gradient_cka`, :func:`gradient_nbs`, NBS :func:`nbs` / :func:`gram_nbs`, the count sketch
:func:`count_sketch`; CKA as a training loss: :func:`cka_loss`.
"""

from layer_sim.measures._registry import Measure, MeasureSpec, available, get, options, register
from layer_sim.measures.all_pairs import linear_cka_matrix
from layer_sim.measures.kernels import centre_gram, gram_linear, gram_rbf
from layer_sim.measures._cca import (
    STATISTICS,
    canonical_correlations,
    cca,
    linear_regression,
    procrustes,
    pwcca,
    svcca,
)
from layer_sim.measures._cka import gram_cka, linear_cka, linear_hsic, minibatch_cka, rbf_cka
from layer_sim.measures.streaming import StreamingCCA, StreamingLinearCKA
from layer_sim.measures._nbs import gram_nbs, nbs
from layer_sim.measures.gradient import gradient_cka, gradient_nbs, gram_gradient
from layer_sim.measures.sketch import count_sketch
from layer_sim.measures.loss import cka_loss
from layer_sim.measures.reduction import svd_reduction

__all__ = [
    "linear_cka_matrix",
    "StreamingLinearCKA",
    "Measure",
    "MeasureSpec",
    "available",
    "get",
    "options",
    "register",
    "STATISTICS",
    "canonical_correlations",
    "cca",
    "svcca",
    "pwcca",
    "svd_reduction",
    "linear_regression",
    "procrustes",
    "StreamingCCA",
    "linear_cka",
    "linear_hsic",
    "rbf_cka",
    "minibatch_cka",
    "gram_cka",
    "gram_linear",
    "gram_rbf",
    "centre_gram",
    "nbs",
    "gram_nbs",
    "gram_gradient",
    "gradient_cka",
    "gradient_nbs",
    "count_sketch",
    "cka_loss",
]
