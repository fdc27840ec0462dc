"""The one way to declare and check options (measure parameters, recipe fields, experiment settings).

An option is declared once as a small spec (:class:`Real`, :class:`Int`, :class:`Flag`,
:class:`Choice`, optionally wrapped in :class:`Maybe`) and checked with
:func:`check_options`. One error type per kind of mistake:

- a name that does not exist (an unknown option, or a value outside a :class:`Choice`):
  :class:`~layer_sim.errors.UnknownNameError`, listing the valid names;
- a value of the wrong type or outside its range: :class:`~layer_sim.errors.ConfigError`,
  quoting the value and saying what was expected.

Flags are strict: only ``True``/``False`` (``"False"`` and ``0`` are refused, not truth-tested),
and numbers are strict too: ``bool`` is not accepted where a number is expected.

:func:`strict_signature` does the same for the arguments of a public function or class: a
misspelt keyword is an :class:`~layer_sim.errors.UnknownNameError`, a missing argument or an
option given positionally a :class:`~layer_sim.errors.ConfigError`, not Python's ``TypeError``.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from layer_sim.errors import ConfigError, UnknownNameError

__all__ = ["Real", "Int", "Flag", "Choice", "Maybe", "Ascending", "check_options", "check", "strict_signature"]

INT64_MAX = 2**63 - 1


def _interval(low, high, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"


@dataclass(frozen=True)
class Real:
    """A finite real number in an interval (open or closed at either end)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, where: str, value: Any) -> float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = math.isfinite(value)
            ok = ok and (self.low is None or (value > self.low if self.low_open else value >= self.low))
            ok = ok and (self.high is None or (value < self.high if self.high_open else value <= self.high))
        if not ok:
            raise ConfigError(
                f"{where} must be a finite number in {_interval(self.low, self.high, self.low_open, self.high_open)}, "
                f"got {value!r}"
            )
        return value


@dataclass(frozen=True)
class Int:
    """An integer (not a bool) in ``[low, high]``; ``high`` defaults to the int64 maximum."""

    low: int | None = None
    high: int = INT64_MAX

    def check(self, where: str, value: Any) -> int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if ok:
            value = int(value)
            ok = (self.low is None or value >= self.low) and value <= self.high
        if not ok:
            bounds = f">= {self.low}" if self.high == INT64_MAX else f"in [{self.low}, {self.high}]"
            raise ConfigError(f"{where} must be an integer {bounds}, got {value!r}")
        return value


@dataclass(frozen=True)
class Flag:
    """``True`` or ``False`` exactly."""

    def check(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be True or False, got {value!r}")
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of names."""

    values: tuple[str, ...]

    def __init__(self, *values: str) -> None:
        object.__setattr__(self, "values", tuple(values))

    def check(self, where: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise UnknownNameError(f"{where}: unknown value {value!r}; available: {', '.join(self.values)}")
        return value


@dataclass(frozen=True)
class Maybe:
    """``None`` or a value accepted by ``inner``."""

    inner: Real | Int | Flag | Choice | Ascending

    def check(self, where: str, value: Any):
        return None if value is None else self.inner.check(where, value)


@dataclass(frozen=True)
class Ascending:
    """A strictly increasing sequence (possibly empty) of values accepted by ``inner``, as a tuple.

    Any sequence but a string is accepted (a JSON list comes back as a tuple, so a round trip
    through JSON gives an equal, hashable value).
    """

    inner: Real | Int

    def check(self, where: str, value: Any) -> tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a sequence of strictly increasing values, got {value!r}")
        items = tuple(self.inner.check(f"{where}[{i}]", v) for i, v in enumerate(value))
        if any(b <= a for a, b in zip(items, items[1:])):
            raise ConfigError(f"{where} must be strictly increasing, got {list(items)}")
        return items


Spec = Real | Int | Flag | Choice | Maybe | Ascending


def check(fn: str, name: str, spec: Spec, value: Any):
    """Check one option: ``spec.check`` with the message prefix ``"fn: name"``."""
    return spec.check(f"{fn}: {name}", value)


def check_options(fn: str, declared: Mapping[str, Spec], given: Mapping[str, Any]) -> dict[str, Any]:
    """Check every option in ``given`` against ``declared``; return the normalised values.

    Raises
    ------
    UnknownNameError
        A name in ``given`` that is not declared (the message lists the accepted ones), or a
        value outside a :class:`Choice`.
    ConfigError
        A value of the wrong type or outside its range.
    """
    for name in given:
        if not isinstance(name, str):
            raise UnknownNameError(f"{fn}: option names must be strings, got {name!r}")
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise UnknownNameError(
            f"{fn}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(declared) or 'none'}"
        )
    return {name: check(fn, name, declared[name], value) for name, value in given.items()}


F = TypeVar("F", bound=Callable)


def strict_signature(obj: F) -> F:
    """Decorator: argument mistakes in calls of a public function (or class) raise our errors.

    A misspelt keyword raises :class:`~layer_sim.errors.UnknownNameError` listing the accepted
    names (the closest first); a missing argument, too many positional arguments (options are
    keyword-only) or an argument given twice raise :class:`~layer_sim.errors.ConfigError`. For a
    class, its ``__init__`` is wrapped. A correct call costs one extra function call: the
    signature is consulted only after Python's own binding has failed, and a ``TypeError``
    raised inside the body is left as it is.

    Examples
    --------
    >>> @strict_signature
    ... def cka(x, y, *, debiased=False):
    ...     return debiased
    >>> cka(1, 2, debiassed=True)
    Traceback (most recent call last):
    layer_sim.errors.UnknownNameError: cka: unknown option(s) debiassed (did you mean debiased?); accepted: x, y, debiased
    >>> cka(1, 2, True)
    Traceback (most recent call last):
    layer_sim.errors.ConfigError: cka: too many positional arguments; it takes x, y positionally, and debiased by keyword only
    """
    if isinstance(obj, type):
        obj.__init__ = _strict(obj.__init__, obj.__name__, skip_self=True)
        return obj
    return _strict(obj, obj.__name__, skip_self=False)


def _strict(fn: Callable, label: str, *, skip_self: bool) -> Callable:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1 if skip_self else 0 :]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TypeError:
            try:
                sig.bind(*args, **kwargs)
            except TypeError as exc:
                raise _binding_error(label, params, kwargs, exc) from None
            raise

    return wrapper


def _binding_error(label: str, params: list[inspect.Parameter], given: Mapping[str, Any], exc: TypeError):
    kinds = inspect.Parameter
    named = [p.name for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
    if not any(p.kind == kinds.VAR_KEYWORD for p in params):
        unknown = [k for k in given if k not in named]
        if unknown:
            close = [m for k in unknown for m in difflib.get_close_matches(k, named, n=1)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            return UnknownNameError(
                f"{label}: unknown option(s) {', '.join(unknown)}{hint}; accepted: {', '.join(named) or 'none'}"
            )
    message = str(exc)
    if "too many positional" in message:
        positional = [p.name for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
        keyword = [p.name for p in params if p.kind == kinds.KEYWORD_ONLY]
        message += f"; it takes {', '.join(positional) or 'nothing'} positionally"
        if keyword:
            message += f", and {', '.join(keyword)} by keyword only"
    return ConfigError(f"{label}: {message}")
