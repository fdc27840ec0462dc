"""Atomic file writes, canonical JSON and content keys, shared by caches, checkpoints, stores and outputs."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` with what ``write(fh)`` writes, all or nothing.

    The bytes go to a temporary file in the same directory, are fsynced, then renamed over
    ``path`` (``os.replace`` is atomic on POSIX and Windows), so a crash or a full disk never
    leaves a half-written file for a later run to trust; the temporary file is removed on error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def canonical_json(obj) -> str:
    """Deterministic JSON: sorted keys, no spaces, no NaN/Inf (they are not JSON).

    The text content keys hash: equal objects give equal text on every machine and version.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def content_key(kind: str, version: int, fields) -> str:
    """24 hex digits of SHA-256 over ``{"kind", "version", "fields"}`` in :func:`canonical_json`.

    ``kind`` says what is keyed (e.g. ``"checkpoint"``), ``version`` is bumped when the meaning of
    the fields changes, and ``fields`` is exactly what the key depends on, so what a key hashes
    is explicit at its one call site.
    """
    text = canonical_json({"kind": kind, "version": int(version), "fields": fields})
    return hashlib.sha256(text.encode()).hexdigest()[:24]
