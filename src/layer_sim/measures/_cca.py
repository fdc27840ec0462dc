"""CCA-family similarity indexes (CCA, SVCCA, PWCCA, linear regression) and Procrustes.

All of them compare the column spaces of the *centred* representations. Each is a registry
``Measure`` whose ``prepare`` does the per-representation work once (centring + a rank-revealing
thin SVD, see :mod:`layer_sim.measures._linalg` for the rank tolerance) and whose ``score`` only
multiplies two small orthonormal bases; the public functions are thin wrappers over the registry.

Every index here is invariant to isotropic scaling, so a representation is multiplied by a
power of two when its magnitude is outside the safe window (:mod:`layer_sim.measures._features`):
``c * x`` gives the value of ``x`` for any representable ``c * x`` (float64 1e+-300 included).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from layer_sim._options import Choice, Real, check, strict_signature
from layer_sim.errors import DegenerateInputError
from layer_sim.measures._features import CONSTANT, centred, degenerate_error
from layer_sim.measures._linalg import SVDState, svd_state
from layer_sim.measures._registry import Measure, get, register
from layer_sim.measures._validation import check_pair

__all__ = [
    "STATISTICS",
    "canonical_correlations",
    "cca",
    "svcca",
    "pwcca",
    "linear_regression",
    "procrustes",
]

STATISTICS = ("rho", "r2")
"""Summaries of the canonical correlations accepted as ``statistic=``."""

STATISTIC = Choice(*STATISTICS)
VARIANCE = Real(0.0, 1.0, low_open=True)


# --- shared kernels (trust validated float tensors) -----------------------------------------


def _prepare_basis(X: torch.Tensor) -> SVDState:
    c = centred(X)
    return svd_state(c.xc, x_norm=c.x_norm, n=X.shape[0], constant=c.constant)


def _require_variation(fn: str, a, b) -> None:
    """Name the constant input; prepare cannot, because it does not know which side it is."""
    for side, state in (("x", a), ("y", b)):
        if state.degenerate is not None:
            raise degenerate_error(fn, side, state.degenerate)


def _correlations(a: SVDState, b: SVDState) -> torch.Tensor:
    # Singular values of U_x^T U_y are the cosines of the principal angles between the two
    # column spaces; they lie in [0, 1] exactly, so the clamp only removes rounding excursions.
    return torch.linalg.svdvals(a.u.mT @ b.u).clamp(0.0, 1.0)


def _summarise(rho: torch.Tensor, statistic: str) -> torch.Tensor:
    return rho.mean() if statistic == "rho" else rho.square().mean()


def _svcca_keep(s: torch.Tensor, variance: float) -> int:
    """Fewest leading directions whose share of sum(s**2) reaches ``variance``."""
    if variance == 1.0 or s.numel() == 0:
        # A share can round to 1.0 before the last direction above the rank tolerance;
        # variance=1 must keep them all so that svcca(variance=1) == cca. Rank 0 stays 0 for
        # the score to report as constant input.
        return s.numel()
    cumulative = torch.cumsum(s.square(), dim=0)
    share = cumulative / cumulative[-1]
    return int((share < variance).sum()) + 1


# --- registry entries (module-level functions bound with partial, so measures pickle) --------


def _cca_score(a: SVDState, b: SVDState, *, name: str, statistic: str) -> torch.Tensor:
    _require_variation(name, a, b)
    return _summarise(_correlations(a, b), statistic)


def _cca_family(name: str, prepare_fn, statistic: str) -> Measure:
    return Measure(name, prepare_fn, partial(_cca_score, name=name, statistic=statistic), symmetric=True)


@register("cca_rho")
def _cca_rho() -> Measure:
    return _cca_family("cca_rho", _prepare_basis, "rho")


@register("cca_r2")
def _cca_r2() -> Measure:
    return _cca_family("cca_r2", _prepare_basis, "r2")


def _svcca_prepare(X: torch.Tensor, *, variance: float) -> SVDState:
    state = _prepare_basis(X)
    return state.truncate(_svcca_keep(state.s, variance))


@register("svcca_rho", variance=(VARIANCE, 0.99))
def _svcca_rho(*, variance: float) -> Measure:
    return _cca_family("svcca_rho", partial(_svcca_prepare, variance=variance), "rho")


@register("svcca_r2", variance=(VARIANCE, 0.99))
def _svcca_r2(*, variance: float) -> Measure:
    return _cca_family("svcca_r2", partial(_svcca_prepare, variance=variance), "r2")


def _pwcca_score(a: SVDState, b: SVDState) -> torch.Tensor:
    _require_variation("pwcca", a, b)
    # Shapes alone force rank_x + rank_y - (n - 1) canonical correlations to 1. Any orthonormal
    # basis of their shared subspace is a valid set of canonical variates, and the weights
    # sum_j |<h_i, x_j>| change with that choice (an L1 sum is not rotation invariant): measured,
    # permuting x's neurons then moves PWCCA (0.95729-0.95745 at n = 282, p = q = 256), so no
    # value is the right one. A single forced correlation has a unique variate, and when every
    # correlation is forced the weights no longer matter (PWCCA = 1).
    tied = a.rank + b.rank - (a.n - 1)
    if 2 <= tied < min(a.rank, b.rank):
        raise DegenerateInputError(
            f"pwcca: x has rank {a.rank} and y rank {b.rank} on {a.n} examples, so {tied} canonical correlations "
            f"are forced to 1 and their variates, hence PWCCA's weights, are not unique; use at least "
            f"{a.rank + b.rank + 1} examples"
        )
    # M = U_x^T U_y = A diag(rho) B^T; the canonical variates of x are H = U_x A, so
    # H^T X_c = A^T U_x^T U_x diag(s) V^T = A^T diag(s) V^T: no n-sized product needed.
    A, rho, _ = torch.linalg.svd(a.u.mT @ b.u, full_matrices=False)
    weights = ((A.mT * a.s) @ a.vt).abs().sum(dim=1)
    # A convex combination of values in [0, 1]; the clamp removes rounding of the weights' sum.
    return (weights / weights.sum() * rho).sum().clamp(0.0, 1.0)


@register("pwcca")
def _pwcca() -> Measure:
    return Measure("pwcca", _prepare_basis, _pwcca_score, symmetric=False)


def _linear_regression_score(a: SVDState, b: SVDState) -> torch.Tensor:
    _require_variation("linear_regression", a, b)
    # Y_c = U_y diag(s_y) V_y^T and V_y has orthonormal rows, so
    # ||Q_x^T Y_c||_F = ||U_x^T U_y diag(s_y)||_F and ||Y_c||_F^2 = sum(s_y^2).
    explained = ((a.u.mT @ b.u) * b.s).square().sum()
    return (explained / b.s.square().sum()).clamp(0.0, 1.0)


@register("linear_regression")
def _linear_regression() -> Measure:
    return Measure("linear_regression", _prepare_basis, _linear_regression_score, symmetric=False)


@dataclass(frozen=True)
class _ProcrustesState:
    """``f`` is ``X_c`` or ``X_c B`` (see :func:`_procrustes_prepare`), power-of-two scaled;
    ``rank == 0`` marks constant input."""

    n: int
    f: torch.Tensor
    norm: torch.Tensor
    rank: int

    @property
    def degenerate(self) -> str | None:
        return CONSTANT if self.rank == 0 else None


def _procrustes_prepare(X: torch.Tensor) -> _ProcrustesState:
    n, p = X.shape
    c = centred(X)
    Xc = c.xc
    norm = torch.linalg.matrix_norm(Xc)
    if c.constant:
        return _ProcrustesState(n, Xc, norm, 0)
    if p > n:
        # X_c = X_c B B^T for an orthonormal basis B of its row space (rank <= n - 1), so
        # X_c^T Y_c and (X_c B)^T Y_c have the same singular values: scores then cost
        # O(n * r_x * r_y) instead of forming a p x q product. B is detached: the gradient
        # of the nuclear norm lies in that row space already, so it is unchanged.
        B = svd_state(Xc.detach(), x_norm=c.x_norm, n=n, constant=False).vt.mT
        Xc = Xc @ B
    return _ProcrustesState(n, Xc, norm, Xc.shape[1])


def _procrustes_score(a: _ProcrustesState, b: _ProcrustesState) -> torch.Tensor:
    _require_variation("procrustes", a, b)
    nuclear = torch.linalg.svdvals(a.f.mT @ b.f).sum()
    # ||A^T B||_* <= ||A||_F ||B||_F (von Neumann's trace inequality): clamp removes rounding only.
    return (nuclear / a.norm / b.norm).clamp(0.0, 1.0)


@register("procrustes")
def _procrustes() -> Measure:
    return Measure("procrustes", _procrustes_prepare, _procrustes_score, symmetric=True)


# --- public functions -----------------------------------------------------------------------


@strict_signature
def canonical_correlations(x, y):
    """Canonical correlations of two representations of the same examples.

    Parameters
    ----------
    x : {array-like, torch.Tensor} of shape (n_examples, p)
    y : {array-like, torch.Tensor} of shape (n_examples, q)

    Returns
    -------
    rho : numpy.ndarray or torch.Tensor of shape (k,)
        ``rho_1 >= ... >= rho_k`` in [0, 1] with ``k = min(rank X_c, rank Y_c)``, in float64;
        a tensor on the input's device if ``x`` or ``y`` is a tensor.

    Raises
    ------
    InputError
        NaN/Inf, different numbers of rows, fewer than 2 examples.
    DegenerateInputError
        ``x`` or ``y`` is constant (the message names which).

    Notes
    -----
    With ``X_c = U_x S_x V_x^T`` the rank-revealing thin SVD of the centred ``x`` (rank tolerance
    ``max(n, p) * eps * s_max``), ``rho`` are the singular values of ``U_x^T U_y``: the cosines
    of the principal angles between the column spaces (Hotelling 1936; Björck & Golub 1973).

    Centring removes one dimension, so ranks are at most ``n - 1``. If
    ``rank X_c + rank Y_c > n - 1`` the two column spaces must intersect and at least
    ``rank X_c + rank Y_c - (n - 1)`` correlations equal 1 whatever the data; when
    ``p >= n - 1`` for both inputs (and the data are generic) *all* are 1. CCA can then not
    distinguish representations (Kornblith et al. 2019, Sec. 3); use ``svcca`` or CKA, or
    more examples.

    float32 (or integer) inputs are promoted exactly to float64, so the result is the float64
    value for the rounded inputs; it differs from the value for the unrounded data by roughly
    ``kappa * 6e-8`` (``kappa``: condition number of the centred inputs), e.g. below 1e-5 for
    ``kappa <= 10`` as the tests check.

    References
    ----------
    Hotelling, H. (1936). Relations between two sets of variates. Biometrika 28, 321-377.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import canonical_correlations
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((50, 3))
    >>> y = np.c_[x[:, :1] @ [[2.0]] + 1.0, rng.standard_normal((50, 1))]
    >>> rho = canonical_correlations(x, y)  # y's first column is an affine map of x's first
    >>> len(rho), round(float(rho[0]), 6)
    (2, 1.0)
    """
    X, Y, numpy_out = check_pair(x, y, fn="canonical_correlations")
    a, b = _prepare_basis(X), _prepare_basis(Y)
    _require_variation("canonical_correlations", a, b)
    rho = _correlations(a, b)
    return rho.detach().cpu().numpy() if numpy_out else rho


@strict_signature
def cca(x, y, *, statistic: str = "rho"):
    r"""Mean canonical correlation (or mean squared, ``R^2_CCA``) of two representations.

    Parameters
    ----------
    x : {array-like, torch.Tensor} of shape (n_examples, p)
        Rows are examples; inputs of rank > 2 are flattened per example.
    y : {array-like, torch.Tensor} of shape (n_examples, q)
        ``q`` may differ from ``p``.
    statistic : {"rho", "r2"}, default="rho"
        ``"rho"``: :math:`\bar\rho = \frac1k\sum_i \rho_i`;
        ``"r2"``: :math:`R^2_{CCA} = \frac1k\sum_i \rho_i^2 = \|U_x^T U_y\|_F^2 / k`.

    Returns
    -------
    float or torch.Tensor
        In [0, 1]; a Python float for NumPy input, a 0-d float64 tensor on the input's device
        for torch input. Symmetric, invariant to translation and to invertible linear maps of
        either input.

    Raises
    ------
    InputError, DegenerateInputError
        As :func:`canonical_correlations`.
    UnknownNameError
        ``statistic`` is not one of ``STATISTICS``.

    Notes
    -----
    ``rho_1..rho_k`` are :func:`canonical_correlations`, ``k = min(rank X_c, rank Y_c)``.
    Registry names ``"cca_rho"`` and ``"cca_r2"``. See :func:`canonical_correlations` for the
    rank tolerance and for why CCA is trivially 1 when ``p >= n - 1``.

    References
    ----------
    Hotelling (1936), Biometrika 28. Kornblith, Norouzi, Lee & Hinton (2019), Similarity of
    neural network representations revisited, ICML, Sec. 4 / Table 1 (notation).

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import cca
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((100, 4))
    >>> round(cca(x, x @ rng.standard_normal((4, 4)) + 3.0), 6)  # invertible map + shift
    1.0
    """
    return get(f"cca_{check('cca', 'statistic', STATISTIC, statistic)}")(x, y)


@strict_signature
def svcca(x, y, *, variance: float = 0.99, statistic: str = "rho"):
    r"""SVCCA: CCA between the top singular directions of each representation.

    For each input separately, keep the fewest ``d`` leading singular directions of the centred
    matrix :math:`X_c = U S V^T` with
    :math:`\sum_{i\le d} s_i^2 / \sum_i s_i^2 \ge` ``variance``, then return
    ``cca(U[:, :d] S[:d], ...)``, i.e. statistics of the singular values of
    :math:`U_{x,:d_x}^T U_{y,:d_y}`.

    Parameters
    ----------
    x, y : {array-like, torch.Tensor} of shape (n_examples, p) and (n_examples, q)
    variance : float in (0, 1], default=0.99
        Share of variance to keep; ``1`` keeps every direction above the rank tolerance, so
        ``svcca(variance=1) == cca``.
    statistic : {"rho", "r2"}, default="rho"
        As in :func:`cca`.

    Returns
    -------
    float or torch.Tensor
        In [0, 1]; symmetric. Registry names ``"svcca_rho"``, ``"svcca_r2"`` (``variance=``).

    Raises
    ------
    InputError
        Bad arrays (see :func:`cca`).
    ConfigError
        ``variance`` is not a number in (0, 1].
    DegenerateInputError, UnknownNameError
        As :func:`cca`.

    References
    ----------
    Raghu, Gilmer, Yosinski & Sohl-Dickstein (2017). SVCCA: Singular vector canonical
    correlation analysis for deep learning dynamics and interpretability. NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import svcca
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 5)) * [10.0, 1.0, 1.0, 0.1, 0.01]
    >>> round(svcca(x, 2.0 * x, variance=0.9), 6)
    1.0
    """
    name = f"svcca_{check('svcca', 'statistic', STATISTIC, statistic)}"
    return get(name, variance=check("svcca", "variance", VARIANCE, variance))(x, y)


@strict_signature
def pwcca(x, y):
    r"""Projection-weighted CCA (PWCCA) of ``x`` with respect to ``y``; not symmetric.

    .. math:: \mathrm{PWCCA}(X, Y) = \sum_{i=1}^k \alpha_i \rho_i, \qquad
              \alpha_i = \frac{\sum_j |\langle h_i, x_j\rangle|}
                              {\sum_l \sum_j |\langle h_l, x_j\rangle|}

    where ``rho_i`` are the canonical correlations, ``h_i`` the unit-norm canonical variates of
    ``x`` (``h_i = U_x a_i`` with ``a_i`` the left singular vectors of ``U_x^T U_y``) and
    ``x_j`` the centred columns of ``x``: canonical directions that account for more of ``x``
    get more weight.

    Parameters
    ----------
    x, y : {array-like, torch.Tensor} of shape (n_examples, p) and (n_examples, q)
        The weights come from ``x``.

    Returns
    -------
    float or torch.Tensor
        In [0, 1]. Registry name ``"pwcca"`` (``symmetric=False``).

    Raises
    ------
    InputError, DegenerateInputError
        As :func:`canonical_correlations`; also DegenerateInputError when too few examples force
        two or more (but not all) canonical correlations to 1 (see Notes).

    Notes
    -----
    Deviations from the reference code (``google/svcca``, ``pwcca.compute_pwcca``):

    * the weights always come from ``x``; the reference uses whichever input has fewer
      neurons, so its value depends on the widths;
    * variates and activations are centred; the reference adds the neuron means back to the
      variates, re-orthonormalises them by QR and projects *uncentred* activations, which makes
      its weights depend on the activations' offsets;
    * rank is decided by the SVD tolerance of :func:`canonical_correlations` instead of the
      reference's ``epsilon`` regularisation and low-activation neuron filtering.

    When canonical correlations are tied the variates, hence the weights, are not unique. Ties
    the shapes force (``rank X_c + rank Y_c - (n - 1) >= 2`` correlations equal to 1, fewer than
    all of them) raise :class:`~layer_sim.errors.DegenerateInputError`; ties in the data itself
    (e.g. ``y`` repeating some of ``x``'s columns) are not detected.

    References
    ----------
    Morcos, Raghu & Bengio (2018). Insights on representational similarity in neural networks
    with canonical correlation. NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import pwcca
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((100, 3))
    >>> round(pwcca(x, x @ rng.standard_normal((3, 3))), 6)
    1.0
    """
    return get("pwcca")(x, y)


@strict_signature
def linear_regression(x, y):
    r"""Share of ``y``'s variance explained by a least-squares linear fit from ``x``.

    .. math:: R^2_{LR}(X \to Y) = 1 - \frac{\min_B \|Y_c - X_c B\|_F^2}{\|Y_c\|_F^2}
              = \frac{\|Q_X^T Y_c\|_F^2}{\|Y_c\|_F^2}

    with ``Q_X`` an orthonormal basis of the centred ``x`` (intercept included through the
    centring). Not symmetric: this fits ``y`` from ``x``; Kornblith et al. (2019, Table 1)
    write the reverse orientation ``||Q_Y^T X||^2 / ||X||^2``, i.e. ``linear_regression(y, x)``.

    Parameters
    ----------
    x, y : {array-like, torch.Tensor} of shape (n_examples, p) and (n_examples, q)

    Returns
    -------
    float or torch.Tensor
        In [0, 1]; 1 when ``y`` is an affine function of ``x`` (and trivially when
        ``rank X_c = n - 1``, e.g. ``p >= n - 1``). Registry name ``"linear_regression"``.

    Raises
    ------
    InputError, DegenerateInputError
        As :func:`canonical_correlations`.

    References
    ----------
    Kornblith et al. (2019), ICML, Sec. 4 / Table 1.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import linear_regression
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((100, 3))
    >>> round(linear_regression(x, x @ rng.standard_normal((3, 2)) + 1.0), 6)
    1.0
    """
    return get("linear_regression")(x, y)


@strict_signature
def procrustes(x, y):
    r"""Orthogonal Procrustes similarity of two representations.

    .. math:: \mathrm{procrustes}(X, Y) = \|\tilde X^T \tilde Y\|_*
              = \max_{Q^TQ = I} \langle \tilde X, \tilde Y Q \rangle_F,
              \qquad \tilde X = X_c / \|X_c\|_F

    (nuclear norm; ``Q`` has orthonormal columns, zero-padding the narrower input). The
    squared Procrustes distance of the normalised inputs is ``2 - 2 * procrustes`` and
    Williams et al.'s angular shape metric is ``arccos(procrustes)``.

    Parameters
    ----------
    x, y : {array-like, torch.Tensor} of shape (n_examples, p) and (n_examples, q)

    Returns
    -------
    float or torch.Tensor
        In [0, 1]; 1 iff ``y`` is an orthogonal map of ``x`` up to translation and isotropic
        scaling. Symmetric. Differentiable for torch input wherever the nuclear norm is, i.e.
        where ``X_c^T Y_c`` has rank ``min(rank X_c, rank Y_c)`` (generic data). Registry name
        ``"procrustes"``.

    Raises
    ------
    InputError, DegenerateInputError
        As :func:`canonical_correlations`.

    Notes
    -----
    When ``p > n`` the prepared state is ``X_c B`` with ``B`` an orthonormal basis of the row
    space of ``X_c`` (rank at most ``n - 1``), so scoring never forms a ``p x q`` matrix.

    References
    ----------
    Schönemann, P. H. (1966). A generalized solution of the orthogonal Procrustes problem.
    Psychometrika 31, 1-10. Williams, Kunz, Kornblith & Linderman (2021). Generalized shape
    metrics on neural representations. NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import procrustes
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((100, 3))
    >>> Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    >>> round(procrustes(x, 5.0 * x @ Q - 2.0), 6)
    1.0
    """
    return get("procrustes")(x, y)
