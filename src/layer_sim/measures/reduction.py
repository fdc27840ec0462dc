r"""SVD reduction: the leading singular directions of a representation that keep a share of its variance.

The first step of SVCCA (Raghu et al. 2017) and of the original layer_sim's CCA pipeline
(``svd_reduction(tensor, var_fract_kept=0.99)``), public so that any index can be applied to the
reduced data. :func:`~layer_sim.measures.svcca` uses the same rule, so
``svcca(x, y, variance=v) == cca(svd_reduction(x, variance=v), svd_reduction(y, variance=v))``.
"""

from __future__ import annotations

import torch

from layer_sim._options import check, strict_signature
from layer_sim.measures._cca import VARIANCE, _svcca_keep
from layer_sim.measures._features import CONSTANT, centred, degenerate_error, ldexp
from layer_sim.measures._linalg import svd_state
from layer_sim.measures._validation import as_matrix

__all__ = ["svd_reduction"]


@strict_signature
def svd_reduction(x, *, variance: float = 0.99):
    r"""The centred ``x`` projected on its fewest leading singular directions that keep ``variance``.

    With :math:`X_c = U S V^\top` the rank-revealing thin SVD of the column-centred input
    (:math:`s_1 \ge s_2 \ge \dots`, cut at the rank tolerance of
    :func:`~layer_sim.measures.canonical_correlations`), keep the fewest :math:`d` directions with
    :math:`\sum_{i \le d} s_i^2 / \sum_i s_i^2 \ge` ``variance`` and return
    :math:`U_{:, :d} \operatorname{diag}(s_{:d}) = X_c V_{:, :d}`, an ``(n, d)`` matrix with
    orthogonal columns of norms :math:`s_1, \dots, s_d`.

    Parameters
    ----------
    x : {array-like, torch.Tensor} of shape (n_examples, p)
        Rows are examples; higher-rank inputs are flattened per example.
    variance : float in (0, 1], default=0.99
        Share of the variance to keep; 1 keeps every direction above the rank tolerance.

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (n_examples, d)
        float64; a tensor on the input's device for torch input (differentiable), else an array.
        :math:`d \le \min(n - 1, p)`.

    Raises
    ------
    InputError
        NaN/Inf or fewer than 2 examples.
    ConfigError
        ``variance`` outside (0, 1].
    DegenerateInputError
        ``x`` is constant (no variance to keep).

    Notes
    -----
    The original layer_sim keeps ``len(where(cumulative_share <= v)) + 1`` directions, one more
    than this when a cumulative share equals ``v`` exactly, and refuses ``p > n``; here any
    shape is accepted, and :math:`d < n` always.

    References
    ----------
    Raghu, Gilmer, Yosinski & Sohl-Dickstein (2017). SVCCA: Singular vector canonical correlation
    analysis for deep learning dynamics and interpretability. NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 4)) * [10.0, 3.0, 0.1, 0.01]
    >>> svd_reduction(x, variance=0.99).shape
    (200, 2)
    """
    variance = check("svd_reduction", "variance", VARIANCE, variance)
    X = as_matrix(x, fn="svd_reduction")
    c = centred(X)  # SVCCA's preparation: the same scaling, centring and constant test
    state = svd_state(c.xc, x_norm=c.x_norm, n=X.shape[0], constant=c.constant)
    if state.degenerate is not None:
        raise degenerate_error("svd_reduction", "x", CONSTANT)
    kept = state.truncate(_svcca_keep(state.s, variance))
    # centred() may have scaled by an exact power of two (far out-of-range magnitudes): undo it.
    out = ldexp(kept.u * kept.s, -c.exponent)
    return out if isinstance(x, torch.Tensor) else out.detach().cpu().numpy()
