"""Measure objects and the name → measure registry.

A measure is split into a per-representation ``prepare`` (validation, centring, Gram /
covariance / SVD: the work that depends on one representation only) and a pairwise ``score``.
``m(x, y)`` is by definition ``m.score(m.prepare(x), m.prepare(y))``, so comparing one layer
with many reuses its preparation (see ``layer_sim.analysis.comparison``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from layer_sim.errors import InputError, UnknownNameError
from layer_sim.measures._validation import as_matrix, check_pair, to_output

__all__ = ["Measure", "register", "get", "available"]


@dataclass(frozen=True)
class Measure:
    """A named similarity index with its parameters bound.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"linear_cka"``.
    prepare_fn : callable
        Trusted kernel: checked ``(n, p)`` float64 tensor -> prepared state. A state exposes
        ``.n`` (examples) and may expose ``.degenerate`` (None, or why the representation is
        unusable, e.g. "is constant ..."), so callers that know the layer's name can report it.
    score_fn : callable
        Trusted kernel: two prepared states -> 0-d tensor.
    symmetric : bool
        Whether ``score(a, b) == score(b, a)``.
    min_n : int
        Fewest examples the estimator accepts.
    params : mapping
        The keyword parameters bound into the kernels (for display and storage).
    matrix_fn : callable or None
        Optional batched kernel: (list of prepared a, list of prepared b) -> (len(a), len(b))
        tensor, equal to ``score`` applied to every pair but faster (e.g. one concatenated GEMM).
        ``layer_sim.analysis.comparison`` uses it when present.
    """

    name: str
    prepare_fn: Callable[[torch.Tensor], Any] = field(repr=False)
    score_fn: Callable[[Any, Any], torch.Tensor] = field(repr=False)
    symmetric: bool = True
    min_n: int = 2
    params: Mapping[str, Any] = field(default_factory=dict)
    matrix_fn: Callable[[list, list], torch.Tensor] | None = field(default=None, repr=False)

    def prepare(self, x) -> Any:
        """Validate one representation and do its per-representation work once."""
        return self.prepare_fn(as_matrix(x, fn=self.name, min_n=self.min_n))

    def score(self, px: Any, py: Any) -> torch.Tensor:
        """Similarity of two prepared representations, as a 0-d tensor."""
        if px.n != py.n:
            raise InputError(
                f"{self.name}: x and y must have the same number of examples (rows), got {px.n} and {py.n}"
            )
        return self.score_fn(px, py)

    def __call__(self, x, y):
        """Similarity of ``x`` and ``y``: a float for NumPy input, a 0-d tensor for torch input."""
        X, Y, numpy_out = check_pair(x, y, fn=self.name, min_n=self.min_n)
        return to_output(self.score_fn(self.prepare_fn(X), self.prepare_fn(Y)), numpy_out)


_FACTORIES: dict[str, Callable[..., Measure]] = {}


def register(name: str) -> Callable[[Callable[..., Measure]], Callable[..., Measure]]:
    """Decorator: register a factory ``(**params) -> Measure`` under ``name``."""

    def deco(factory: Callable[..., Measure]) -> Callable[..., Measure]:
        if name in _FACTORIES:
            raise RuntimeError(f"measure {name!r} registered twice")
        _FACTORIES[name] = factory
        return factory

    return deco


def available() -> list[str]:
    """Names accepted by :func:`get`, in registration order."""
    return list(_FACTORIES)


def get(name: str | Measure, **params) -> Measure:
    """The measure called ``name`` with keyword ``params`` bound (a ``Measure`` passes through).

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered; the message lists the available names.
    """
    if isinstance(name, Measure):
        if params:
            raise UnknownNameError(f"parameters {sorted(params)} cannot be bound to an existing Measure")
        return name
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown measure {name!r}; available: {', '.join(available())}"
        ) from None
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UnknownNameError(
            f"measure {name!r} has no parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or 'none'}"
        )
    return factory(**params)
