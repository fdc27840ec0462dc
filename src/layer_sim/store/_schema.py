"""The results store's SQLite schema, its version and how a file is recognised as a store.

A store is recognised twice over: SQLite's header field ``application_id`` holds
:data:`APPLICATION_ID` (readable without parsing any table), and the ``meta`` table holds
``format = layer_sim.store`` and ``schema_version``. The version is bumped whenever a table or the
meaning of a column changes; a file with a newer version is refused, never rewritten.
"""

from __future__ import annotations

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "FORMAT", "STATUSES", "TABLES", "DDL", "HISTORY_COLUMNS"]

#: Version of the tables below.
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of every store: the ASCII bytes "LSim".
APPLICATION_ID = int.from_bytes(b"LSim", "big")
#: ``meta.format`` of every store.
FORMAT = "layer_sim.store"
#: The life of a run: planned, handed to a worker, finished with results, or given up on.
STATUSES = ("pending", "running", "done", "failed")
#: Every table, in the order the export writes them.
TABLES = ("meta", "runs", "metrics", "histories", "artefacts")
#: Leading columns of histories in long format (:meth:`Store.histories`); a history row's own
#: fields may not use these names.
HISTORY_COLUMNS = ("key", "history", "row_index")

DDL = f"""
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE runs (
    key               TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    spec              TEXT NOT NULL,      -- canonical JSON
    status            TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
    attempts          INTEGER NOT NULL DEFAULT 0,
    error             TEXT,               -- one line: what went wrong in the last attempt
    traceback         TEXT,
    worker            TEXT,               -- host:pid of the last attempt
    started           TEXT,               -- ISO 8601 UTC, last attempt
    finished          TEXT,
    seconds           REAL,               -- wall time of the unit function in its worker
    layer_sim_version TEXT,
    torch_version     TEXT,
    numpy_version     TEXT,
    python_version    TEXT
);
CREATE INDEX runs_kind_status ON runs (kind, status);
CREATE TABLE metrics (
    key   TEXT NOT NULL REFERENCES runs (key),
    name  TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (key, name)
);
CREATE TABLE histories (
    key  TEXT NOT NULL REFERENCES runs (key),
    name TEXT NOT NULL,
    row_index INTEGER NOT NULL,           -- 0, 1, ... in the order the unit returned the rows
    row  TEXT NOT NULL,                   -- canonical JSON object
    PRIMARY KEY (key, name, row_index)
);
CREATE TABLE artefacts (
    key  TEXT NOT NULL REFERENCES runs (key),
    name TEXT NOT NULL,
    path TEXT NOT NULL,                   -- relative to the store's directory when inside it
    PRIMARY KEY (key, name)
);
"""
