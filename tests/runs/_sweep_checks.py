"""What a store holds, read with plain sqlite3, and what it must hold for ``test.compute`` units."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import _sweep_units


def store_contents(path) -> dict[str, dict]:
    """``{key: {status, kind, spec, metrics, histories, artefacts}}`` with artefacts as file contents."""
    path = Path(path)
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    runs = {key: {"status": status, "kind": kind, "spec": json.loads(spec), "metrics": {}, "histories": {},
                  "artefacts": {}}
            for key, kind, spec, status in conn.execute("SELECT key, kind, spec, status FROM runs")}
    for key, name, value in conn.execute("SELECT key, name, value FROM metrics"):
        runs[key]["metrics"][name] = value
    for key, name, i, row in conn.execute("SELECT key, name, row_index, row FROM histories ORDER BY key, name, row_index"):
        rows = runs[key]["histories"].setdefault(name, [])
        assert i == len(rows), f"history {name} of {key}: row {i} after {len(rows)} rows"
        rows.append(json.loads(row))
    for key, name, rel in conn.execute("SELECT key, name, path FROM artefacts"):
        runs[key]["artefacts"][name] = (path.parent / rel).read_text()
    conn.close()
    return runs


def expected_contents(units) -> dict[str, dict]:
    """The store after every ``test.compute`` unit in ``units`` ran once, from the closed forms."""
    return {u.key: {"status": "done", "kind": u.kind, "spec": u.spec, "metrics": _sweep_units.expected_metrics(u.spec),
                    "histories": {"curve": _sweep_units.expected_curve(u.spec)},
                    "artefacts": {"value": f"{u.spec['i']}\n"}}
            for u in units}
