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
from dataclasses import dataclass, field, replace
from functools import partial

import torch

from layer_sim._options import Choice, Flag, Int, Maybe, check, strict_signature
from layer_sim.errors import InputError
from layer_sim.measures import _hsic as core
from layer_sim.measures import kernels as k
from layer_sim.measures._features import (
    CONSTANT,
    centre,
    centred,
    certainly_varies,
    degenerate_error,
    is_constant,
    ldexp,
    scale_exponent,
)
from layer_sim.measures._registry import REQUIRED, Measure, get, register
from layer_sim.measures._validation import (
    accumulation_dtype,
    as_square,
    check_range,
    is_numpy_pair,
    to_output,
)
from layer_sim.measures.all_pairs import (
    cka_from_norms,
    engine_norms,
    hsic_from_inner,
    hsic_from_norm,
    linear_state_matrix,
    max_abs,
    self_moments,
)

__all__ = ["linear_cka", "linear_hsic", "rbf_cka", "minibatch_cka", "gram_cka"]

# rbf_cka keeps the centred n x n Gram of a prepared representation up to this n (32 MiB in
# float64); beyond it, Gram rows are recomputed block by block and never stored whole.
RBF_DENSE_MAX_N = 2048

KERNELS = ("linear", "rbf")


# --------------------------------------------------------------------------- public functions


@strict_signature
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
        NaN/Inf, different numbers of rows, fewer than 2 (debiased: 4) examples, or any other
        unusable input (see :mod:`layer_sim.measures._validation`).
    DegenerateInputError
        ``x`` or ``y`` is constant (the message names which), or, debiased, its unbiased
        self-HSIC is 0 (e.g. one example differs from n - 1 identical ones).
    ConfigError
        ``debiased`` is not a bool (``"False"`` is refused, not truth-tested).

    Notes
    -----
    Route, chosen per representation when it is prepared: feature space (the p x p products
    above, O(n p^2), no n x n matrix) when n > p; Gram space (:math:`\langle K_c, L_c\rangle`,
    O(n^2 p)) when p >= n. A pair with one of each uses :math:`\langle K, L_c\rangle
    = \mathrm{tr}(X_c^\top L_c X_c)`. All routes agree to rounding. On the feature route the
    biased estimator without autograd runs on the every-pair engine of
    :func:`layer_sim.linear_cka_matrix` (no float64 copy of float32 input).

    Scale: ``c * x`` gives the value of ``x`` for any representable ``c * x`` (float64 1e+-300
    included): a representation is multiplied by an exact power of two when its magnitude
    would make fourth powers over- or underflow.

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
    debiased = check("linear_cka", "debiased", Flag(), debiased)
    return get("linear_cka_debiased" if debiased else "linear_cka")(x, y)


@strict_signature
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
        Non-negative; float for NumPy input, 0-d tensor for torch input. Exactly
        ``c**2 * linear_hsic(x, y)`` for ``c * x`` when ``c`` is a power of two.

    Raises
    ------
    InputError
        As :func:`linear_cka`, and when the true value lies outside the float64 range (HSIC of
        two inputs of magnitude 1e300 is about 1e600): an error, never ``inf`` or 0.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim import linear_hsic
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> round(linear_hsic(x, 2 * x), 12)  # cov(x, 2x)^2 = (2 * 5/3)^2 = 100/9
    11.111111111111
    """
    return get("linear_hsic")(x, y)


@strict_signature
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
        Bandwidth as a fraction of the median pairwise distance (Kornblith et al. used 0.2-0.8);
        any positive finite value. As sigma grows the value tends to :func:`linear_cka` (the
        exact limit, reached at sigma = 1e300); as it shrinks the kernel rounds to the identity.
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
        n^2 pairs of examples coincide), which makes the bandwidth 0; debiased, an unbiased
        self-HSIC of 0, e.g. at a sigma so small that the kernel is the identity (the message
        names sigma).
    ConfigError
        ``sigma`` is not a positive finite number, ``debiased`` not a bool, ``block_size`` not
        a positive integer or None.

    Notes
    -----
    For sigma > 1 the kernel is computed as :math:`2\sigma^2 (K - 1) = -(D/m) f(t)`,
    :math:`f(t) = (1 - e^{-t})/t`, which has the same CKA (centring removes the constant) and
    keeps its digits where :math:`\exp(-t)` rounds to 1; :math:`t = D / (2\sigma^2 m)` is
    formed without :math:`\sigma^2`, which would overflow.

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


@strict_signature
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


# --------------------------------------------------------------------------- CKA on Gram matrices


@strict_signature
def gram_cka(K, L, *, debiased: bool = False):
    r"""CKA of two given kernel (Gram) matrices of the same examples.

    .. math::

        \mathrm{CKA}(K, L) = \frac{\langle K_c, L_c\rangle_F}{\lVert K_c\rVert_F\,\lVert L_c\rVert_F},

    with :math:`K_c = HKH` (biased; :math:`\langle K_c, L_c\rangle = (n-1)^2 \mathrm{HSIC}(K, L)`)
    or, with ``debiased=True``, the U-centred :math:`\tilde K` of :func:`~layer_sim.measures.centre_gram`
    (:math:`\langle \tilde K, \tilde L\rangle = n(n-3)\,\mathrm{HSIC}_1(K, L)`, Song et al. 2012).
    Any kernels work: ``gram_cka(gram_linear(x), gram_linear(y))`` is ``linear_cka(x, y)`` and
    ``gram_cka(gram_rbf(x, sigma=s), gram_rbf(y, sigma=s))`` is ``rbf_cka(x, y, sigma=s)``, to
    rounding; a kernel built from gradients plugs in the same way. Invariant to positive scaling
    of either kernel and to adding a constant to it.

    Parameters
    ----------
    K, L : {array-like, Tensor} of shape (n, n)
        Symmetric kernel matrices (symmetric to rounding is accepted).
    debiased : bool, default=False
        The unbiased HSIC_1 in the numerator and both denominator terms; needs n >= 4.

    Returns
    -------
    float or Tensor
        In [-1, 1]; in [0, 1] for positive semi-definite kernels with ``debiased=False``. A Python
        float for NumPy input, a differentiable 0-d tensor for torch input.

    Raises
    ------
    InputError
        Not square or not symmetric, different sizes, NaN/Inf, fewer than 2 (debiased: 4) examples.
    DegenerateInputError
        A kernel that is constant (zero after centring), or, debiased, whose unbiased self-HSIC is 0.
    ConfigError
        ``debiased`` is not a bool.

    References
    ----------
    Kornblith et al. (2019), ICML (CKA on Gram matrices, ``cka(gram_x, gram_y, debiased)`` in the
    reference code); Song et al. (2012), JMLR 13 (HSIC_1).

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim.measures import gram_cka, gram_linear
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((50, 4))
    >>> K = gram_linear(x)
    >>> round(gram_cka(K, 3.0 * K + 1.0), 12)  # a positive factor and a constant shift change nothing
    1.0
    >>> bool(abs(gram_cka(K, gram_linear(x[:, :2])) - linear_cka(x, x[:, :2])) < 1e-12)
    True
    """
    fn = "gram_cka"
    debiased = check(fn, "debiased", Flag(), debiased)
    min_n = 4 if debiased else 2
    Kt, Lt = as_square(K, name="K", fn=fn, min_n=min_n), as_square(L, name="L", fn=fn, min_n=min_n)
    if Kt.shape != Lt.shape:
        raise InputError(f"{fn}: K and L must be kernels of the same examples, got shapes {tuple(Kt.shape)} and {tuple(Lt.shape)}")
    if Kt.device != Lt.device:
        raise InputError(f"{fn}: K is on {Kt.device} but L is on {Lt.device}; move both to one device")
    Kc, Lc = _centred_kernel(fn, "K", Kt, debiased), _centred_kernel(fn, "L", Lt, debiased)
    value = check_range(fn, core.cka_gram(Kc, Lc), lower=-1.0)
    return to_output(value, is_numpy_pair(K, L))


def _centred_kernel(fn: str, side: str, K: torch.Tensor, debiased: bool) -> torch.Tensor:
    """Scale (exactly, if outside the window), centre, and refuse a kernel with nothing left."""
    n = K.shape[0]
    Ks = ldexp(K, scale_exponent(float(K.detach().abs().amax()), K.dtype))
    Kc = k._centre_gram(Ks, debiased)
    kc_norm, k_norm = float(torch.linalg.vector_norm(Kc.detach())), float(torch.linalg.vector_norm(Ks.detach()))
    if is_constant(kc_norm, k_norm, n, n, K.dtype):
        reason = "is a constant kernel (zero after U-centring)" if debiased else "is a constant kernel (zero after centring)"
        raise degenerate_error(fn, side, reason)
    return Kc


# --------------------------------------------------------------------------- shared pieces


def _rank_floor(n: int, dtype: torch.dtype) -> float:
    """Relative size below which a sum over n^2 terms is indistinguishable from rounding."""
    return 64 * n * torch.finfo(dtype).eps


def _raise_if_degenerate(name: str, **states) -> None:
    """Raise for the first prepared state (keyword = the side it came from) that is unusable."""
    for label, state in states.items():
        if state.degenerate is not None:
            raise degenerate_error(name, label, state.degenerate)


def _lower(unbiased: bool) -> float:
    return -1.0 if unbiased else 0.0


# --------------------------------------------------------------------------- linear CKA / HSIC


ZERO_UNBIASED = "has zero unbiased self-HSIC (its Gram matrix is additive off the diagonal)"

ROUTES = ("engine", "features", "gram")


@dataclass(frozen=True)
class LinearState:
    """A representation prepared for ``linear_cka``, ``linear_cka_debiased`` or ``linear_hsic``.

    ``route`` says what ``data`` holds:

    - ``"engine"`` (biased, n > p, no autograd): the validated layer itself, in its own dtype (no
      copy); ``amax`` its largest magnitude and ``self_norm`` the norm ``||X_c^T X_c||_F`` of its
      centred co-moment. When a few rows prove the layer is not constant, ``self_norm`` is left
      to the every-pair engine, which computes it in the same pass as the cross products and keeps
      it in ``cache`` (:mod:`layer_sim.measures.all_pairs`);
    - ``"features"`` (debiased or autograd, n > p): the centred features;
    - ``"gram"`` (p >= n): the centred Gram (U-centred when debiased).

    Values are the true ones times ``2**exponent`` (features) or ``4**exponent`` (Grams, norms of
    co-moments), an exact power-of-two scaling that keeps every product in range.
    ``self_hsic`` is ``<K_c, K_c>`` in the estimator's scaling ((n-1)^2 HSIC, or n(n-3) HSIC_1)
    on the dense routes; None for linear_hsic.
    """

    n: int
    route: str
    data: torch.Tensor
    exponent: int
    amax: float = 0.0
    self_norm: torch.Tensor | None = None
    self_hsic: torch.Tensor | None = None
    degenerate: str | None = None
    # Engine route: the self term when the engine computed it later (see all_pairs.engine_norms).
    cache: dict = field(default_factory=dict, repr=False, compare=False)


def _linear_state(
    X: torch.Tensor, *, unbiased: bool, normalise: bool = True, route: str | None = None
) -> LinearState:
    """Pick the route (``route`` forces it, for tests), centre once, and cache the self term."""
    n, p = X.shape
    if route is None:
        engine = not unbiased and not X.requires_grad and n > p
        route = "engine" if engine else ("features" if n > p else "gram")
    if route == "engine":
        amax, acc = max_abs(X), accumulation_dtype(X.device)
        # The exponent is the engine's own rule. HSIC needs no self term; CKA's is left to the
        # engine's pass over all pairs unless the layer may be constant, which must be known now.
        if not normalise or certainly_varies(X, amax, acc):
            return LinearState(n, route, X, scale_exponent(amax, acc), amax)
        self_norm, constant, e = self_moments(X, amax)
        return LinearState(n, route, X, e, amax, self_norm, degenerate=CONSTANT if constant else None)
    c = centred(X.to(accumulation_dtype(X.device)))
    data = c.xc if route == "features" else k._centre_gram(k._linear(c.xc), unbiased)
    state = LinearState(n, route, data, c.exponent)
    if not normalise:  # unnormalised HSIC is well defined (0) for a constant representation
        return state
    if c.constant:
        return replace(state, degenerate=CONSTANT)
    self_hsic = _inner(state, state, unbiased)
    # The U-centred Gram vanishes when K is additive off the diagonal (K_ij = f_i + f_j + c),
    # e.g. n - 1 identical examples and one other: HSIC_1 sees no dependence structure at all.
    if unbiased and self_hsic <= _rank_floor(n, c.xc.dtype) * c.xc.detach().square().sum() ** 2:
        return replace(state, degenerate=ZERO_UNBIASED)
    return replace(state, self_hsic=self_hsic)


def _dense(state: LinearState, unbiased: bool) -> LinearState:
    """An engine state as a dense feature state (for a pair with a Gram-route partner)."""
    return _linear_state(state.data, unbiased=unbiased, route="features") if state.route == "engine" else state


def _inner(px: LinearState, py: LinearState, unbiased: bool) -> torch.Tensor:
    """``<K_c, L_c>`` in the estimator's scaling, by the cheapest route two dense states allow."""
    if px.route == "features" and py.route == "features":
        return core.feature_inner(px.data, py.data, debiased=unbiased)
    if px.route == "gram" and py.route == "gram":
        return core.frobenius(px.data, py.data)
    f, g = (px.data, py.data) if px.route == "features" else (py.data, px.data)
    # <K_c, G> = <F F^T, G> because G (double- or U-centred) has zero row sums and, U-centred,
    # a zero diagonal: centring F F^T changes only terms that G annihilates. O(n^2 p), no F F^T.
    return core.frobenius(f, g @ f)


def _linear_cka_score(px: LinearState, py: LinearState, *, name: str, unbiased: bool) -> torch.Tensor:
    _raise_if_degenerate(name, x=px, y=py)
    if px.route == "engine" and py.route == "engine":
        c, sx, sy = engine_norms([px], [py], selfs=True)
        return cka_from_norms(name, c, sx, sy, rounding=torch.float64)[0, 0]
    px, py = _dense(px, unbiased), _dense(py, unbiased)
    value = core.cka_ratio(_inner(px, py, unbiased), px.self_hsic, py.self_hsic)
    return check_range(name, value, lower=_lower(unbiased))


def _linear_hsic_score(px: LinearState, py: LinearState) -> torch.Tensor:
    if px.route == "engine" and py.route == "engine":
        c, _, _ = engine_norms([px], [py], selfs=False)
        return hsic_from_norm("linear_hsic", c[0, 0], px.exponent + py.exponent, px.n)
    px = _linear_state(px.data, unbiased=False, normalise=False, route="features") if px.route == "engine" else px
    py = _linear_state(py.data, unbiased=False, normalise=False, route="features") if py.route == "engine" else py
    return hsic_from_inner("linear_hsic", _inner(px, py, False), px.exponent + py.exponent, px.n)


def _linear_cka_measure(unbiased: bool) -> Measure:
    name = "linear_cka_debiased" if unbiased else "linear_cka"
    score = partial(_linear_cka_score, name=name, unbiased=unbiased)
    return Measure(
        name=name,
        prepare_fn=partial(_linear_state, unbiased=unbiased),
        score_fn=score,
        symmetric=True,
        min_n=4 if unbiased else 2,
        # all layer pairs from one concatenated GEMM (biased estimator only)
        matrix_fn=None if unbiased else partial(linear_state_matrix, name=name, score=score, normalise=True),
        keep_float=not unbiased,
    )


@register("linear_cka")
def _linear_cka_factory() -> Measure:
    return _linear_cka_measure(unbiased=False)


@register("linear_cka_debiased")
def _linear_cka_debiased_factory() -> Measure:
    return _linear_cka_measure(unbiased=True)


@register("linear_hsic")
def _linear_hsic_factory() -> Measure:
    return Measure(
        name="linear_hsic",
        prepare_fn=partial(_linear_state, unbiased=False, normalise=False),
        score_fn=_linear_hsic_score,
        symmetric=True,
        min_n=2,
        matrix_fn=partial(linear_state_matrix, name="linear_hsic", score=_linear_hsic_score, normalise=False),
        keep_float=True,
    )


# --------------------------------------------------------------------------- RBF CKA


def _zero_unbiased_rbf(sigma: float) -> str:
    return (
        f"has zero unbiased self-HSIC with the RBF kernel at sigma={sigma:g}: the kernel carries no "
        "dependence structure (for a very small sigma every off-diagonal entry underflows to 0); "
        "use a larger sigma"
    )


@dataclass(frozen=True)
class RBFState:
    """A representation prepared for ``rbf_cka``.

    Either ``gram`` (the centred Gram, n <= RBF_DENSE_MAX_N) is stored, or what recomputes any
    block of rows of it: centred features, their squared row norms, the median squared distance
    (the bandwidth is ``2 sigma^2 median``) and the centring offsets ``a``
    (``K_c[i, j] = K[i, j] - a_i - a_j``).
    """

    n: int
    rows: int  # rows per block when scoring (n when the Gram is stored)
    unbiased: bool
    sigma: float
    gram: torch.Tensor | None = None
    features: torch.Tensor | None = None
    sq_norms: torch.Tensor | None = None
    median: torch.Tensor | None = None
    offsets: torch.Tensor | None = None
    self_hsic: torch.Tensor | None = None
    degenerate: str | None = None


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
    empty = RBFState(n, rows, unbiased, sigma)
    c = centred(X)
    if c.constant:
        return replace(empty, degenerate=CONSTANT)
    Xc = c.xc
    sq_norms = Xc.square().sum(dim=1)
    median = k.median_sq_dist(Xc, sq_norms, rows=rows, sample_size=sample_size)
    if median <= 0:
        return replace(empty, degenerate=k.ZERO_MEDIAN)
    # The U-centring needs row sums without the diagonal K_ii (a known constant).
    diagonal = k.rbf_diagonal(sigma) if unbiased else 0.0
    if not blockwise:
        K = k.rbf_block(Xc, sq_norms, median, sigma, 0, n)
        gram = k.centre_block(K, k.centring_offsets(K.sum(dim=1) - diagonal, n, unbiased), 0, unbiased)
        state = replace(empty, rows=n, gram=gram, self_hsic=core.frobenius(gram, gram))
    else:
        # Blockwise, only the upper triangle is computed (blocks [s:e, s:]): half the work of full rows.
        blocks = ((s, e, k.rbf_block(Xc, sq_norms, median, sigma, s, e)) for s, e in k.row_blocks(n, rows))
        row_sums = k.upper_row_sums(blocks, n, like=Xc)
        state = replace(
            empty,
            features=Xc,
            sq_norms=sq_norms,
            median=median,
            offsets=k.centring_offsets(row_sums - diagonal, n, unbiased),
        )
        centred_blocks = (_rbf_centred_block(state, s, e) for s, e in k.row_blocks(n, rows))
        state = replace(state, self_hsic=sum(k.symmetric_block_dot(B, B) for B in centred_blocks))
    # Entries of K (or of 2 sigma^2 (K - 1)) are O(1), so an HSIC_1 below the rounding floor of n^2
    # such terms is a zero: typically a sigma so small that K is the identity to the last bit.
    if unbiased and state.self_hsic <= _rank_floor(n, Xc.dtype) * n:
        return replace(empty, degenerate=_zero_unbiased_rbf(sigma))
    return state


def _rbf_centred_block(state: RBFState, start: int, stop: int) -> torch.Tensor:
    """Block ``[start:stop, start:]`` of the centred Gram: sliced when stored, else recomputed."""
    if state.gram is not None:
        return state.gram[start:stop, start:]
    K = k.rbf_block(state.features, state.sq_norms, state.median, state.sigma, start, stop)
    return k.centre_block(K, state.offsets, start, state.unbiased)


def _rbf_cka_score(px: RBFState, py: RBFState, *, name: str) -> torch.Tensor:
    _raise_if_degenerate(name, x=px, y=py)
    rows = min(px.rows, py.rows)
    cross = sum(
        k.symmetric_block_dot(_rbf_centred_block(px, s, e), _rbf_centred_block(py, s, e))
        for s, e in k.row_blocks(px.n, rows)
    )
    return check_range(name, core.cka_ratio(cross, px.self_hsic, py.self_hsic), lower=_lower(px.unbiased))


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
    value = core.cka_ratio(cross, self_a[:, None], self_b[None, :])
    return check_range(name, value, lower=_lower(pa[0].unbiased))


@register("rbf_cka", sigma=(k.SIGMA, 0.8), debiased=(Flag(), False), block_size=(Maybe(Int(1)), None))
def _rbf_cka_factory(*, sigma: float, debiased: bool, block_size: int | None) -> Measure:
    return Measure(
        name="rbf_cka",
        prepare_fn=partial(_rbf_state, sigma=sigma, unbiased=debiased, block_size=block_size),
        score_fn=partial(_rbf_cka_score, name="rbf_cka"),
        matrix_fn=partial(_rbf_cka_matrix, name="rbf_cka"),
        symmetric=True,
        min_n=4 if debiased else 2,
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
    c = centred(X)
    if c.constant:
        return MinibatchState(n, (), None, CONSTANT)
    # The shuffle depends only on (n, seed), so x and y get the same minibatches.
    perm = torch.randperm(n, generator=torch.Generator(device="cpu").manual_seed(seed)).to(X.device)
    grams, scale = [], 0.0
    for b, idx in enumerate(torch.tensor_split(perm, n // batch_size)):
        B, m = centre(c.xc[idx]), idx.numel()
        if kernel == "linear":
            K = k._linear(B)
        else:
            sq_norms = B.square().sum(dim=1)
            median = k.median_sq_dist(B, sq_norms, rows=m)
            if median <= 0:
                reason = f"has median squared distance 0 in minibatch {b}, so the RBF bandwidth is 0"
                return MinibatchState(n, (), None, reason)
            K = k.rbf_block(B, sq_norms, median, sigma, 0, m)
        grams.append(k._centre_gram(K, unbiased=True) / math.sqrt(m * (m - 3)))
        scale = scale + K.detach().square().sum() / (m * (m - 3))
    self_hsic = sum(core.frobenius(g, g) for g in grams)
    if self_hsic <= _rank_floor(batch_size, X.dtype) * scale:
        return MinibatchState(n, (), None, "has zero unbiased self-HSIC in every minibatch")
    return MinibatchState(n, tuple(grams), self_hsic, None)


def _minibatch_cka_score(px: MinibatchState, py: MinibatchState) -> torch.Tensor:
    _raise_if_degenerate("minibatch_cka", x=px, y=py)
    cross = sum(core.frobenius(gx, gy) for gx, gy in zip(px.grams, py.grams))
    return check_range("minibatch_cka", core.cka_ratio(cross, px.self_hsic, py.self_hsic), lower=-1.0)


@register(
    "minibatch_cka",
    kernel=(Choice(*KERNELS), "linear"),
    sigma=(k.SIGMA, 0.8),
    batch_size=(Int(4), REQUIRED),
    seed=(Int(0), 0),
)
def _minibatch_cka_factory(*, kernel: str, sigma: float, batch_size: int, seed: int) -> Measure:
    return Measure(
        name="minibatch_cka",
        prepare_fn=partial(_minibatch_state, kernel=kernel, sigma=sigma, batch_size=batch_size, seed=seed),
        score_fn=_minibatch_cka_score,
        symmetric=True,
        min_n=batch_size,
    )
