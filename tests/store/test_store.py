"""The results store: schema, refusing what is not a store (without touching it), transactions, readers."""

import doctest
import hashlib
import json
import os
import sqlite3

import pandas as pd
import pytest

import layer_sim.store.sqlite as store_module
from layer_sim.errors import DataError, UnknownNameError
from layer_sim.store import SCHEMA_VERSION, TABLES, Store
from layer_sim.store._schema import APPLICATION_ID

VERSIONS = {"layer_sim": "0.1.0", "torch": "2.13.0", "numpy": "2.4.6", "python": "3.11.7"}


def _done(store, key, i, *, rows=3):
    store.record_done(key, metrics={"square": i * i, "half": i / 2},
                      histories={"curve": [{"step": s, "loss": 1 / (1 + s + i)} for s in range(rows)]},
                      artefacts={}, started="2026-01-01T00:00:00.000+00:00", finished="2026-01-01T00:00:01.000+00:00",
                      seconds=1.0, versions=VERSIONS, worker="host:1")


def _populated(path, n=4):
    with Store(path, write=True) as s:
        s.plan([(f"k{i:02d}", "toy", json.dumps({"i": i})) for i in range(n)])
        for i in range(n):
            s.mark_running(f"k{i:02d}", worker="host:1")
            _done(s, f"k{i:02d}", i)
    return path


def _snapshot(directory):
    """Names and SHA-256 of every file in ``directory``: equal before and after means untouched."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_new_store_has_schema_version_application_id_and_all_tables(tmp_path):
    path = tmp_path / "sub" / "results.sqlite"
    Store(path, write=True).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == int.from_bytes(b"LSim", "big") == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(conn.execute("SELECT name, value FROM meta"))
    assert meta["format"] == "layer_sim.store" and meta["schema_version"] == str(SCHEMA_VERSION) == "2"
    names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == set(TABLES)
    conn.close()
    assert not list(path.parent.glob("*.part")), "the temporary file of the creation was left behind"


def test_pandas_reads_every_table_with_read_sql(tmp_path):
    path = _populated(tmp_path / "r.sqlite")
    conn = sqlite3.connect(path)
    frames = {t: pd.read_sql(f"SELECT * FROM {t}", conn) for t in TABLES}
    conn.close()
    assert len(frames["runs"]) == 4 and set(frames["runs"]["status"]) == {"done"}
    assert len(frames["metrics"]) == 8 and len(frames["histories"]) == 12
    assert frames["runs"].loc[frames["runs"]["key"] == "k03", "python_version"].item() == "3.11.7"
    row = json.loads(frames["histories"].query("key == 'k02' and row_index == 1")["row"].item())
    assert row == {"step": 1, "loss": 1 / 4}


def test_readers_return_what_was_written(tmp_path):
    path = _populated(tmp_path / "r.sqlite")
    with Store(path) as s:
        runs = s.runs()
        assert list(runs["key"]) == ["k00", "k01", "k02", "k03"]
        assert runs["attempts"].tolist() == [1, 1, 1, 1]
        m = s.metrics()
        assert m.query("key == 'k03' and name == 'square'")["value"].item() == 9.0
        assert m.query("key == 'k03' and name == 'half'")["value"].item() == 1.5
        h = s.history("k02", "curve")
        assert h.to_dict("records") == [{"step": s_, "loss": 1 / (1 + s_ + 2)} for s_ in range(3)]
        long = s.histories()
        assert list(long.columns) == ["key", "history", "row_index", "loss", "step"] and len(long) == 12
        assert long.query("key == 'k02'")["row_index"].tolist() == [0, 1, 2]
        rec = s.run("k01")
        assert rec.status == "done" and rec.metrics == {"half": 0.5, "square": 1.0} and rec.histories == {"curve": 3}
        assert rec.versions["torch_version"] == "2.13.0" and rec.spec == {"i": 1}
        assert s.counts() == {"pending": 0, "running": 0, "done": 4, "failed": 0}
        assert s.table("meta").set_index("name").loc["schema_version", "value"] == "2"


def test_prefix_resolution_and_unknown_names(tmp_path):
    path = _populated(tmp_path / "r.sqlite")
    with Store(path) as s:
        assert s.resolve("k03") == "k03"
        with pytest.raises(UnknownNameError, match="ambiguous.*k00, k01, k02, k03"):
            s.resolve("k0")
        with pytest.raises(UnknownNameError, match="no run .* starting with 'zz'"):
            s.resolve("zz")
        with pytest.raises(UnknownNameError, match="has no history 'loss'; available: curve"):
            s.history("k01", "loss")
        with pytest.raises(UnknownNameError, match="status: unknown value 'finished'"):
            s.runs(status="finished")
        with pytest.raises(UnknownNameError, match="unknown table 'run'"):
            s.table("run")


def test_reads_in_a_snapshot_see_one_committed_state_while_the_writer_commits(tmp_path):
    path = _populated(tmp_path / "r.sqlite", n=2)
    with Store(path, write=True) as writer, Store(path) as reader:
        writer.plan([("k02", "toy", "{}")])
        with reader.snapshot():
            before = len(reader.runs())
            writer.mark_running("k02", worker="host:1")
            _done(writer, "k02", 2)
            assert len(reader.runs()) == before == 3 and reader.metrics()["key"].nunique() == 2
            assert reader.run("k02").status == "pending"  # nested reads join the outer snapshot
        assert reader.metrics()["key"].nunique() == 3 and reader.run("k02").status == "done"


def test_a_reader_cannot_write_and_never_creates_a_store(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        Store(tmp_path / "missing.sqlite")
    assert not list(tmp_path.iterdir())
    path = _populated(tmp_path / "r.sqlite")
    with Store(path) as s, pytest.raises(DataError, match="read-only"):
        s.plan([("k9", "toy", "{}")])


def test_done_is_committed_with_its_results_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "r.sqlite"
    with Store(path, write=True) as s:
        s.plan([("k1", "toy", "{}")])
        s.mark_running("k1", worker="host:1")

        def broken(p):  # fails after the metrics and histories rows were inserted
            raise OSError("disk on fire")

        monkeypatch.setattr(s, "_relative", broken)
        with pytest.raises(OSError, match="disk on fire"):
            s.record_done("k1", metrics={"a": 1.0}, histories={"h": [{"x": 1}]}, artefacts={"f": "f.txt"},
                          started="s", finished="f", seconds=1.0, versions=VERSIONS, worker="host:1")
    with Store(path) as s:
        assert s.runs()["status"].tolist() == ["running"]
        assert s.metrics(status=None).empty and s.histories(status=None).empty


def test_plan_keeps_done_runs_and_resets_stale_running_ones(tmp_path):
    path = _populated(tmp_path / "r.sqlite", n=2)
    with Store(path, write=True) as s:
        s.plan([("k05", "toy", "{}")])
        s.mark_running("k05", worker="host:9")
    with Store(path, write=True) as s:  # the driver that marked k05 running is gone
        statuses = s.plan([("k00", "toy", "{}"), ("k05", "toy", "{}"), ("k06", "toy", "{}")])
    assert statuses == {"k00": "done", "k05": "pending", "k06": "pending"}


def test_failures_are_recorded_with_their_error(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store(path, write=True) as s:
        s.plan([("k1", "toy", "{}")])
        s.mark_running("k1", worker="host:1")
        s.record_failure("k1", error="ValueError: no", traceback="Traceback ...", final=False)
        assert s.runs()[["status", "attempts", "error"]].values.tolist() == [["pending", 1, "ValueError: no"]]
        s.mark_running("k1", worker="host:2")
        s.record_failure("k1", error="ValueError: still no", traceback=None, final=True)
        rec = s.run("k1")
    assert (rec.status, rec.attempts, rec.error, rec.worker) == ("failed", 2, "ValueError: still no", "host:2")


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store(path, write=True):
        with pytest.raises(DataError, match=rf"already being written by .*:{os.getpid()}; one sweep writes"):
            Store(path, write=True)
        with Store(path) as reader:  # readers are never blocked
            assert reader.runs().empty
    Store(path, write=True).close()  # the lock went with the first writer


# ---------------------------------------------------------------- files that are not stores


def _foreign(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (key TEXT, status TEXT)")
    conn.execute("INSERT INTO runs VALUES ('a', 'done')")
    conn.commit()
    conn.close()


def _newer(path):
    _populated(path, n=1)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    conn.commit()
    conn.execute("PRAGMA journal_mode=DELETE")  # fold the WAL back so the store is one file
    conn.close()


def _truncated(path):
    _populated(path, n=60)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_page(path):
    _populated(path, n=60)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page + 8: 2 * page] = os.urandom(page - 8)  # garbage over page 2, header of page 1 intact
    path.write_bytes(bytes(data))


CASES = {
    "random bytes": (lambda p: p.write_bytes(os.urandom(8192)), "not a layer_sim results store \\(not a SQLite database"),
    "text file": (lambda p: p.write_text("key,status\na,done\n"), "not a SQLite database"),
    "empty file": (lambda p: p.write_bytes(b""), "empty file"),
    "foreign SQLite database": (_foreign, "is a SQLite database but not a layer_sim results store"),
    "newer schema": (_newer, "schema version 99, newer than the 2 this layer_sim reads; upgrade"),
    "truncated store": (_truncated, "damaged"),
    "corrupt page": (_corrupt_page, "damaged"),
}


@pytest.mark.parametrize("write", [False, True], ids=["reader", "writer"])
@pytest.mark.parametrize("case", list(CASES))
def test_what_is_not_a_readable_store_is_refused_and_left_untouched(tmp_path, case, write):
    make, message = CASES[case]
    path = tmp_path / "results.sqlite"
    make(path)
    for extra in tmp_path.glob("results.sqlite-*"):  # a fixture's own WAL leftovers are not ours to judge
        extra.unlink()
    before = _snapshot(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        Store(path, write=write)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert _snapshot(tmp_path) == before, "the refused file was modified, or files appeared beside it"


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        Store(tmp_path, write=True)


def test_a_path_that_cannot_be_created_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"store .*file/results.sqlite: cannot be opened for writing \(File exists: .*file\)"):
        Store(tmp_path / "file" / "results.sqlite", write=True)


def test_doctests():
    failures, tried = doctest.testmod(store_module)
    assert tried > 0 and failures == 0
