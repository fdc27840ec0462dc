"""The results store: every run of every sweep, its spec, status, timings, versions and results.

One SQLite file (standard library ``sqlite3``), written only by the sweep driver and readable by
anything, pandas included (``pandas.read_sql("SELECT * FROM runs", store.connection)``).
Tables: ``meta`` (format, schema version), ``runs``, ``metrics``, ``histories``, ``artefacts``, and
the provenance of every result: ``sweeps`` (the command line, driver and versions of each sweep;
``runs.sweep`` names the sweep of a run's last attempt) and ``experiments`` (name and spec of each
experiment a sweep belonged to).
"""

from layer_sim.store._schema import SCHEMA_VERSION, STATUSES, TABLES
from layer_sim.store.sqlite import DEFAULT_STORE_NAME, RunRecord, Store, default_store_path

__all__ = ["Store", "RunRecord", "SCHEMA_VERSION", "STATUSES", "TABLES", "DEFAULT_STORE_NAME", "default_store_path"]
