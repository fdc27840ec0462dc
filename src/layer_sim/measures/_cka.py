"""Centered kernel alignment (CKA) and HSIC: linear, RBF, debiased and minibatch estimators.

Every public function here is ``get(name, **params)(x, y)``: the one validation gate, then a
per-representation ``prepare`` (centring, Gram or features, self-similarity) and a pairwise
``score``, so ``layer_sim.analysis.comparison`` can prepare each layer once.

References
----------
Kornblith, Norouzi, Lee & Hinton (2019). Similarity of neural network representations revisited. ICML.
Gretton, Bousquet, Smola & Schoelkopf (2005). Measuring statistical dependence with
Hilbert-Schmidt norms. ALT.
Song, Smola, Gretton, Bedo & Borgwardt (2012). Feature selection via dependence maximization. JMLR 13.
Nguyen, Raghu & Kornblith (2021). Do wide and deep networks learn the same things? ICLR.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from functools import partial

import torch

from layer_sim.errors import ConfigError, DegenerateInputError, UnknownNameError
from layer_sim.measures import _kernels as k
from layer_sim.measures._fast import linear_state_matrix
from layer_sim.measures._registry import Measure, get, register

__all__ = ["linear_cka", "linear_hsic", "rbf_cka", "minibatch_cka"]

# rbf_cka keeps the centred n x n Gram of a prepared representation up to this n (32 MiB in
# float64); beyond it, Gram rows are recomputed block by block and never stored whole.
RBF_DENSE_MAX_N = 2048

KERNELS = ("linear", "rbf")


# --------------------------------------------------------------------------- public functions


def linear_cka(x, y, *, debiased: bool = False):
    r"""Linear centered kernel alignment (Kornblith et al. 2019).

    .. math::

        \mathrm{CKA}(X, Y) = \frac{\mathrm{HSIC}(K, L)}{\sqrt{\mathrm{HSIC}(K, K)\,\mathrm{HSIC}(L, L)}}
        = \frac{\lVert Y_c^\top X_c \rVert_F^2}{\lVert X_c^\top X_c \rVert_F \, \lVert Y_c^\top Y_c \rVert_F},

    with :math:`K = X_c X_c^\top`, :math:`L = Y_c Y_c^\top` and :math:`X_c, Y_c` the column-centred
    inputs. Invariant to orthogonal maps, isotropic scaling and translation of either input; not
    to general invertible linear maps.

    Parameters
    ----------
    x : {array-like, Tensor} of shape (n_examples, n_features_x)
        Examples in rows; higher-rank inputs are flattened per example.
    y : {array-like, Tensor} of shape (n_examples, n_features_y)
        The same examples, in the same order.
    debiased : bool, default=False
        Replace the biased HSIC estimator by the unbiased HSIC_1 of Song et al. (2012) in the
        numerator and both denominator terms, exactly as Kornblith et al.'s reference code.
        The ratio is still not unbiased, and it can be negative. Needs n >= 4.

    Returns
    -------
    float or Tensor
        In [0, 1] (debiased: [-1, 1]). A Python float for NumPy input; a 0-d float64 tensor
        on the input's device, differentiable, for torch input.

    Raises
    ------
    InputError
        NaN/Inf, different numbers of rows, fewer than 2 (debiased: 4) examples.
    DegenerateInputError
        ``x`` or ``y`` is constant (the message names which), or, debiased, its unbiased
        self-HSIC is 0 (e.g. one example differs from n - 1 identical ones).

    Notes
    -----
    Route, chosen per representation when it is prepared: feature space (the p x p products
    above, O(n p^2), no n x n matrix) when n > p; Gram space (:math:`\langle K_c, L_c\rangle`,
    O(n^2 p)) when p >= n. A pair with one of each uses :math:`\langle K, L_c\rangle
    = \mathrm{tr}(X_c^\top L_c X_c)`. All routes agree to rounding.

    Debiased, feature route: with :math:`d_i = \lVert x_{c,i}\rVert^2`, :math:`e_i = \lVert
    y_{c,i}\rVert^2`, :math:`n(n-3)\,\mathrm{HSIC}_1 = \lVert Y_c^\top X_c\rVert_F^2 - \frac{n}{n-2}
    d^\top e + \frac{(\sum d)(\sum e)}{(n-1)(n-2)}`; Gram route: inner product of the U-centred
    Grams (Szekely & Rizzo 2014), the same quantity.

    Float32 input is upcast to float64 first, so it differs from float64 input only through the
    input rounding (relative 6e-8): for well-conditioned data the values agree to ~1e-6.

    References
    ----------
    Kornblith et al. (2019), ICML (CKA, and the linear and debiased forms in the reference code);
    Song et al. (2012), JMLR 13 (the unbiased estimator HSIC_1).

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import linear_cka
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 10))
    >>> q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    >>> round(linear_cka(x, 3.0 * x @ q + 1.0), 12)  # orthogonal map, scale and shift
    1.0
    >>> round(linear_cka(x, x[:, :5]), 2)  # isotropic x: about 5 / sqrt(5 * 10) = 0.71
    0.73
    """
    return get("linear_cka_debiased" if debiased else "linear_cka")(x, y)


def linear_hsic(x, y):
    r"""Unnormalised linear HSIC (Gretton et al. 2005), the "linear HSIC" of Kornblith et al. (2019), Table 2.

    .. math::

        \mathrm{HSIC}(X, Y) = \frac{\lVert Y_c^\top X_c \rVert_F^2}{(n-1)^2}
        = \frac{\mathrm{tr}(K H L H)}{(n-1)^2},

    the biased empirical HSIC with linear kernels :math:`K = XX^\top`, :math:`L = YY^\top`,
    :math:`H = I - \tfrac{1}{n}\mathbf{1}\mathbf{1}^\top`, normalised by :math:`(n-1)^2`
    (Gretton et al.'s estimator) so that it equals :math:`\lVert \mathrm{cov}(X, Y)
    \rVert_F^2`, the squared Frobenius norm of the sample cross-covariance. Not scale invariant;
    0 for a constant input. Same routes as :func:`linear_cka`.

    Parameters
    ----------
    x, y : {array-like, Tensor} of shape (n_examples, n_features)
        The same n >= 2 examples in rows.

    Returns
    -------
    float or Tensor
        Non-negative; float for NumPy input, 0-d tensor for torch input.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import linear_hsic
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> round(linear_hsic(x, 2 * x), 12)  # cov(x, 2x)^2 = (2 * 5/3)^2 = 100/9
    11.111111111111
    """
    return get("linear_hsic")(x, y)


def rbf_cka(x, y, *, sigma: float = 0.8, debiased: bool = False, block_size: int | None = None):
    r"""CKA with Gaussian (RBF) kernels, bandwidth a multiple of the median distance (Kornblith et al. 2019).

    .. math::

        K_{ij} = \exp\!\Big(-\frac{\lVert x_i - x_j\rVert^2}{2 s^2}\Big), \quad
        s^2 = \sigma^2 \,\mathrm{median}\{\lVert x_i - x_j\rVert^2 : 1 \le i, j \le n\},

    likewise L for y (each with its own median), then the CKA ratio of :func:`linear_cka` on
    K and L. The median is taken over the full n x n matrix of squared distances including its
    n zeros on the diagonal, the mean of the two middle values when n^2 is even: the reference
    code's ``np.median(sq_distances)`` in ``gram_rbf(x, threshold=sigma)``.

    Parameters
    ----------
    x, y : {array-like, Tensor} of shape (n_examples, n_features)
        The same examples in rows.
    sigma : float, default=0.8
        Bandwidth as a fraction of the median pairwise distance (Kornblith et al. used 0.2-0.8).
    debiased : bool, default=False
        Use the unbiased HSIC_1 of Song et al. (2012) (U-centred Grams); needs n >= 4.
    block_size : int or None, default=None
        Rows of the Gram matrix computed at a time. None: keep the full centred Gram when
        n <= 2048, else blocks of about 2^23 entries. An integer forces the blockwise path
        (same value to rounding); memory is then O(n * block_size + n p), whatever n.

    Returns
    -------
    float or Tensor
        In [0, 1] (debiased: [-1, 1]); float for NumPy input, differentiable 0-d tensor for torch.

    Raises
    ------
    DegenerateInputError
        ``x`` or ``y`` is constant, or its median squared distance is 0 (more than half of the
        n^2 pairs of examples coincide), which makes the bandwidth 0.

    Notes
    -----
    The exact median is found without storing the n^2 distances: a random sample of pairs
    brackets it, one blockwise pass counts the distances below the bracket and keeps the few
    inside, which are then sorted; a missed bracket is widened (exact in every case). Gradients
    flow through the kernel and through the bandwidth (via the pair(s) at the median). On the
    blockwise path autograd keeps every block for the backward pass (O(n^2) memory).

    See Also
    --------
    minibatch_cka : the minibatch estimator of Nguyen et al. (2021), a different estimator.

    References
    ----------
    Kornblith et al. (2019), ICML (RBF CKA with bandwidths 0.2-0.8 x median distance, and the
    reference code's ``gram_rbf``); Song et al. (2012), JMLR 13 (HSIC_1).

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import rbf_cka
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((100, 5))
    >>> q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    >>> round(rbf_cka(x, 2.0 * x @ q - 7.0), 12)  # distances scale uniformly: same kernel
    1.0
    """
    return get("rbf_cka", sigma=sigma, debiased=debiased, block_size=block_size)(x, y)


def minibatch_cka(x, y, *, kernel: str = "linear", sigma: float = 0.8, batch_size: int, seed: int = 0):
    r"""Minibatch CKA of Nguyen, Raghu & Kornblith (2021): unbiased HSIC_1 averaged over minibatches.

    .. math::

        \mathrm{CKA}_{\mathrm{mb}} = \frac{\frac1k\sum_b \mathrm{HSIC}_1(K_b, L_b)}
        {\sqrt{\frac1k\sum_b \mathrm{HSIC}_1(K_b, K_b)\;\frac1k\sum_b \mathrm{HSIC}_1(L_b, L_b)}},

    where :math:`K_b, L_b` are the Gram matrices of minibatch b and HSIC_1 is Song et al.'s
    unbiased estimator. This is a **different estimator** from full-data CKA
    (:func:`linear_cka`, :func:`rbf_cka`): both estimate population CKA (each minibatch average
    of HSIC_1 is unbiased, so the ratio converges as the number of batches grows), but on finite
    data the values differ, and this one depends on ``batch_size`` and ``seed``. Its memory is
    O(n * batch_size).

    Parameters
    ----------
    x, y : {array-like, Tensor} of shape (n_examples, n_features)
        The same examples in rows, n >= batch_size.
    kernel : {"linear", "rbf"}, default="linear"
        Kernel of each minibatch Gram. For "rbf" the bandwidth is set per minibatch with the
        median convention of :func:`rbf_cka`.
    sigma : float, default=0.8
        RBF bandwidth as a fraction of the minibatch's median distance (ignored for "linear").
    batch_size : int
        Minimum examples per minibatch, >= 4. The examples are shuffled with
        ``torch.randperm(n, generator=torch.Generator().manual_seed(seed))`` and split with
        ``torch.tensor_split`` into ``n // batch_size`` consecutive minibatches of near-equal
        size (so every example is used and every batch has at least ``batch_size``).
    seed : int, default=0
        Seed of the shuffle; x and y are shuffled identically.

    Returns
    -------
    float or Tensor
        In [-1, 1]; float for NumPy input, differentiable 0-d tensor for torch input.

    References
    ----------
    Nguyen, Raghu & Kornblith (2021), ICLR (minibatch CKA); Song et al. (2012), JMLR 13 (HSIC_1).

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import minibatch_cka
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((400, 8))
    >>> round(minibatch_cka(x, 2.0 * x + 1.0, batch_size=100), 12)
    1.0
    """
    return get("minibatch_cka", kernel=kernel, sigma=sigma, batch_size=batch_size, seed=seed)(x, y)


# --------------------------------------------------------------------------- shared pieces


def _rank_floor(n: int, dtype: torch.dtype) -> float:
    """Relative size below which a sum over n^2 terms is indistinguishable from rounding."""
    return 64 * n * torch.finfo(dtype).eps


def _raise_if_degenerate(name: str, **states) -> None:
    """Raise for the first prepared state (keyword = the side it came from) that has no variance."""
    for label, state in states.items():
        if state.degenerate is not None:
            raise DegenerateInputError(f"{name}: {label} {state.degenerate}; CKA is undefined")


def _check_real(fn: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{fn}: {name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_int(fn: str, name: str, value, *, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ConfigError(f"{fn}: {name} must be an integer >= {least}, got {value!r}")
    return int(value)


def _check_bool(fn: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{fn}: {name} must be True or False, got {value!r}")
    return value


# --------------------------------------------------------------------------- linear CKA / HSIC


@dataclass(frozen=True)
class LinearState:
    """A representation prepared for ``linear_cka``, ``linear_cka_debiased`` or ``linear_hsic``.

    Exactly one of ``features`` (centred X; feature route, n > p) and ``gram`` (centred Gram,
    U-centred when debiased; Gram route, p >= n) is set. ``self_hsic`` is ``<K_c, K_c>`` in the
    estimator's scaling ((n-1)^2 HSIC, or n(n-3) HSIC_1 when debiased); None for linear_hsic.
    """

    n: int
    features: torch.Tensor | None
    gram: torch.Tensor | None
    sq_rows: torch.Tensor | None  # squared norms of the centred rows; debiased feature route
    self_hsic: torch.Tensor | None
    degenerate: str | None


def _linear_state(
    X: torch.Tensor, *, unbiased: bool, normalise: bool = True, route: str | None = None
) -> LinearState:
    """Centre once, pick the route (``route`` forces it, for tests), and cache the self term."""
    n, p = X.shape
    route = route or ("feature" if n > p else "gram")
    Xc = k.centre(X)
    if route == "feature":
        state = LinearState(n, Xc, None, Xc.square().sum(dim=1) if unbiased else None, None, None)
    else:
        state = LinearState(n, None, k.centre_gram(Xc @ Xc.T, unbiased), None, None, None)
    if not normalise:  # unnormalised HSIC is well defined (0) for a constant representation
        return state
    reason = k.constant_reason(X, Xc)
    if reason is not None:
        return replace(state, degenerate=reason)
    self_hsic = _linear_cross(state, state, unbiased)
    # The U-centred Gram vanishes when K is additive off the diagonal (K_ij = f_i + f_j + c),
    # e.g. n - 1 identical examples and one other: HSIC_1 sees no dependence structure at all.
    if unbiased and self_hsic <= _rank_floor(n, X.dtype) * Xc.detach().square().sum() ** 2:
        reason = "has zero unbiased self-HSIC (its Gram matrix is additive off the diagonal)"
    return replace(state, self_hsic=self_hsic, degenerate=reason)


def _linear_cross(px: LinearState, py: LinearState, unbiased: bool) -> torch.Tensor:
    """``<K_c, L_c>`` in the estimator's scaling, by the cheapest route the two states allow."""
    if px.features is not None and py.features is not None:
        cross = px.features.T @ py.features
        xty = k.frobenius_dot(cross, cross)
        return k.debiased_dot(xty, px.sq_rows, py.sq_rows, px.n) if unbiased else xty
    if px.gram is not None and py.gram is not None:
        return k.frobenius_dot(px.gram, py.gram)
    f, g = (px.features, py.gram) if px.features is not None else (py.features, px.gram)
    # <K_c, G> = <F F^T, G> because G (double- or U-centred) has zero row sums and, U-centred,
    # a zero diagonal: centring F F^T changes only terms that G annihilates. O(n^2 p), no F F^T.
    return k.frobenius_dot(f, g @ f)


def _linear_cka_score(px: LinearState, py: LinearState, *, name: str, unbiased: bool) -> torch.Tensor:
    _raise_if_degenerate(name, x=px, y=py)
    cross = _linear_cross(px, py, unbiased)
    return k.normalised(name, cross, px.self_hsic, py.self_hsic, lower=-1.0 if unbiased else 0.0)


def _linear_hsic_score(px: LinearState, py: LinearState) -> torch.Tensor:
    return _linear_cross(px, py, unbiased=False) / (px.n - 1) ** 2


def _linear_cka_measure(name: str, unbiased: bool) -> Measure:
    score = partial(_linear_cka_score, name=name, unbiased=unbiased)
    return Measure(
        name=name,
        prepare_fn=partial(_linear_state, unbiased=unbiased),
        score_fn=score,
        symmetric=True,
        min_n=4 if unbiased else 2,
        # all layer pairs from one concatenated GEMM (biased estimator only)
        matrix_fn=None if unbiased else partial(linear_state_matrix, name=name, score=score, normalise=True),
    )


@register("linear_cka")
def _linear_cka_factory() -> Measure:
    return _linear_cka_measure("linear_cka", unbiased=False)


@register("linear_cka_debiased")
def _linear_cka_debiased_factory() -> Measure:
    return _linear_cka_measure("linear_cka_debiased", unbiased=True)


@register("linear_hsic")
def _linear_hsic_factory() -> Measure:
    return Measure(
        name="linear_hsic",
        prepare_fn=partial(_linear_state, unbiased=False, normalise=False),
        score_fn=_linear_hsic_score,
        symmetric=True,
        min_n=2,
        matrix_fn=partial(linear_state_matrix, name="linear_hsic", score=_linear_hsic_score, normalise=False),
    )


# --------------------------------------------------------------------------- RBF CKA


@dataclass(frozen=True)
class RBFState:
    """A representation prepared for ``rbf_cka``.

    Either ``gram`` (the centred Gram, n <= RBF_DENSE_MAX_N) is stored, or what recomputes any
    block of rows of it: centred features, their squared row norms, ``scale = 2 s^2`` and the
    centring offsets ``a`` (``K_c[i, j] = K[i, j] - a_i - a_j``).
    """

    n: int
    rows: int  # rows per block when scoring (n when the Gram is stored)
    unbiased: bool
    gram: torch.Tensor | None
    features: torch.Tensor | None
    sq_norms: torch.Tensor | None
    scale: torch.Tensor | None
    offsets: torch.Tensor | None
    self_hsic: torch.Tensor | None
    degenerate: str | None


def _rbf_state(
    X: torch.Tensor,
    *,
    sigma: float,
    unbiased: bool,
    block_size: int | None,
    sample_size: int = k.MEDIAN_SAMPLE,
) -> RBFState:
    """Median bandwidth, centring offsets and self term; the full Gram only when it is small."""
    n = X.shape[0]
    blockwise = block_size is not None or n > RBF_DENSE_MAX_N
    rows = block_size or k.block_rows(n)
    empty = RBFState(n, rows, unbiased, None, None, None, None, None, None, None)
    Xc = k.centre(X)
    reason = k.constant_reason(X, Xc)
    if reason is not None:
        return replace(empty, degenerate=reason)
    sq_norms = Xc.square().sum(dim=1)
    median = k.median_sq_dist(Xc, sq_norms, rows=rows, sample_size=sample_size)
    if median <= 0:
        return replace(
            empty,
            degenerate="has median squared distance 0 (more than half of the n^2 pairs of examples "
            "coincide), so the RBF bandwidth sigma^2 * median is 0",
        )
    scale = 2 * sigma**2 * median
    # K_ii = exp(0) = 1 exactly, so the zero-diagonal row sums the U-centring needs are row sums - 1.
    diagonal = 1.0 if unbiased else 0.0
    if not blockwise:
        K = k.rbf_block(Xc, sq_norms, scale, 0, n)
        gram = k.centre_block(K, k.centring_offsets(K.sum(dim=1) - diagonal, n, unbiased), 0, unbiased)
        return replace(empty, rows=n, gram=gram, self_hsic=k.frobenius_dot(gram, gram))
    # Blockwise, only the upper triangle is computed (blocks [s:e, s:]): half the work of full rows.
    blocks = ((s, e, k.rbf_block(Xc, sq_norms, scale, s, e)) for s, e in k.row_blocks(n, rows))
    row_sums = k.upper_row_sums(blocks, n, like=Xc)
    state = replace(
        empty,
        features=Xc,
        sq_norms=sq_norms,
        scale=scale,
        offsets=k.centring_offsets(row_sums - diagonal, n, unbiased),
    )
    centred = (_rbf_centred_block(state, s, e) for s, e in k.row_blocks(n, rows))
    self_hsic = sum(k.symmetric_block_dot(B, B) for B in centred)
    return replace(state, self_hsic=self_hsic)


def _rbf_centred_block(state: RBFState, start: int, stop: int) -> torch.Tensor:
    """Block ``[start:stop, start:]`` of the centred Gram: sliced when stored, else recomputed."""
    if state.gram is not None:
        return state.gram[start:stop, start:]
    K = k.rbf_block(state.features, state.sq_norms, state.scale, start, stop)
    return k.centre_block(K, state.offsets, start, state.unbiased)


def _rbf_cka_score(px: RBFState, py: RBFState, *, name: str) -> torch.Tensor:
    _raise_if_degenerate(name, x=px, y=py)
    rows = min(px.rows, py.rows)
    cross = sum(
        k.symmetric_block_dot(_rbf_centred_block(px, s, e), _rbf_centred_block(py, s, e))
        for s, e in k.row_blocks(px.n, rows)
    )
    return k.normalised(name, cross, px.self_hsic, py.self_hsic, lower=-1.0 if px.unbiased else 0.0)


def _rbf_cka_matrix(pa: list[RBFState], pb: list[RBFState], *, name: str) -> torch.Tensor:
    """``Measure.matrix_fn``: ``score`` for every pair, computing each layer's centred Gram block once
    per row block (not once per pair) and all pairwise block products as one GEMM."""
    for state in pa:
        _raise_if_degenerate(name, x=state)
    for state in pb:
        _raise_if_degenerate(name, y=state)
    n = pa[0].n
    # Shorter blocks as layers add up: the stacked blocks of all layers stay near 4 single blocks.
    rows = max(1, min(min(st.rows for st in [*pa, *pb]), 4 * k.BLOCK_ELEMENTS // (n * (len(pa) + len(pb)))))
    cross = 0
    for s, e in k.row_blocks(n, rows):
        A = torch.stack([_rbf_centred_block(st, s, e) for st in pa])
        B = A if pb is pa else torch.stack([_rbf_centred_block(st, s, e) for st in pb])
        lead = e - s  # see k.symmetric_block_dot: the leading square counts once, the rest twice
        cross = cross + 2 * A.flatten(1) @ B.flatten(1).T - A[:, :, :lead].flatten(1) @ B[:, :, :lead].flatten(1).T
    self_a = torch.stack([st.self_hsic for st in pa])
    self_b = torch.stack([st.self_hsic for st in pb])
    return k.normalised(name, cross, self_a[:, None], self_b[None, :], lower=-1.0 if pa[0].unbiased else 0.0)


@register("rbf_cka")
def _rbf_cka_factory(*, sigma: float = 0.8, debiased: bool = False, block_size: int | None = None) -> Measure:
    sigma = _check_real("rbf_cka", "sigma", sigma)
    debiased = _check_bool("rbf_cka", "debiased", debiased)
    if block_size is not None:
        block_size = _check_int("rbf_cka", "block_size", block_size, least=1)
    return Measure(
        name="rbf_cka",
        prepare_fn=partial(_rbf_state, sigma=sigma, unbiased=debiased, block_size=block_size),
        score_fn=partial(_rbf_cka_score, name="rbf_cka"),
        matrix_fn=partial(_rbf_cka_matrix, name="rbf_cka"),
        symmetric=True,
        min_n=4 if debiased else 2,
        params={"sigma": sigma, "debiased": debiased, "block_size": block_size},
    )


# --------------------------------------------------------------------------- minibatch CKA


@dataclass(frozen=True)
class MinibatchState:
    """A representation prepared for ``minibatch_cka``: the U-centred Gram of every minibatch,
    scaled by ``1/sqrt(m (m - 3))`` so that ``<grams[b], other.grams[b]>`` is HSIC_1 of batch b."""

    n: int
    grams: tuple[torch.Tensor, ...]
    self_hsic: torch.Tensor | None
    degenerate: str | None


def _minibatch_state(X: torch.Tensor, *, kernel: str, sigma: float, batch_size: int, seed: int) -> MinibatchState:
    n = X.shape[0]
    Xc = k.centre(X)
    reason = k.constant_reason(X, Xc)
    if reason is not None:
        return MinibatchState(n, (), None, reason)
    # The shuffle depends only on (n, seed), so x and y get the same minibatches.
    perm = torch.randperm(n, generator=torch.Generator(device="cpu").manual_seed(seed)).to(X.device)
    grams, scale = [], 0.0
    for b, idx in enumerate(torch.tensor_split(perm, n // batch_size)):
        B, m = k.centre(Xc[idx]), idx.numel()
        if kernel == "linear":
            K = B @ B.T
        else:
            sq_norms = B.square().sum(dim=1)
            median = k.median_sq_dist(B, sq_norms, rows=m)
            if median <= 0:
                reason = f"has median squared distance 0 in minibatch {b}, so the RBF bandwidth is 0"
                return MinibatchState(n, (), None, reason)
            K = k.rbf_block(B, sq_norms, 2 * sigma**2 * median, 0, m)
        grams.append(k.centre_gram(K, unbiased=True) / math.sqrt(m * (m - 3)))
        scale = scale + K.detach().square().sum() / (m * (m - 3))
    self_hsic = sum(k.frobenius_dot(g, g) for g in grams)
    if self_hsic <= _rank_floor(batch_size, X.dtype) * scale:
        return MinibatchState(n, (), None, "has zero unbiased self-HSIC in every minibatch")
    return MinibatchState(n, tuple(grams), self_hsic, None)


def _minibatch_cka_score(px: MinibatchState, py: MinibatchState) -> torch.Tensor:
    _raise_if_degenerate("minibatch_cka", x=px, y=py)
    cross = sum(k.frobenius_dot(gx, gy) for gx, gy in zip(px.grams, py.grams))
    return k.normalised("minibatch_cka", cross, px.self_hsic, py.self_hsic, lower=-1.0)


@register("minibatch_cka")
def _minibatch_cka_factory(
    *, kernel: str = "linear", sigma: float = 0.8, batch_size: int | None = None, seed: int = 0
) -> Measure:
    if kernel not in KERNELS:
        raise UnknownNameError(f"minibatch_cka: unknown kernel {kernel!r}; available: {', '.join(KERNELS)}")
    sigma = _check_real("minibatch_cka", "sigma", sigma)
    if batch_size is None:
        raise ConfigError("minibatch_cka: batch_size is required (examples per minibatch, >= 4)")
    batch_size = _check_int("minibatch_cka", "batch_size", batch_size, least=4)
    seed = _check_int("minibatch_cka", "seed", seed, least=0)
    return Measure(
        name="minibatch_cka",
        prepare_fn=partial(_minibatch_state, kernel=kernel, sigma=sigma, batch_size=batch_size, seed=seed),
        score_fn=_minibatch_cka_score,
        symmetric=True,
        min_n=batch_size,
        params={"kernel": kernel, "sigma": sigma, "batch_size": batch_size, "seed": seed},
    )
