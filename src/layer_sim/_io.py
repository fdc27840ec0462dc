"""Atomic file writes, canonical JSON and content keys, shared by caches, checkpoints, stores and outputs."""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from layer_sim.errors import ConfigError

#: Random bytes in a temporary file's name (12 hex digits).
_TOKEN_BYTES = 6


def writable_dir(path, *, what: str) -> Path:
    """Prove that files can be written in directory ``path`` before any computing; returns it.

    A command or function that would fail only when it saves its results (minutes or hours
    later) fails here instead. ``path`` need not exist: its nearest existing ancestor must then
    be a directory one can write in, and nothing is created, so a refused call leaves no empty
    directory behind (writers create missing directories). The test is a real write of a
    temporary file, not ``os.access``, which ignores read-only mounts and ACLs and says yes to
    root.

    Raises
    ------
    ConfigError
        ``path`` or a parent of it is a file, or nothing can be written there (permission
        denied, read-only file system, ...); the message starts with ``what`` and names ``path``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     writable_dir(Path(f.name) / "out", what="--output")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    layer_sim.errors.ConfigError: --output /tmp/.../out: exists and is not a directory (or a parent of it is a file)
    """
    path = Path(path)
    try:
        probe = path
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe))
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".layer-sim-write-test-"):
            pass
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what} {path}: exists and is not a directory (or a parent of it is a file)") from None
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        raise ConfigError(f"{what} {path}: cannot write there ({reason})") from None
    return path


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` with what ``write(fh)`` writes, all or nothing.

    The bytes go to a temporary file ``.<name>.<12 hex>.part`` in the same directory, are
    fsynced, then renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows) and the
    directory is fsynced, so a crash, ``kill -9`` or a full disk never leaves a half-written file
    for a later run to trust. The temporary file is removed on error; one left by a process
    killed mid-write is removed by the next write of ``path`` (on POSIX each temporary file is
    ``flock``-ed by its writer until renamed, and only unlocked ones are removed, so concurrent
    writers never take each other's file). The file gets the mode the umask allows
    (``0o666 & ~umask``).

    Raises
    ------
    OSError
        A file-system problem (permission denied, read-only or full disk, ``path`` is a
        directory, a parent is a file), naming ``path`` rather than the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.is_dir():  # refused before writing anything, not at the final rename
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        _remove_stale_temporaries(path)
        fd, tmp = _create_temporary(path)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            if fcntl is not None:  # renamed while still locked, so no cleaner can take it first
                os.replace(tmp, path)
        if fcntl is None:  # Windows cannot rename an open file (and has no flock cleaners)
            os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from None
        raise


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file beside ``path`` with the mode the user's umask gives (``0o666 & ~umask``), locked.

    Not ``tempfile.mkstemp``: its files are always 0600, so every output would be unreadable to
    the user's group whatever their umask.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(_TOKEN_BYTES)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        if fcntl is None:
            return fd, str(tmp)
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while a cleaner inspects it, an instant
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(tmp))
        except FileNotFoundError:  # a cleaner took it between open and flock: use another name
            same = False
        if same:
            return fd, str(tmp)
        os.close(fd)
    raise FileExistsError(errno.EEXIST, "no free temporary name beside it", str(path))


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of writes of ``path`` whose writer died (no flock held on them)."""
    if fcntl is None:
        return
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.{'[0-9a-f]' * 2 * _TOKEN_BYTES}.part"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:  # renamed or removed meanwhile, or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it
            pass
        else:
            tmp.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; the rename itself is done
        pass
    finally:
        os.close(fd)


def _naming(exc: OSError, path: Path) -> OSError:
    """The same kind of OSError, naming ``path``: a user never sees the temporary file's name."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def loads_json(text: str):
    """``json.loads``, but JSON nested too deeply for Python's parser is a ``JSONDecodeError`` too.

    The standard parser recurses once per level and raises ``RecursionError`` (not a
    ``ValueError``) on, e.g., ``[[[[...]]]]`` 100,000 levels deep; every reader of files we did not
    necessarily write goes through here so that such a file is refused like any other non-JSON.

    Examples
    --------
    >>> loads_json('{"a": [1]}')
    {'a': [1]}
    >>> loads_json("[" * 100_000 + "]" * 100_000)
    Traceback (most recent call last):
    json.decoder.JSONDecodeError: nested too deeply: line 1 column 1 (char 0)
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


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
