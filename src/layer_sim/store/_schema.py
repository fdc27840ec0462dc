"""The results store's SQLite schema, its version and how a file is recognised as a store.

A store is recognised twice over: SQLite's header field ``application_id`` holds
:data:`APPLICATION_ID` (readable without parsing any table), and the ``meta`` table holds
``format = layer_sim.store`` and ``schema_version``. The version is bumped whenever a table or the
meaning of a column changes; a file with a newer version is refused, never rewritten. An older
version is upgraded in place, in one transaction, when a writer opens it (:data:`MIGRATIONS`);
readers read it as it is.
"""

from __future__ import annotations

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "FORMAT", "STATUSES", "TABLES", "TABLES_SINCE", "DDL", "MIGRATIONS",
           "HISTORY_COLUMNS"]

#: Version of the tables below (1: runs, metrics, histories, artefacts; 2: + sweeps, experiments and
#: ``runs.sweep``, the provenance of every result).
SCHEMA_VERSION = 2
#: ``PRAGMA application_id`` of every store: the ASCII bytes "LSim".
APPLICATION_ID = int.from_bytes(b"LSim", "big")
#: ``meta.format`` of every store.
FORMAT = "layer_sim.store"
#: The life of a run: planned, handed to a worker, finished with results, or given up on.
STATUSES = ("pending", "running", "done", "failed")
#: Every table, in the order the export writes them.
TABLES = ("meta", "runs", "metrics", "histories", "artefacts", "sweeps", "experiments")
#: The schema version that introduced each table (a reader of an older store sees them empty).
TABLES_SINCE = {"meta": 1, "runs": 1, "metrics": 1, "histories": 1, "artefacts": 1, "sweeps": 2, "experiments": 2}
#: Leading columns of histories in long format (:meth:`Store.histories`); a history row's own
#: fields may not use these names.
HISTORY_COLUMNS = ("key", "history", "row_index")

_VERSIONS_COLUMNS = """
    layer_sim_version TEXT,
    torch_version     TEXT,
    numpy_version     TEXT,
    python_version    TEXT"""

_SWEEPS_AND_EXPERIMENTS = f"""
CREATE TABLE sweeps (
    id         INTEGER PRIMARY KEY,   -- 1, 2, ... in the order the sweeps started
    experiment TEXT REFERENCES experiments (key),  -- NULL for a sweep that is not part of an experiment
    command    TEXT NOT NULL,         -- JSON list: the command line that ran the sweep (argv)
    cwd        TEXT,                  -- its working directory
    settings   TEXT,                  -- JSON: device, data and cache directories, executor (where units ran)
    host       TEXT,                  -- host:pid of the driver
    started    TEXT NOT NULL,         -- ISO 8601 UTC
    finished   TEXT,                  -- NULL while running, or when the driver was killed
    units      INTEGER NOT NULL,      -- distinct units asked for
    done       INTEGER,               -- what the sweep's summary said (NULL until it finished)
    skipped    INTEGER,
    failed     INTEGER,
    not_run    INTEGER,{_VERSIONS_COLUMNS}   -- of the driver
);
CREATE TABLE experiments (
    key     TEXT PRIMARY KEY,         -- content key of (name, spec)
    name    TEXT NOT NULL,            -- e.g. sanity-check: names the plan, collect and report section
    spec    TEXT NOT NULL,            -- canonical JSON
    created TEXT NOT NULL
);
"""

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
    python_version    TEXT,
    sweep             INTEGER REFERENCES sweeps (id)  -- the sweep of the last attempt
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
{_SWEEPS_AND_EXPERIMENTS}"""

#: ``MIGRATIONS[v]``: the statements that take a store of version ``v`` to ``v + 1`` (run in one
#: transaction with the update of ``meta.schema_version``).
MIGRATIONS: dict[int, str] = {
    1: f"ALTER TABLE runs ADD COLUMN sweep INTEGER REFERENCES sweeps (id);{_SWEEPS_AND_EXPERIMENTS}",
}
