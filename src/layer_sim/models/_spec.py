"""What every model spec shares: rebuilding it from its JSON dict."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from layer_sim.errors import ConfigError, UnknownNameError


def spec_from_dict(cls, d: dict[str, Any]):
    """``cls(**d)`` for a frozen model spec with a ``kind``; ``"kind"`` may be omitted.

    Another kind is a :class:`ConfigError`, an unknown key an :class:`UnknownNameError` listing
    the fields.
    """
    d = dict(d)
    if d.pop("kind", cls.kind) != cls.kind:
        raise ConfigError(f"{cls.__name__}.from_dict: kind must be {cls.kind!r}, got {d!r}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(names), key=str)
    if unknown:
        raise UnknownNameError(f"{cls.__name__}.from_dict: unknown field(s) {unknown}; valid fields are {names}")
    return cls(**d)
