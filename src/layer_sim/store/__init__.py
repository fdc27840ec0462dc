"""The results store: every run of every sweep, its spec, status, timings, versions and results.

One SQLite file (standard library ``sqlite3``), written only by the sweep driver and readable by
anything, pandas included (``pandas.read_sql("SELECT * FROM runs", store.connection)``).
Tables: ``meta`` (format, schema version), ``runs``, ``metrics``, ``histories``, ``artefacts``.
"""

from layer_sim.store._schema import SCHEMA_VERSION, STATUSES, TABLES
from layer_sim.store.sqlite import DEFAULT_STORE_NAME, RunRecord, Store, default_store_path

__all__ = ["Store", "RunRecord", "SCHEMA_VERSION", "STATUSES", "TABLES", "DEFAULT_STORE_NAME", "default_store_path"]
