"""Export a results store as CSV or Parquet files, one per table, for tools that do not read SQLite."""

from __future__ import annotations

import os
from pathlib import Path

from layer_sim._io import atomic_write
from layer_sim._options import Choice, check_options
from layer_sim.errors import ConfigError
from layer_sim.store.sqlite import Store

__all__ = ["export_store", "EXPORT_FORMATS"]

#: ``--format`` of ``layer-sim runs export``.
EXPORT_FORMATS = ("csv", "parquet")


def export_store(store: str | os.PathLike, output: str | os.PathLike, *, format: str = "csv") -> list[Path]:
    """Write ``meta``, ``runs``, ``metrics``, ``histories`` and ``artefacts`` of ``store`` to ``output/``.

    ``runs`` and ``meta`` are the tables as stored; ``metrics`` is long (``key, kind, name, value``)
    for runs of every status; ``histories`` is long with every row's fields as columns (``key, history,
    row_index, <fields>``, see :meth:`Store.histories`); ``artefacts`` holds absolute paths. Each file is
    written atomically. Parquet needs pyarrow (``pip install 'layer-sim[parquet]'``), checked before
    anything is read or written.

    Returns
    -------
    list of Path
        The files written, ``output/<table>.<format>``.
    """
    fmt = check_options("export", {"format": Choice(*EXPORT_FORMATS)}, {"format": format})["format"]
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("export: format 'parquet' needs pyarrow, which is not installed: "
                              "pip install 'layer-sim[parquet]' (or use format 'csv')") from None
    import pandas as pd

    with Store(store) as s, s.snapshot():
        artefacts = [{"key": k, "name": n, "path": str(p)} for k, named in s.artefacts().items() for n, p in named.items()]
        frames = {
            "meta": s.table("meta"),
            "runs": s.runs(),
            "metrics": s.metrics(status=None),
            "histories": s.histories(status=None),
            "artefacts": pd.DataFrame.from_records(artefacts, columns=["key", "name", "path"]),
        }
    output = Path(output)
    written = []
    for name, frame in frames.items():
        path = output / f"{name}.{fmt}"
        if fmt == "csv":
            atomic_write(path, lambda fh, f=frame: f.to_csv(fh, index=False))
        else:
            atomic_write(path, lambda fh, f=frame: f.to_parquet(fh, index=False, engine="pyarrow"))
        written.append(path)
    return written
