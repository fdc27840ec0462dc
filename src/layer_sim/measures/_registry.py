"""Measure objects, their specs, and the name -> measure registry.

A measure is split into a per-representation ``prepare`` (validation, centring, Gram /
covariance / SVD: the work that depends on one representation only) and a pairwise ``score``.
``m(x, y)`` is by definition ``m.score(m.prepare(x), m.prepare(y))``, so comparing one layer
with many reuses its preparation (see ``layer_sim.analysis``).

Every registered measure with its parameters is named by a :class:`MeasureSpec` (registry
name + every declared parameter, defaults filled in): frozen, hashable, JSON-able, the key a
results store uses, and ``get(spec)`` rebuilds the same measure. The registry name is the
measure; display labels ("CKA (RBF 0.4)") belong to whoever displays it, not here. Measures
are built from module-level functions and ``functools.partial``, so they pickle (a process
pool or Ray worker receives them like any other argument).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import torch

from layer_sim._options import Spec, check_options, strict_signature
from layer_sim.errors import ConfigError, InputError, UnknownNameError
from layer_sim.measures._validation import as_matrix, check_rows, is_numpy_pair, to_output

__all__ = ["Measure", "MeasureSpec", "REQUIRED", "register", "get", "available", "options"]


class _Required:
    """Marker default of an option that has none (``minibatch_cka``'s ``batch_size``)."""

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self):
        return "REQUIRED"


REQUIRED = _Required()

_JSON_SCALARS = (bool, int, float, str, type(None))


@strict_signature
@dataclass(frozen=True, init=False)
class MeasureSpec:
    """A measure by name and parameters: ``MeasureSpec("rbf_cka", {"sigma": 0.4, ...})``.

    Frozen and hashable (parameters are stored sorted by name), JSON-able through
    :meth:`to_dict` / :meth:`from_dict`, and picklable. ``get(spec)`` builds the measure;
    ``get(name, **params).spec`` is the canonical spec (every declared parameter, defaults
    filled in, values normalised), so two canonical specs are equal exactly when they name the
    same measure.

    Examples
    --------
    >>> from layer_sim.measures import MeasureSpec, get
    >>> spec = get("rbf_cka", sigma=0.4).spec
    >>> spec
    MeasureSpec('rbf_cka', {'block_size': None, 'debiased': False, 'sigma': 0.4})
    >>> spec == MeasureSpec.from_dict(spec.to_dict()) and hash(spec) == hash(get(spec).spec)
    True
    """

    name: str
    items: tuple[tuple[str, Any], ...]

    def __init__(self, name: str, params: Mapping[str, Any] | None = None):
        if not isinstance(name, str):
            raise UnknownNameError(f"MeasureSpec: name must be a registry name (a string), got {name!r}")
        params = dict(params or {})
        for key, value in params.items():
            if not isinstance(key, str):
                raise UnknownNameError(f"MeasureSpec: parameter names must be strings, got {key!r}")
            if not isinstance(value, _JSON_SCALARS) or (isinstance(value, float) and not math.isfinite(value)):
                raise ConfigError(
                    f"MeasureSpec: parameter {key} must be a JSON scalar (bool, int, finite float, str "
                    f"or None), got {value!r}"
                )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "items", tuple(sorted(params.items())))

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as a new dict (sorted by name)."""
        return dict(self.items)

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``: plain JSON types only."""
        return {"name": self.name, "params": self.params}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MeasureSpec:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, Mapping) or set(d) != {"name", "params"} or not isinstance(d["params"], Mapping):
            raise ConfigError(f"MeasureSpec.from_dict: expected {{'name': str, 'params': dict}}, got {d!r}")
        return cls(d["name"], d["params"])

    def __repr__(self) -> str:
        return f"MeasureSpec({self.name!r}, {self.params!r})"


@dataclass(frozen=True, eq=False)
class Measure:
    """A named similarity index with its parameters bound.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"linear_cka"``.
    prepare_fn : callable
        Trusted kernel: checked ``(n, p)`` tensor -> prepared state (with ``uses_gradients``,
        ``(features, gradients)`` -> state). A state exposes ``.n`` (examples) and may expose
        ``.degenerate`` (None, or why the representation is unusable, e.g. "is constant ..."),
        so callers that know the layer's name can report it.
    score_fn : callable
        Trusted kernel: two prepared states -> 0-d tensor.
    symmetric : bool
        Whether ``score(a, b) == score(b, a)``.
    min_n : int
        Fewest examples the estimator accepts.
    params : mapping
        The keyword parameters bound into the kernels (every declared one for registered measures).
    matrix_fn : callable or None
        Optional batched kernel: (list of prepared a, list of prepared b) -> (len(a), len(b))
        tensor, equal to ``score`` applied to every pair but faster (e.g. one concatenated GEMM).
        ``layer_sim.analysis`` uses it when present.
    uses_gradients : bool
        Whether ``prepare`` needs the layer's gradients as well as its features (a
        gradient-aware index, Tang et al. 2020); callers then pass ``reps.gradients[name]``.
    keep_float : bool
        Whether ``prepare_fn`` receives floating inputs in their own dtype (it casts chunk by
        chunk itself) instead of upcast to the accumulation dtype.
    """

    name: str
    prepare_fn: Callable[..., Any] = field(repr=False)
    score_fn: Callable[[Any, Any], torch.Tensor] = field(repr=False)
    symmetric: bool = True
    min_n: int = 2
    params: Mapping[str, Any] = field(default_factory=dict)
    matrix_fn: Callable[[list, list], torch.Tensor] | None = field(default=None, repr=False)
    uses_gradients: bool = False
    keep_float: bool = field(default=False, repr=False)

    @property
    def spec(self) -> MeasureSpec:
        """The :class:`MeasureSpec` that rebuilds this measure with :func:`get`."""
        return MeasureSpec(self.name, self.params)

    def _gate(self, x, side: str) -> torch.Tensor:
        return as_matrix(x, name=side, fn=self.name, min_n=self.min_n, keep_float=self.keep_float)

    def _gradient(self, X: torch.Tensor, grad, side: str):
        """The checked gradient of ``X`` for a gradient-aware measure; a clear refusal otherwise."""
        if not self.uses_gradients:
            if grad is not None:
                raise InputError(
                    f"{self.name}: does not use gradients (uses_gradients=False); call it without {side}_grad / grad"
                )
            return None
        if grad is None:
            raise InputError(
                f"{self.name}: needs the gradients of {side} as well (grad=...), e.g. reps.gradients[name] "
                "from extract(..., gradients=True)"
            )
        G = self._gate(grad, f"{side}_grad")
        if G.shape != X.shape:
            raise InputError(f"{self.name}: {side}_grad has shape {tuple(G.shape)}, {side} has {tuple(X.shape)}")
        return G

    def prepare(self, x, grad=None) -> Any:
        """Validate one representation (and its gradients, if the measure uses them) and do its
        per-representation work once."""
        X = self._gate(x, "x")
        G = self._gradient(X, grad, "x")
        return self.prepare_fn(X) if G is None else self.prepare_fn(X, G)

    def score(self, px: Any, py: Any) -> torch.Tensor:
        """Similarity of two prepared representations, as a 0-d tensor."""
        if px.n != py.n:
            raise InputError(
                f"{self.name}: x and y must have the same number of examples (rows), got {px.n} and {py.n}"
            )
        return self.score_fn(px, py)

    def __call__(self, x, y, *, x_grad=None, y_grad=None):
        """Similarity of ``x`` and ``y``: a float for NumPy input, a 0-d tensor for torch input."""
        X, Y = self._gate(x, "x"), self._gate(y, "y")
        check_rows(X, Y, self.name)
        if X.is_floating_point() and Y.is_floating_point() and X.dtype != Y.dtype and not self.keep_float:
            X, Y = X.to(torch.float32), Y.to(torch.float32)  # only when one side is on MPS
        GX, GY = self._gradient(X, x_grad, "x"), self._gradient(Y, y_grad, "y")
        px = self.prepare_fn(X) if GX is None else self.prepare_fn(X, GX)
        py = self.prepare_fn(Y) if GY is None else self.prepare_fn(Y, GY)
        return to_output(self.score_fn(px, py), is_numpy_pair(x, y))


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Measure]
    options: Mapping[str, tuple[Spec, Any]]


_REGISTRY: dict[str, _Entry] = {}


@strict_signature
def register(name: str, **options: tuple[Spec, Any]) -> Callable[[Callable[..., Measure]], Callable[..., Measure]]:
    """Decorator: register a factory ``(**params) -> Measure`` under ``name``.

    Each keyword declares one parameter as ``(spec, default)``, with a spec from
    :mod:`layer_sim._options` (``Real``, ``Int``, ``Flag``, ``Choice``, ``Maybe``) and
    ``REQUIRED`` for no default. :func:`get` checks the given values against the specs, fills in
    the defaults and calls the factory with every parameter.
    """

    def deco(factory: Callable[..., Measure]) -> Callable[..., Measure]:
        if name in _REGISTRY:
            raise RuntimeError(f"measure {name!r} registered twice")
        _REGISTRY[name] = _Entry(factory, dict(options))
        return factory

    return deco


@strict_signature
def available() -> list[str]:
    """Names accepted by :func:`get`, in registration order."""
    return list(_REGISTRY)


@strict_signature
def options(name: str) -> dict[str, Any]:
    """The declared parameters of measure ``name`` and their defaults (``REQUIRED`` if none)."""
    return {k: default for k, (_, default) in _lookup(name).options.items()}


def _lookup(name) -> _Entry:
    if not isinstance(name, str):
        raise UnknownNameError(
            f"measure must be a registry name (a string), a MeasureSpec or a Measure, got {type(name).__name__} "
            f"{name!r}; available: {', '.join(available())}"
        )
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"unknown measure {name!r}; available: {', '.join(available())}") from None


@strict_signature
def get(name: str | MeasureSpec | Measure, **params) -> Measure:
    """The measure called ``name`` with keyword ``params`` bound (a ``Measure`` passes through).

    ``name`` may be a :class:`MeasureSpec` (its parameters are used). The returned measure's
    ``params`` hold every declared parameter, so ``get(m.spec)`` rebuilds ``m``.

    Raises
    ------
    UnknownNameError
        ``name`` is not registered (the message lists the available names) or not a string,
        a parameter name is not declared (the message lists the accepted ones), or a value is
        outside a set of names.
    ConfigError
        A parameter value of the wrong type or outside its range, or a required one missing.
    """
    if isinstance(name, Measure):
        if params:
            raise UnknownNameError(f"parameters {sorted(params)} cannot be bound to an existing Measure")
        return name
    if isinstance(name, MeasureSpec):
        if params:
            raise UnknownNameError(f"parameters {sorted(params)} cannot be bound to a MeasureSpec; put them in its params")
        name, params = name.name, name.params
    entry = _lookup(name)
    given = check_options(name, {k: spec for k, (spec, _) in entry.options.items()}, params)
    full = {k: given.get(k, default) for k, (_, default) in entry.options.items()}
    missing = [k for k, v in full.items() if v is REQUIRED]
    if missing:
        raise ConfigError(f"{name}: {', '.join(missing)} is required (no default)")
    return replace(entry.factory(**full), name=name, params=full)
