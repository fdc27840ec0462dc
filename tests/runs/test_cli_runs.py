"""``layer-sim runs list|show|export``: output checked against the store read with plain sqlite3."""

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from _sweep_checks import store_contents
from layer_sim.cli import app
from layer_sim.errors import ConfigError, UnknownNameError
from layer_sim.runs import Unit, run_sweep

README = Path(__file__).resolve().parents[2] / "README.md"
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "results.sqlite"
    units = [Unit("test.compute", {"i": i}) for i in range(3)] + [Unit("test.fail", {"i": 5})]
    run_sweep(units, path, retries=0)
    return path


def _invoke(*args):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_list_json_holds_every_run_with_spec_status_and_metrics(store):
    records = json.loads(_invoke("runs", "list", "--store", str(store), "--format", "json"))
    expected = store_contents(store)
    assert {r["key"]: (r["kind"], r["spec"], r["status"], r["metrics"]) for r in records} == \
        {k: (v["kind"], v["spec"], v["status"], v["metrics"]) for k, v in expected.items()}
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"] == "ValueError: unit 5 refuses to run" and failed[0]["seconds"] >= 0
    done = [r for r in records if r["status"] == "done"]
    assert all(r["python_version"] and r["attempts"] == 1 and r["finished"] >= r["started"] for r in done)


def test_list_filters_by_kind_and_status(store):
    only_failed = json.loads(_invoke("runs", "list", "--store", str(store), "--status", "failed", "--format", "json"))
    assert [r["kind"] for r in only_failed] == ["test.fail"]
    compute = json.loads(_invoke("runs", "list", "--store", str(store), "--kind", "test.compute", "--format", "json"))
    assert len(compute) == 3 and {r["status"] for r in compute} == {"done"}


def test_list_table_shows_keys_statuses_metrics_and_errors(store):
    out = _invoke("runs", "list", "--store", str(store))
    assert "4 runs in" in out
    for key, run in store_contents(store).items():
        line = next(line for line in out.splitlines() if key[:12] in line)
        assert run["status"] in line and run["kind"] in line
        if run["status"] == "done":
            assert f"square={run['metrics']['square']:.4g}" in line
        else:
            assert "ValueError: unit 5 refuses to run" in line


def test_show_accepts_a_prefix_and_prints_everything(store):
    contents = store_contents(store)
    key = next(k for k, v in contents.items() if v["spec"] == {"i": 2})
    out = _invoke("runs", "show", key[:6], "--store", str(store))
    assert out.splitlines()[0] == f"key       {key}"
    assert "status    done (1 attempt)" in out and 'spec      {"i": 2}' in out
    assert re.search(r"^  square    4$", out, re.M) and re.search(r"^  curve  3 rows$", out, re.M)
    assert str(store.parent / "artefacts" / key / "value.txt") in out
    assert re.search(r"^versions  layer_sim \S+, torch \S+, numpy \S+, python \S+$", out, re.M)
    as_json = json.loads(_invoke("runs", "show", key, "--store", str(store), "--format", "json"))
    assert as_json["metrics"] == contents[key]["metrics"] and as_json["histories"] == {"curve": 3}
    failed = next(k for k, v in contents.items() if v["status"] == "failed")
    out = _invoke("runs", "show", failed, "--store", str(store))
    assert "error     ValueError: unit 5 refuses to run" in out and "raise ValueError" in out


def test_show_with_an_ambiguous_or_unknown_key_names_it(store):
    with pytest.raises(UnknownNameError, match="no run .* starting with 'zzz'"):
        runner.invoke(app, ["runs", "show", "zzz", "--store", str(store)], catch_exceptions=False)


def test_export_csv_and_parquet_hold_the_same_tables(store, tmp_path):
    out = _invoke("runs", "export", "--store", str(store), "--output", str(tmp_path / "csv"))
    names = ("meta", "runs", "metrics", "histories", "artefacts")
    assert out.splitlines() == [f"wrote {tmp_path / 'csv' / n}.csv" for n in names]
    csv = {n: pd.read_csv(tmp_path / "csv" / f"{n}.csv") for n in names}
    contents = store_contents(store)
    assert set(csv["runs"]["key"]) == set(contents)
    assert {(k, n): v for k, n, v in csv["metrics"][["key", "name", "value"]].itertuples(index=False)} == \
        {(k, n): v for k, run in contents.items() for n, v in run["metrics"].items()}
    h = csv["histories"]
    assert list(h.columns) == ["key", "history", "row_index", "loss", "step"]
    assert {k: h[h["key"] == k][["loss", "step"]].to_dict("records") for k in set(h["key"])} == \
        {k: run["histories"]["curve"] for k, run in contents.items() if run["histories"]}
    assert all(Path(p).read_text() == contents[k]["artefacts"]["value"] for k, p in csv["artefacts"][["key", "path"]].itertuples(index=False))
    if importlib.util.find_spec("pyarrow") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pyarrow is not installed, and CI must run the Parquet export test")
        pytest.skip("pyarrow is not installed: the Parquet export is untested here (pip install 'layer-sim[parquet]')")
    _invoke("runs", "export", "--store", str(store), "--output", str(tmp_path / "pq"), "--format", "parquet")
    for n in names:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "pq" / f"{n}.parquet"), csv[n], check_dtype=False)


def test_export_parquet_without_pyarrow_says_how_to_get_it(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(ConfigError, match=r"format 'parquet' needs pyarrow, .*pip install 'layer-sim\[parquet\]'"):
        runner.invoke(app, ["runs", "export", "--store", str(store), "--output", str(tmp_path), "--format", "parquet"],
                      catch_exceptions=False)
    assert not list(tmp_path.iterdir())


def test_the_console_script_prints_one_line_errors_and_leaves_a_bad_file_alone(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("not a database at all\n" * 100)
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    proc = subprocess.run([sys.executable, "-m", "layer_sim", "runs", "list", "--store", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (f"error: store {bad}: is not a layer_sim results store "
                                   "(not a SQLite database: file is not a database); refusing to touch it")
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == digest and os.listdir(tmp_path) == ["notes.sqlite"]
