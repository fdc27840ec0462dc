"""The results store: one SQLite file, one writer (the sweep driver), any number of readers.

Writes go through short transactions in WAL mode with ``synchronous=FULL``: a reader never waits
for the writer and sees only committed runs, and a run's results and its ``done`` status are
committed together, so a driver killed at any instant leaves every run either done with all its
results or not done at all. One writer at a time is enforced with an advisory lock on
``PATH.lock`` (``flock``), released by the kernel even when the writer is killed.

Opening never modifies a file that is not a store: the file is first opened read-only and checked
(SQLite header, ``application_id``, the ``meta`` table, ``PRAGMA quick_check``), and anything
unexpected raises :class:`~layer_sim.errors.DataError` naming the path.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from layer_sim._io import canonical_json
from layer_sim._options import strict_signature
from layer_sim.errors import DataError, UnknownNameError
from layer_sim.store._schema import (
    APPLICATION_ID,
    DDL,
    FORMAT,
    HISTORY_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    STATUSES,
    TABLES,
    TABLES_SINCE,
)

try:  # POSIX; elsewhere the single-writer rule is documented, not enforced
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["Store", "RunRecord", "DEFAULT_STORE_NAME", "default_store_path", "now_utc"]

#: File name of the store inside an experiment's output directory.
DEFAULT_STORE_NAME = "results.sqlite"

_VERSION_COLUMNS = ("layer_sim_version", "torch_version", "numpy_version", "python_version")
#: Columns of the tables a version-1 store lacks (what :meth:`Store.table` returns for them).
_NEW_TABLE_COLUMNS = {
    "sweeps": ["id", "experiment", "command", "cwd", "settings", "host", "started", "finished", "units", "done", "skipped",
               "failed", "not_run", *_VERSION_COLUMNS],
    "experiments": ["key", "name", "spec", "created"],
}


@strict_signature
def default_store_path(output_dir: str | os.PathLike) -> Path:
    """``output_dir/results.sqlite``: where an experiment command keeps its store by default."""
    return Path(output_dir) / DEFAULT_STORE_NAME


def now_utc() -> str:
    """The current time as ISO 8601 UTC with milliseconds, the store's timestamp format."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunRecord:
    """Everything the store holds about one run (what ``layer-sim runs show`` prints)."""

    key: str
    kind: str
    spec: dict
    status: str
    attempts: int
    error: str | None
    traceback: str | None
    worker: str | None
    started: str | None
    finished: str | None
    seconds: float | None
    versions: dict[str, str | None]
    metrics: dict[str, float]
    histories: dict[str, int]  # name -> number of rows
    artefacts: dict[str, Path]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        out = dict(self.__dict__)
        out["artefacts"] = {k: str(v) for k, v in self.artefacts.items()}
        return out


@strict_signature
class Store:
    """A layer_sim results store in one SQLite file.

    Parameters
    ----------
    path : path-like
        The store file. A reader needs an existing store; a writer creates one where no file
        exists (parent directories included).
    write : bool, default=False
        Open for writing: take the single-writer lock and allow the ``plan``/``mark_*``/``record_*``
        methods. Only the sweep driver writes.

    Raises
    ------
    DataError
        The path does not exist (reader), is not a SQLite file, is a SQLite database but not a
        layer_sim store, has a newer schema than this version reads, is damaged (truncated or
        corrupt), or another process holds the writer lock. The file is never modified.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.sqlite"
    >>> with Store(path, write=True) as store:
    ...     store.plan([("k1", "toy", '{"x":1}')])
    {'k1': 'pending'}
    >>> with Store(path) as store:
    ...     store.runs()[["key", "kind", "status"]].to_dict("records")
    [{'key': 'k1', 'kind': 'toy', 'status': 'pending'}]
    """

    def __init__(self, path: str | os.PathLike, *, write: bool = False) -> None:
        self.path = Path(path).expanduser().absolute()
        self.write = bool(write)
        self._lock_fd: int | None = None
        self._conn: sqlite3.Connection | None = None
        #: Schema version of the file (older stores are upgraded when a writer opens them).
        self.schema_version = SCHEMA_VERSION
        try:
            self._open()
        except BaseException as exc:
            self.close()  # release the lock if it was taken
            if isinstance(exc, (OSError, sqlite3.Error)):  # permissions, a file where a directory should be, ...
                detail = getattr(exc, "strerror", None) or str(exc)
                where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
                raise DataError(f"store {self.path}: cannot be {'opened for writing' if write else 'read'} "
                                f"({detail}{where})") from exc
            raise

    def _open(self) -> None:
        if self.path.is_dir():
            raise DataError(f"store {self.path}: is a directory, expected a results store file")
        if not self.path.exists():
            if not self.write:
                raise DataError(f"store {self.path}: no such file (a sweep creates it)")
            self._acquire_lock()
            if not self.path.exists():  # another writer may have created it meanwhile
                self._create()
        else:
            self.schema_version = _validate(self.path)
            if self.write:
                self._acquire_lock()
        self._conn = self._connect()
        if self.write and self.schema_version < SCHEMA_VERSION:
            self._migrate()

    def _migrate(self) -> None:
        """Upgrade an older store to :data:`SCHEMA_VERSION`, all in one transaction (nothing is lost)."""
        with self._transaction() as conn:
            for version in range(self.schema_version, SCHEMA_VERSION):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))
        self.schema_version = SCHEMA_VERSION

    # ------------------------------------------------------------------ opening and closing

    @property
    def root(self) -> Path:
        """The store's directory: relative artefact paths are relative to it."""
        return self.path.parent

    def _acquire_lock(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows
            return
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataError(f"store {self.path}: already being written by {holder}; "
                            "one sweep writes a store at a time") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()}:{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _create(self) -> None:
        # Built under a temporary name and renamed: a crash never leaves an empty or half-made
        # file at the store's path for the next run to refuse. We hold the writer lock, so the
        # temporary files of an earlier creation are those of a killed process: removed. The
        # file gets the umask's mode (tempfile.mkstemp would make every store 0600).
        if fcntl is not None:
            for stale in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.part*"):
                stale.unlink(missing_ok=True)
        tmp = str(self.path.parent / f".{self.path.name}.{secrets.token_hex(6)}.part")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute("BEGIN")
                for statement in DDL.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)",
                                 [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION)), ("created", now_utc())])
                conn.execute("COMMIT")
            finally:
                conn.close()
            os.replace(tmp, self.path)
        except BaseException:
            for suffix in ("", "-wal", "-shm"):
                Path(tmp + suffix).unlink(missing_ok=True)
            raise

    def _connect(self) -> sqlite3.Connection:
        if self.write:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        else:
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, isolation_level=None,
                                   timeout=30, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        """Close the connection, then release the writer lock (in that order)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._release_lock()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, write={self.write})"

    @property
    def connection(self) -> sqlite3.Connection:
        """The open ``sqlite3`` connection, e.g. for ``pandas.read_sql(query, store.connection)``."""
        if self._conn is None:
            raise DataError(f"store {self.path}: is closed")
        return self._conn

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise DataError(f"store {self.path}: {exc} (the file may be damaged)") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if not self.write:
            raise DataError(f"store {self.path}: opened read-only; only the sweep driver writes")
        conn = self.connection
        with self._sqlite_errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ writing (the driver only)

    def plan(self, entries: Iterable[tuple[str, str, str]]) -> dict[str, str]:
        """Insert ``(key, kind, spec_json)`` rows not yet in the store as pending; return every status.

        Runs already present keep their status and results, which is what lets a sweep resume.
        A run left ``running`` by a driver that died is set back to ``pending`` (this writer holds
        the lock, so no other driver can be running it).
        """
        entries = list(entries)
        with self._transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO runs (key, kind, spec, status) VALUES (?, ?, ?, 'pending')", entries)
            conn.execute("UPDATE runs SET status = 'pending' WHERE status = 'running'")
            statuses = dict(conn.execute("SELECT key, status FROM runs"))
        return {key: statuses[key] for key, _, _ in entries}

    def mark_running(self, key: str, *, worker: str | None) -> None:
        """A worker was handed the run: status ``running``, one more attempt, start time now."""
        with self._transaction() as conn:
            conn.execute("UPDATE runs SET status = 'running', attempts = attempts + 1, started = ?, worker = ?, "
                         "finished = NULL, seconds = NULL WHERE key = ?", (now_utc(), worker, key))

    def mark_pending(self, keys: Iterable[str]) -> None:
        """The runs were stopped before finishing (Ctrl-C): back to ``pending`` so a rerun does them."""
        with self._transaction() as conn:
            conn.executemany("UPDATE runs SET status = 'pending' WHERE key = ? AND status = 'running'",
                             [(k,) for k in keys])

    def record_done(self, key: str, *, metrics: Mapping[str, float], histories: Mapping[str, list[dict]],
                    artefacts: Mapping[str, str | os.PathLike], started: str, finished: str, seconds: float,
                    versions: Mapping[str, str | None], worker: str | None, sweep: int | None = None) -> None:
        """Write a run's results and mark it ``done``, in one transaction; ``sweep`` is the :meth:`begin_sweep` id."""
        rows = [(key, name, i, canonical_json(row)) for name, table in histories.items() for i, row in enumerate(table)]
        with self._transaction() as conn:
            for table in ("metrics", "histories", "artefacts"):  # leftovers of nothing: a done run is written once
                conn.execute(f"DELETE FROM {table} WHERE key = ?", (key,))
            conn.executemany("INSERT INTO metrics (key, name, value) VALUES (?, ?, ?)",
                             [(key, name, float(value)) for name, value in metrics.items()])
            conn.executemany("INSERT INTO histories (key, name, row_index, row) VALUES (?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO artefacts (key, name, path) VALUES (?, ?, ?)",
                             [(key, name, self._relative(path)) for name, path in artefacts.items()])
            conn.execute(
                "UPDATE runs SET status = 'done', error = NULL, traceback = NULL, started = ?, finished = ?, seconds = ?, "
                f"worker = ?, sweep = ?, {', '.join(f'{c} = ?' for c in _VERSION_COLUMNS)} WHERE key = ?",
                (started, finished, float(seconds), worker, sweep,
                 *(versions.get(c.removesuffix("_version")) for c in _VERSION_COLUMNS), key),
            )

    def record_failure(self, key: str, *, error: str, traceback: str | None, final: bool,
                       started: str | None = None, finished: str | None = None, seconds: float | None = None,
                       versions: Mapping[str, str | None] | None = None, worker: str | None = None,
                       sweep: int | None = None) -> None:
        """Record a failed attempt: ``failed`` when ``final`` (no retry left), else back to ``pending``."""
        versions = versions or {}
        with self._transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, error = ?, traceback = ?, started = COALESCE(?, started), finished = ?, "
                f"seconds = ?, worker = COALESCE(?, worker), sweep = COALESCE(?, sweep), "
                f"{', '.join(f'{c} = COALESCE(?, {c})' for c in _VERSION_COLUMNS)} WHERE key = ?",
                ("failed" if final else "pending", error, traceback, started, finished, seconds, worker, sweep,
                 *(versions.get(c.removesuffix("_version")) for c in _VERSION_COLUMNS), key),
            )

    def begin_sweep(self, *, units: int, command: Iterable[str], versions: Mapping[str, str | None],
                    experiment: str | None = None, settings: Mapping[str, Any] | None = None) -> int:
        """Record that a sweep of ``units`` units starts now, run by ``command``; return its id.

        ``command`` is the command line (argv) that ran it, ``versions`` the driver's library
        versions, ``experiment`` the key of a recorded experiment (:meth:`record_experiment`) the
        sweep belongs to, ``settings`` what else decided where and how units ran (device,
        directories, executor), as a JSON object.
        """
        command = [str(a) for a in command]
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO sweeps (experiment, command, cwd, settings, host, started, units, "
                f"{', '.join(_VERSION_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (experiment, json.dumps(command, ensure_ascii=False), os.getcwd(), canonical_json(dict(settings or {})),
                 f"{socket.gethostname()}:{os.getpid()}",
                 now_utc(), int(units), *(versions.get(c.removesuffix("_version")) for c in _VERSION_COLUMNS)),
            )
            return int(cur.lastrowid)

    def end_sweep(self, sweep: int, *, done: int, skipped: int, failed: int, not_run: int) -> None:
        """Record how sweep ``sweep`` ended (a driver killed with -9 never gets here: ``finished`` stays NULL)."""
        with self._transaction() as conn:
            conn.execute("UPDATE sweeps SET finished = ?, done = ?, skipped = ?, failed = ?, not_run = ? WHERE id = ?",
                         (now_utc(), done, skipped, failed, not_run, sweep))

    def record_experiment(self, key: str, *, name: str, spec_json: str) -> None:
        """Record an experiment (its name and canonical JSON spec) under ``key``; already there: unchanged."""
        with self._transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO experiments (key, name, spec, created) VALUES (?, ?, ?, ?)",
                         (key, name, spec_json, now_utc()))

    def _relative(self, path: str | os.PathLike) -> str:
        path = Path(path).absolute()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    # ------------------------------------------------------------------ reading

    @contextmanager
    def snapshot(self) -> Iterator[Store]:
        """Make every read inside the block see the same committed state (one read transaction).

        Separate reads of a store that a sweep is writing may otherwise straddle a commit, e.g.
        :meth:`runs` before a unit finished and :meth:`metrics` after.
        """
        conn = self.connection
        if conn.in_transaction:  # nested: the outer snapshot holds
            yield self
            return
        with self._sqlite_errors():
            conn.execute("BEGIN")
        try:
            yield self
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _frame(self, query: str, params: tuple = ()):
        import pandas as pd

        with self._sqlite_errors():
            return pd.read_sql(query, self.connection, params=params)

    @staticmethod
    def _where(kind: str | None, status: str | None, prefix: str = "") -> tuple[str, tuple]:
        if status is not None and status not in STATUSES:
            raise UnknownNameError(f"status: unknown value {status!r}; available: {', '.join(STATUSES)}")
        clauses, params = [], []
        for column, value in (("kind", kind), ("status", status)):
            if value is not None:
                clauses.append(f"{prefix}{column} = ?")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", tuple(params)

    def runs(self, kind: str | None = None, status: str | None = None):
        """One row per run (every column of the ``runs`` table), optionally of one kind / status.

        Returns
        -------
        pandas.DataFrame
            Columns ``key, kind, spec`` (canonical JSON text), ``status, attempts, error,
            traceback, worker, started, finished, seconds`` and the four ``*_version`` columns,
            ordered by ``kind`` then ``key``.
        """
        where, params = self._where(kind, status)
        return self._frame(f"SELECT * FROM runs{where} ORDER BY kind, key", params)

    def metrics(self, kind: str | None = None, status: str | None = "done"):
        """Metrics in long format: columns ``key, kind, name, value``, of done runs by default."""
        where, params = self._where(kind, status, prefix="r.")
        return self._frame("SELECT m.key, r.kind, m.name, m.value FROM metrics m JOIN runs r ON r.key = m.key"
                           f"{where} ORDER BY r.kind, m.key, m.name", params)

    def history(self, key: str, name: str):
        """The per-step table ``name`` of run ``key`` (a key prefix is accepted), one row per step."""
        import pandas as pd

        key = self.resolve(key)
        with self._sqlite_errors():
            rows = self.connection.execute("SELECT row FROM histories WHERE key = ? AND name = ? ORDER BY row_index",
                                           (key, name)).fetchall()
            if not rows:
                names = [n for (n,) in self.connection.execute(
                    "SELECT DISTINCT name FROM histories WHERE key = ? ORDER BY name", (key,))]
                raise UnknownNameError(f"history: run {key} has no history {name!r}; available: {', '.join(names) or 'none'}")
        return pd.DataFrame.from_records([json.loads(r) for (r,) in rows])

    def histories(self, kind: str | None = None, status: str | None = "done"):
        """Every history row in long format: columns ``key, history, row_index``, then the rows' own fields."""
        import pandas as pd

        where, params = self._where(kind, status, prefix="r.")
        with self._sqlite_errors():
            rows = self.connection.execute("SELECT h.key, h.name, h.row_index, h.row FROM histories h JOIN runs r ON r.key = h.key"
                                           f"{where} ORDER BY h.key, h.name, h.row_index", params).fetchall()
        records = [dict(zip(HISTORY_COLUMNS, (k, n, i)), **json.loads(row)) for k, n, i, row in rows]
        return pd.DataFrame.from_records(records, columns=None if records else list(HISTORY_COLUMNS))

    def artefacts(self, key: str | None = None) -> dict[str, dict[str, Path]]:
        """Absolute artefact paths: ``{key: {name: path}}``, of one run (prefix accepted) or all."""
        query, params = "SELECT key, name, path FROM artefacts", ()
        if key is not None:
            query, params = query + " WHERE key = ?", (self.resolve(key),)
        out: dict[str, dict[str, Path]] = {}
        with self._sqlite_errors():
            for k, name, path in self.connection.execute(query + " ORDER BY key, name", params):
                out.setdefault(k, {})[name] = self.root / path
        return out

    def resolve(self, prefix: str) -> str:
        """The full key of the one run whose key starts with ``prefix``."""
        if not isinstance(prefix, str) or not prefix:
            raise UnknownNameError(f"key: expected a run key or a prefix of one, got {prefix!r}")
        with self._sqlite_errors():
            keys = [k for (k,) in self.connection.execute(
                "SELECT key FROM runs WHERE substr(key, 1, ?) = ? ORDER BY key LIMIT 6", (len(prefix), prefix))]
        if len(keys) == 1:
            return keys[0]
        if not keys:
            raise UnknownNameError(f"key: no run in {self.path} has a key starting with {prefix!r}")
        raise UnknownNameError(f"key: {prefix!r} is ambiguous in {self.path}; it starts "
                               f"{', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}")

    def run(self, key: str) -> RunRecord:
        """Everything about one run (a key prefix is accepted)."""
        key = self.resolve(key)
        conn = self.connection
        with self.snapshot(), self._sqlite_errors():
            cur = conn.execute("SELECT * FROM runs WHERE key = ?", (key,))
            row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
            metrics = dict(conn.execute("SELECT name, value FROM metrics WHERE key = ? ORDER BY name", (key,)))
            histories = dict(conn.execute("SELECT name, COUNT(*) FROM histories WHERE key = ? GROUP BY name ORDER BY name", (key,)))
            artefacts = self.artefacts(key).get(key, {})
        return RunRecord(
            key=key, kind=row["kind"], spec=json.loads(row["spec"]), status=row["status"], attempts=row["attempts"],
            error=row["error"], traceback=row["traceback"], worker=row["worker"], started=row["started"],
            finished=row["finished"], seconds=row["seconds"], versions={c: row[c] for c in _VERSION_COLUMNS},
            metrics=metrics, histories=histories, artefacts=artefacts,
        )

    def counts(self) -> dict[str, int]:
        """Number of runs per status (every status present, zeros included)."""
        with self._sqlite_errors():
            found = dict(self.connection.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
        return {s: found.get(s, 0) for s in STATUSES}

    def table(self, name: str):
        """One table as stored, ``pandas.read_sql("SELECT * FROM <name>", store.connection)``.

        A table newer than the file's schema version is returned empty, with its columns.
        """
        if name not in TABLES:
            raise UnknownNameError(f"table: unknown table {name!r}; available: {', '.join(TABLES)}")
        if TABLES_SINCE[name] > self.schema_version:
            import pandas as pd

            return pd.DataFrame(columns=_NEW_TABLE_COLUMNS[name])
        return self._frame(f"SELECT * FROM {name}")

    def sweeps(self):
        """One row per sweep (the ``sweeps`` table), in the order they started; ``command`` a list, ``settings`` a dict.

        Empty for a store of schema version 1, which did not record sweeps.
        """
        frame = self.table("sweeps")
        frame["command"] = [json.loads(c) for c in frame["command"]]
        frame["settings"] = [json.loads(c) if isinstance(c, str) else {} for c in frame["settings"]]
        return frame

    def experiments(self):
        """One row per recorded experiment: ``key, name, spec`` (a dict), ``created``, in the order recorded."""
        frame = self.table("experiments")
        if len(frame):
            frame = frame.sort_values(["created", "key"], kind="stable").reset_index(drop=True)
        frame["spec"] = [json.loads(s) for s in frame["spec"]]
        return frame


def _validate(path: Path) -> int:
    """Refuse, read-only, anything but an intact store of a schema this version reads; return its version."""
    if path.stat().st_size == 0:
        raise DataError(f"store {path}: is an empty file, not a layer_sim results store; refusing to touch it")
    # A read-only connection to a WAL database creates PATH-wal and PATH-shm beside it. Where no
    # -wal exists no writer is connected (a writer keeps it until it closes), so the check reads
    # the file as immutable and leaves nothing behind, whatever the file turns out to be.
    immutable = "" if path.with_name(path.name + "-wal").exists() else "&immutable=1"
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro{immutable}", uri=True, isolation_level=None, timeout=30)
    except sqlite3.Error as exc:
        raise DataError(f"store {path}: cannot be opened read-only ({exc})") from exc
    try:
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
                raise DataError(f"store {path}: is not a layer_sim results store (not a SQLite database: {exc}); "
                                "refusing to touch it") from exc
            raise DataError(f"store {path}: is damaged ({exc}); it was left as it is") from exc
        try:
            meta = dict(conn.execute("SELECT name, value FROM meta")) if app_id == APPLICATION_ID else {}
        except sqlite3.DatabaseError as exc:
            raise DataError(f"store {path}: is damaged ({exc}); it was left as it is") from exc
        if app_id != APPLICATION_ID or meta.get("format") != FORMAT:
            raise DataError(f"store {path}: is a SQLite database but not a layer_sim results store; refusing to touch it")
        version = meta.get("schema_version", "")
        if not version.isdigit() or int(version) < 1:
            raise DataError(f"store {path}: has no valid schema_version in its meta table (found {version!r})")
        if int(version) > SCHEMA_VERSION:
            raise DataError(f"store {path}: has schema version {version}, newer than the {SCHEMA_VERSION} this "
                            "layer_sim reads; upgrade layer_sim to open it")
        try:
            problems = [r for (r,) in conn.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            raise DataError(f"store {path}: is damaged (truncated or corrupt: {problems[0]}); it was left as it is")
    finally:
        conn.close()
    return int(version)
