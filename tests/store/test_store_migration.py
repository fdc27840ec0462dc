"""Schema version 2: sweeps and experiments recorded; a version-1 store is read as it is and upgraded by a writer."""

import json
import sqlite3

from layer_sim.runs import Unit, UnitResult, run_sweep, unit_kind
from layer_sim.store import SCHEMA_VERSION, TABLES, Store
from layer_sim.store._schema import APPLICATION_ID

#: The tables of schema version 1, as layer_sim 0.1.0 created them (copied here, not taken from the code).
V1_DDL = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (key TEXT PRIMARY KEY, kind TEXT NOT NULL, spec TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, traceback TEXT, worker TEXT, started TEXT, finished TEXT,
    seconds REAL, layer_sim_version TEXT, torch_version TEXT, numpy_version TEXT, python_version TEXT);
CREATE INDEX runs_kind_status ON runs (kind, status);
CREATE TABLE metrics (key TEXT NOT NULL REFERENCES runs (key), name TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (key, name));
CREATE TABLE histories (key TEXT NOT NULL REFERENCES runs (key), name TEXT NOT NULL, row_index INTEGER NOT NULL,
    row TEXT NOT NULL, PRIMARY KEY (key, name, row_index));
CREATE TABLE artefacts (key TEXT NOT NULL REFERENCES runs (key), name TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (key, name));
"""


def make_v1_store(path):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.executescript(V1_DDL)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "layer_sim.store"), ("schema_version", "1"),
                                                        ("created", "2026-12-01T00:00:00.000+00:00")])
    conn.execute("INSERT INTO runs (key, kind, spec, status, attempts, seconds) VALUES ('k1', 'toy', '{\"i\":1}', 'done', 1, 0.5)")
    conn.execute("INSERT INTO metrics VALUES ('k1', 'square', 1.0)")
    conn.commit()
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    return path


@unit_kind("migration.echo")
def echo(spec, context):
    return UnitResult(metrics={"i": spec["i"]})


def test_a_version_1_store_is_read_as_it_is_and_reported(tmp_path):
    from layer_sim.report.html import render_html
    from layer_sim.report.sections import build_report

    path = make_v1_store(tmp_path / "old.sqlite")
    before = path.read_bytes()
    with Store(path) as s:
        assert s.schema_version == 1
        assert s.sweeps().empty and s.experiments().empty and list(s.sweeps().columns)[:3] == ["id", "experiment", "command"]
        assert s.metrics()["value"].tolist() == [1.0]
        doc = build_report(s)
    assert path.read_bytes() == before, "a reader modified a version-1 store"
    page = render_html(doc)
    assert "Runs of kind toy" in page and "predates schema version 2" in page
    assert dict(doc.facts)["schema version"] == "1"


def test_a_writer_upgrades_a_version_1_store_keeping_every_run(tmp_path):
    path = make_v1_store(tmp_path / "old.sqlite")
    summary = run_sweep([Unit("migration.echo", {"i": 2})], path, command=["python", "x.py"])
    assert summary.done == 1
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT name, value FROM meta"))["schema_version"] == str(SCHEMA_VERSION) == "2"
    assert {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == set(TABLES)
    rows = dict(conn.execute("SELECT key, sweep FROM runs"))
    assert rows["k1"] is None and rows[Unit("migration.echo", {"i": 2}).key] == 1  # the old run kept, without a sweep
    assert conn.execute("SELECT value FROM metrics WHERE key = 'k1'").fetchall() == [(1.0,)]
    conn.close()


def test_each_sweep_is_recorded_with_its_command_counts_and_versions(tmp_path):
    path = tmp_path / "results.sqlite"
    units = [Unit("migration.echo", {"i": i}) for i in range(3)]
    run_sweep(units[:2], path, command=["layer-sim", "x", "--n", "2"])
    run_sweep(units, path)  # default command: this Python and sys.argv
    with Store(path) as s:
        sweeps = s.sweeps()
        runs = s.runs().set_index("key")
    assert sweeps["id"].tolist() == [1, 2]
    assert sweeps["command"][0] == ["layer-sim", "x", "--n", "2"] and sweeps["command"][1][1:2] != []
    assert sweeps[["units", "done", "skipped", "failed", "not_run"]].values.tolist() == [[2, 2, 0, 0, 0], [3, 1, 2, 0, 0]]
    assert sweeps["finished"].notna().all() and (sweeps["torch_version"] == runs["torch_version"].iloc[0]).all()
    # each run names the sweep that finished it
    assert runs.loc[[u.key for u in units], "sweep"].tolist() == [1, 1, 2]
    assert json.loads(sqlite3.connect(path).execute("SELECT command FROM sweeps WHERE id = 1").fetchone()[0])[0] == "layer-sim"
