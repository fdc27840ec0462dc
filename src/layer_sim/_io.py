"""Atomic file writes, canonical JSON and content keys, shared by caches, checkpoints, stores and outputs."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
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
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file beside ``path`` with the mode the user's umask gives (``0o666 & ~umask``).

    Not ``tempfile.mkstemp``: its files are always 0600, so every output would be unreadable to
    the user's group whatever their umask.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"atomic_write: no free temporary name beside {path}")


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
