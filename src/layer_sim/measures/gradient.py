r"""Similarity with gradients (Tang et al. 2020): CKA and NBS of the product kernel :math:`(XX^\top) \odot (GG^\top)`.

For a layer with features :math:`X` (n x p) and per-example gradients :math:`G` (n x p, the
gradient of an objective with respect to the layer's output, from
``extract(..., gradients=True)``), the kernel is

.. math::

    K_{ij} = \langle x_i, x_j\rangle\,\langle g_i, g_j\rangle = \langle x_i \otimes g_i,\; x_j \otimes g_j\rangle,

the linear kernel of the per-example outer products :math:`z_i = x_i \otimes g_i` (the gradient
of the objective with respect to the weights that read this layer, for a linear read-out). It is
positive semi-definite (Schur product theorem), and CKA / NBS are taken between two such kernels
with double centring (of the kernel; features are not centred, as in Tang et al.'s code).

Routes (chosen per representation; all give the same value to rounding):

- ``features``: the :math:`D = p\,p_g` columns of :math:`Z` (face-splitting product) centred,
  then linear CKA / NBS in feature space, when :math:`D \le n` and :math:`D^2 \le n (p + p_g)`
  (a pair costs O(n D_x D_y) instead of O(n^2 (p + p_g)));
- ``gram``: the centred n x n kernel stored, for n <= 2048 (32 MiB in float64);
- ``blocks`` (CKA only): nothing n x n is stored. The centring offsets need the row sums of K,
  :math:`(K\mathbf 1)_i = x_i^\top (X^\top G)\, g_i`, O(n p p_g); row blocks
  :math:`K[s{:}e, s{:}] = (X_{s:e} X_{s:}^\top) \odot (G_{s:e} G_{s:}^\top)` of the upper triangle are
  then made, centred and consumed one at a time: O(n^2 (p + p_g)) time, O(n * rows) memory;
- ``sketch`` (``buckets=M``): Tang et al.'s approximation, the M x M kernel
  :math:`(SX(SX)^\top) \odot (SG(SG)^\top)` of count-sketched features and gradients
  (:func:`~layer_sim.measures.sketch.count_sketch`). It is **not** the exact index: the
  Hadamard product of two sketched Grams is not a sketch of the product; its error is measured
  in the README.

Exact gradient NBS needs the spectrum of the centred n x n kernel (O(n^3) time, O(n^2) memory)
unless the feature route applies; for large n use the sketch.

References
----------
Tang, Maddox, Dickens, Diethe & Damianou (2020). Similarity of neural networks with gradients.
arXiv:2003.11498 (and the authors' code, ``amzn/xfer/nn_similarity_index``).
Kornblith, Norouzi, Lee & Hinton (2019). Similarity of neural network representations revisited. ICML.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

import torch

from layer_sim._options import Flag, Int, Maybe, strict_signature
from layer_sim.errors import ConfigError, InputError
from layer_sim.measures import _hsic as core
from layer_sim.measures import kernels as k
from layer_sim.measures._features import centred, degenerate_error, is_constant
from layer_sim.measures._registry import Measure, get, register
from layer_sim.measures._validation import as_matrix, check_range, to_array
from layer_sim.measures._nbs import factor_of_features, factor_of_gram, nbs_factors
from layer_sim.measures.sketch import check_sketch, sketch_rows

__all__ = ["gram_gradient", "gradient_cka", "gradient_nbs", "GRADIENT_DENSE_MAX_N"]

#: Largest n whose centred n x n gradient kernel is stored (32 MiB in float64), as for rbf_cka.
GRADIENT_DENSE_MAX_N = 2048

CONSTANT_KERNEL = (
    "has a constant product kernel (x x^T) o (g g^T) (zero after centring; e.g. all gradients zero), "
    "so the index is undefined"
)

ROUTES = ("features", "gram", "blocks", "sketch")


# --------------------------------------------------------------------------- the kernel


def _product_gram(xs: torch.Tensor, gs: torch.Tensor) -> torch.Tensor:
    return (xs @ xs.mT) * (gs @ gs.mT)


def _face_split(xs: torch.Tensor, gs: torch.Tensor) -> torch.Tensor:
    """Rows :math:`x_i \\otimes g_i`: the (n, p * p_g) matrix whose linear kernel is the product kernel."""
    return (xs[:, :, None] * gs[:, None, :]).reshape(xs.shape[0], -1)


@strict_signature
def gram_gradient(x, g):
    r"""The gradient kernel :math:`K = (X X^\top) \odot (G G^\top)` of Tang et al. (2020).

    :math:`K_{ij} = \langle x_i, x_j\rangle \langle g_i, g_j\rangle`, the linear kernel of the
    outer products :math:`x_i \otimes g_i`; :func:`~layer_sim.measures.gram_cka` and
    :func:`~layer_sim.measures.gram_nbs` of two such kernels are :func:`gradient_cka` and
    :func:`gradient_nbs` (which never need the n x n matrix).

    Parameters
    ----------
    x : {array-like, Tensor} of shape (n_examples, n_features)
        Features of a layer.
    g : {array-like, Tensor} of shape (n_examples, n_grad_features)
        Per-example gradients of an objective with respect to that layer's output (usually the
        same shape as ``x``).

    Returns
    -------
    ndarray or Tensor of shape (n_examples, n_examples)
        float64; a differentiable tensor on the input's device for torch input.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim.measures import gram_gradient
    >>> gram_gradient(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0], [3.0]]))
    array([[ 4.,  6.],
           [ 6., 18.]])
    """
    X = as_matrix(x, name="x", fn="gram_gradient", min_n=1)
    G = as_matrix(g, name="g", fn="gram_gradient", min_n=1)
    if G.shape[0] != X.shape[0]:
        raise InputError(f"gram_gradient: x has {X.shape[0]} examples but g has {G.shape[0]}")
    return to_array(_product_gram(X, G), x)


def _choose_route(n: int, px: int, pg: int, *, buckets, block_size) -> str:
    if buckets is not None:
        return "sketch"
    d = px * pg
    if d <= n and d * d <= n * (px + pg):
        return "features"
    if block_size is None and n <= GRADIENT_DENSE_MAX_N:
        return "gram"
    return "blocks"


def _sketched_gram(xs, gs, *, buckets: int, nonzeros: int, seed: int) -> torch.Tensor:
    sx = sketch_rows(xs, buckets=buckets, nonzeros=nonzeros, seed=seed)
    sg = sketch_rows(gs, buckets=buckets, nonzeros=nonzeros, seed=seed)
    return _product_gram(sx, sg)


def _zero_kernel(self_hsic: torch.Tensor, raw_sq: torch.Tensor, n: int, dtype: torch.dtype, unbiased: bool) -> bool:
    """The constant-kernel test of gram_cka, ``||K_c|| <= n eps ||K||`` (a 64x wider floor when U-centred)."""
    factor = 64.0 if unbiased else 1.0
    return is_constant(float(self_hsic.detach().clamp_min(0).sqrt()) / factor, float(raw_sq.detach().sqrt()), n, n, dtype)


# --------------------------------------------------------------------------- gradient CKA


@dataclass(frozen=True)
class GradientCKAState:
    """A layer prepared for ``gradient_cka``.

    ``route`` (see the module docstring) says what is held: ``data`` = centred face-split
    features (features), the centred kernel (gram; M x M for sketch); or ``x``, ``g`` (exactly
    scaled) and the centring ``offsets`` of K (blocks, whose self term is computed with the first
    pair and kept in ``cache``).
    """

    n: int
    route: str
    unbiased: bool
    rows: int
    data: torch.Tensor | None = None
    x: torch.Tensor | None = None
    g: torch.Tensor | None = None
    offsets: torch.Tensor | None = None
    self_hsic: torch.Tensor | None = None
    degenerate: str | None = None
    cache: dict = field(default_factory=dict, repr=False, compare=False)


def _gradient_cka_state(
    X: torch.Tensor, G: torch.Tensor, *, unbiased: bool, buckets, nonzeros: int, seed: int, block_size, route=None
) -> GradientCKAState:
    n = X.shape[0]
    route = route or _choose_route(n, X.shape[1], G.shape[1], buckets=buckets, block_size=block_size)
    xs, gs = core.unit_scale(X), core.unit_scale(G)
    if not bool(xs.detach().isfinite().all() and gs.detach().isfinite().all()):  # unit_scale of all zeros
        return GradientCKAState(n, route, unbiased, n, degenerate=CONSTANT_KERNEL)
    # About eight block-sized temporaries are alive at once (two Gram blocks, their product and its
    # centred copy, per side), so blocks are a quarter of the usual size: 16 MiB each in float64.
    base = GradientCKAState(n, route, unbiased, block_size or max(1, k.BLOCK_ELEMENTS // (4 * n)))
    if route == "features":
        c = centred(_face_split(xs, gs))
        if c.constant:
            return replace(base, degenerate=CONSTANT_KERNEL)
        self_hsic = core.feature_inner(c.xc, c.xc, debiased=unbiased)
        if unbiased and _zero_kernel(self_hsic, c.xc.detach().square().sum() ** 2, n, X.dtype, True):
            return replace(base, degenerate=CONSTANT_KERNEL)
        return replace(base, data=c.xc, self_hsic=self_hsic)
    if route in ("gram", "sketch"):
        K = _product_gram(xs, gs) if route == "gram" else _sketched_gram(xs, gs, buckets=buckets, nonzeros=nonzeros, seed=seed)
        Kc = k._centre_gram(K, unbiased)
        self_hsic = core.frobenius(Kc, Kc)
        if _zero_kernel(self_hsic, core.frobenius(K, K), K.shape[0], X.dtype, unbiased):
            return replace(base, degenerate=CONSTANT_KERNEL)
        return replace(base, rows=K.shape[0], data=Kc, self_hsic=self_hsic)
    # blocks: the row sums of K from the p x p_g matrix X^T G, never an n x n matrix
    row_sums = ((xs @ (xs.mT @ gs)) * gs).sum(dim=1)
    if unbiased:  # the U-centring uses row sums without the diagonal K_ii = |x_i|^2 |g_i|^2
        row_sums = row_sums - xs.square().sum(dim=1) * gs.square().sum(dim=1)
    return replace(base, x=xs, g=gs, offsets=k.centring_offsets(row_sums, n, unbiased))


def _raw_block(st: GradientCKAState, s: int, e: int) -> torch.Tensor:
    return (st.x[s:e] @ st.x[s:].mT) * (st.g[s:e] @ st.g[s:].mT)


def _centred_block(st: GradientCKAState, s: int, e: int, raw: torch.Tensor | None = None) -> torch.Tensor:
    """Block ``[s:e, s:]`` of the centred kernel (for features: of H K H, valid against any centred partner)."""
    if st.route == "features":
        return st.data[s:e] @ st.data[s:].mT
    if st.route in ("gram", "sketch"):
        return st.data[s:e, s:]
    return k.centre_block(_raw_block(st, s, e) if raw is None else raw, st.offsets, s, st.unbiased)


def _blockwise(px: GradientCKAState, py: GradientCKAState, *, selfs: bool):
    """One pass over row blocks: ``<K_c, L_c>`` and, if ``selfs``, each blockwise state's missing
    self term and raw ``<K, K>`` (the constant-kernel test)."""
    rows = min(px.rows, py.rows)
    cross = 0
    need = [st for st in (px, py) if selfs and st.route == "blocks" and "self" not in st.cache]
    if py is px:
        need = need[:1]
    acc = {id(st): [0, 0] for st in need}
    for s, e in k.row_blocks(px.n, rows):
        blocks = []
        for st in (px, py):
            if id(st) in acc:
                raw = _raw_block(st, s, e)
                acc[id(st)][1] = acc[id(st)][1] + k.symmetric_block_dot(raw, raw)
                B = _centred_block(st, s, e, raw)
                acc[id(st)][0] = acc[id(st)][0] + k.symmetric_block_dot(B, B)
            else:
                B = _centred_block(st, s, e)
            blocks.append(B)
        cross = cross + k.symmetric_block_dot(blocks[0], blocks[1])
    for st in need:
        self_hsic, raw_sq = acc[id(st)]
        st.cache["self"] = self_hsic
        st.cache["zero"] = _zero_kernel(self_hsic, raw_sq, st.n, self_hsic.dtype, st.unbiased)
    return cross


def _self_term(st: GradientCKAState) -> torch.Tensor:
    if st.self_hsic is not None:
        return st.self_hsic
    if "self" not in st.cache:
        _blockwise(st, st, selfs=True)
    return st.cache["self"]


def _check_states(name: str, **states: GradientCKAState) -> None:
    for side, st in states.items():
        if st.degenerate is not None or st.cache.get("zero"):
            raise degenerate_error(name, side, st.degenerate or CONSTANT_KERNEL)


def _gradient_cka_score(px: GradientCKAState, py: GradientCKAState, *, name: str) -> torch.Tensor:
    _check_states(name, x=px, y=py)
    if px.route == py.route == "features":
        cross = core.feature_inner(px.data, py.data, debiased=px.unbiased)
    elif px.route in ("gram", "sketch") and py.route in ("gram", "sketch"):
        cross = core.frobenius(px.data, py.data)
    else:
        cross = _blockwise(px, py, selfs=True)
    sx, sy = _self_term(px), _self_term(py)
    _check_states(name, x=px, y=py)
    return check_range(name, core.cka_ratio(cross, sx, sy), lower=-1.0 if px.unbiased else 0.0)


def _gradient_cka_matrix(pa: list, pb: list, *, name: str) -> torch.Tensor:
    """Every pair: stored kernels in one GEMM of their flattened entries, any other route pair by pair."""
    if all(st.route in ("gram", "sketch") for st in [*pa, *pb]):
        for st in pa:
            _check_states(name, x=st)
        for st in pb:
            _check_states(name, y=st)
        A = torch.stack([st.data.reshape(-1) for st in pa])
        B = A if pb is pa else torch.stack([st.data.reshape(-1) for st in pb])
        sa, sb = torch.stack([st.self_hsic for st in pa]), torch.stack([st.self_hsic for st in pb])
        return check_range(name, core.cka_ratio(A @ B.mT, sa[:, None], sb[None, :]), lower=-1.0 if pa[0].unbiased else 0.0)
    return torch.stack([torch.stack([_gradient_cka_score(a, b, name=name) for b in pb]) for a in pa])


@register(
    "gradient_cka",
    debiased=(Flag(), False),
    buckets=(Maybe(Int(4)), None),
    nonzeros=(Int(1), 1),
    seed=(Int(0), 0),
    block_size=(Maybe(Int(1)), None),
)
def _gradient_cka_factory(*, debiased: bool, buckets, nonzeros: int, seed: int, block_size) -> Measure:
    if buckets is not None:
        check_sketch("gradient_cka", buckets, nonzeros, seed)
        if debiased:
            raise ConfigError("gradient_cka: debiased=True cannot be combined with buckets: the buckets of a sketch are not examples")
    return Measure(
        name="gradient_cka",
        prepare_fn=partial(_gradient_cka_state, unbiased=debiased, buckets=buckets, nonzeros=nonzeros, seed=seed,
                           block_size=block_size),
        score_fn=partial(_gradient_cka_score, name="gradient_cka"),
        matrix_fn=partial(_gradient_cka_matrix, name="gradient_cka"),
        symmetric=True,
        min_n=4 if debiased else 2,
        uses_gradients=True,
    )


@strict_signature
def gradient_cka(x, y, x_grad, y_grad, *, debiased: bool = False, buckets: int | None = None, nonzeros: int = 1,
                 seed: int = 0, block_size: int | None = None):
    r"""CKA with gradients (Tang et al. 2020): CKA of the kernels :math:`(XX^\top)\odot(G_xG_x^\top)` and :math:`(YY^\top)\odot(G_yG_y^\top)`.

    .. math::

        \mathrm{CKA}_\nabla = \frac{\langle K_c, L_c\rangle_F}{\lVert K_c\rVert_F\,\lVert L_c\rVert_F},
        \quad K_{ij} = \langle x_i, x_j\rangle\langle g^x_i, g^x_j\rangle,\;
        L_{ij} = \langle y_i, y_j\rangle\langle g^y_i, g^y_j\rangle,

    :math:`K_c = HKH` (or U-centred with ``debiased``). Equal to
    ``gram_cka(gram_gradient(x, x_grad), gram_gradient(y, y_grad))`` and to
    ``linear_cka`` of the face-split rows :math:`x_i \otimes g_i`, computed exactly in float64
    without an n x n matrix when n > 2048 (see the module docstring for the routes).

    Parameters
    ----------
    x, y : {array-like, Tensor} of shape (n_examples, n_features)
        Features of two layers on the same examples.
    x_grad, y_grad : {array-like, Tensor}, the shapes of ``x`` and ``y``
        Per-example gradients of an objective with respect to each layer's output, e.g.
        ``reps.gradients[name]`` from ``extract(..., gradients=True, objective="tang")``.
    debiased : bool, default=False
        Song et al.'s unbiased HSIC_1 (U-centred kernels) instead of the biased estimator.
    buckets : int >= 4 or None, default=None
        None: exact. An integer M: Tang et al.'s count-sketch approximation with M buckets
        (their default 512), an M x M kernel; approximate, see the README for its error.
    nonzeros : int, default=1
        Buckets per example in the sketch (T); must divide ``buckets``.
    seed : int, default=0
        Seed of the sketch's hash (the same for both sides, so their buckets match).
    block_size : int or None, default=None
        Rows of the kernel made at a time on the blockwise route; an integer forces that route.

    Returns
    -------
    float or Tensor
        In [0, 1] (debiased: [-1, 1]); a float for NumPy input, a 0-d float64 tensor for torch.

    Raises
    ------
    InputError
        Bad input, a gradient whose shape differs from its features, or different numbers of
        examples.
    DegenerateInputError
        A constant product kernel (e.g. every gradient zero, as with ``Tang(beta=1)``).
    ConfigError
        Bad options, or ``debiased`` with ``buckets``.

    References
    ----------
    Tang et al. (2020), arXiv:2003.11498; Kornblith et al. (2019), ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim.measures import gradient_cka, gram_cka, gram_gradient
    >>> rng = np.random.default_rng(0)
    >>> x, y, gx, gy = (rng.standard_normal((50, 3)) for _ in range(4))
    >>> v = gradient_cka(x, y, gx, gy)
    >>> bool(abs(v - gram_cka(gram_gradient(x, gx), gram_gradient(y, gy))) < 1e-12)
    True
    >>> round(gradient_cka(x, 2 * x, gx, -gx), 12)  # sign and scale of either factor do not matter
    1.0
    """
    m = get("gradient_cka", debiased=debiased, buckets=buckets, nonzeros=nonzeros, seed=seed, block_size=block_size)
    return m(x, y, x_grad=x_grad, y_grad=y_grad)


# --------------------------------------------------------------------------- gradient NBS


@dataclass(frozen=True)
class GradientNBSState:
    """A layer prepared for ``gradient_nbs``: a factor of its centred product kernel (or of the sketched one)."""

    n: int
    factor: torch.Tensor | None
    degenerate: str | None = None


def _gradient_nbs_state(X: torch.Tensor, G: torch.Tensor, *, buckets, nonzeros: int, seed: int, route=None) -> GradientNBSState:
    n = X.shape[0]
    route = route or _choose_route(n, X.shape[1], G.shape[1], buckets=buckets, block_size=None)
    xs, gs = core.unit_scale(X), core.unit_scale(G)
    if not bool(xs.detach().isfinite().all() and gs.detach().isfinite().all()):
        return GradientNBSState(n, None, CONSTANT_KERNEL)
    if route == "features":
        c = centred(_face_split(xs, gs))
        return GradientNBSState(n, None, CONSTANT_KERNEL) if c.constant else GradientNBSState(n, factor_of_features(c.xc))
    K = _sketched_gram(xs, gs, buckets=buckets, nonzeros=nonzeros, seed=seed) if route == "sketch" else _product_gram(xs, gs)
    Kc = k._centre_gram(K, False)
    if _zero_kernel(core.frobenius(Kc, Kc), core.frobenius(K, K), K.shape[0], X.dtype, False):
        return GradientNBSState(n, None, CONSTANT_KERNEL)
    return GradientNBSState(n, factor_of_gram(Kc))


def _gradient_nbs_score(px: GradientNBSState, py: GradientNBSState, *, name: str) -> torch.Tensor:
    for side, st in (("x", px), ("y", py)):
        if st.degenerate is not None:
            raise degenerate_error(name, side, st.degenerate)
    return check_range(name, nbs_factors(px.factor, py.factor))


@register("gradient_nbs", buckets=(Maybe(Int(4)), None), nonzeros=(Int(1), 1), seed=(Int(0), 0))
def _gradient_nbs_factory(*, buckets, nonzeros: int, seed: int) -> Measure:
    if buckets is not None:
        check_sketch("gradient_nbs", buckets, nonzeros, seed)
    return Measure(
        name="gradient_nbs",
        prepare_fn=partial(_gradient_nbs_state, buckets=buckets, nonzeros=nonzeros, seed=seed),
        score_fn=partial(_gradient_nbs_score, name="gradient_nbs"),
        symmetric=True,
        min_n=2,
        uses_gradients=True,
    )


@strict_signature
def gradient_nbs(x, y, x_grad, y_grad, *, buckets: int | None = None, nonzeros: int = 1, seed: int = 0):
    r"""Normalised Bures similarity with gradients (Tang et al. 2020): NBS of the two product kernels.

    .. math::

        \mathrm{NBS}_\nabla = \frac{\mathrm{tr}\big((K_c^{1/2} L_c K_c^{1/2})^{1/2}\big)}{\sqrt{\mathrm{tr}\,K_c\,\mathrm{tr}\,L_c}},
        \quad K = (XX^\top)\odot(G_xG_x^\top),\; L = (YY^\top)\odot(G_yG_y^\top).

    Equal to ``gram_nbs(gram_gradient(x, x_grad), gram_gradient(y, y_grad))``. Exact in float64:
    in feature space (nuclear norm of :math:`Z_x^\top Z_y` for the face-split rows) when
    :math:`p\,p_g` is small, else from the eigendecomposition of each centred n x n kernel
    (O(n^3) time, O(n^2) memory: 800 MB at n = 10,000). ``buckets`` gives Tang et al.'s
    sketched approximation (an M x M kernel) for large n.

    Parameters
    ----------
    x, y, x_grad, y_grad
        As :func:`gradient_cka`.
    buckets, nonzeros, seed
        As :func:`gradient_cka`.

    Returns
    -------
    float or Tensor
        In [0, 1].

    Raises
    ------
    InputError, DegenerateInputError, ConfigError
        As :func:`gradient_cka`.

    References
    ----------
    Tang et al. (2020), arXiv:2003.11498.

    Examples
    --------
    >>> import numpy as np
    >>> from layer_sim.measures import gradient_nbs, gram_gradient, gram_nbs
    >>> rng = np.random.default_rng(0)
    >>> x, y, gx, gy = (rng.standard_normal((40, 3)) for _ in range(4))
    >>> bool(abs(gradient_nbs(x, y, gx, gy) - gram_nbs(gram_gradient(x, gx), gram_gradient(y, gy))) < 1e-10)
    True
    """
    m = get("gradient_nbs", buckets=buckets, nonzeros=nonzeros, seed=seed)
    return m(x, y, x_grad=x_grad, y_grad=y_grad)
