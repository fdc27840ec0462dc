"""Tables of results as Markdown, CSV and JSON (the same records in every format)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["markdown_table", "write_table"]


def markdown_table(records: Sequence[Mapping], *, columns: Sequence[str] | None = None,
                   headers: Mapping[str, str] | None = None, digits: int = 1) -> str:
    """A GitHub-flavoured Markdown table: one row per record, floats with ``digits`` decimals.

    ``None`` and NaN print as an em dash (a value that does not exist, e.g. no paper number).
    """
    columns = list(columns if columns is not None else (records[0] if records else []))
    headers = dict(headers or {})
    head = [headers.get(c, c) for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if k == 0 else "---:" for k in range(len(columns))) + "|"]
    for r in records:
        lines.append("| " + " | ".join(_cell(r.get(c), digits) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_table(records: Sequence[Mapping], directory, *, stem: str = "table",
                columns: Sequence[str] | None = None, headers: Mapping[str, str] | None = None,
                digits: int = 1) -> list[Path]:
    """Write ``stem.md``, ``stem.csv`` and ``stem.json`` into ``directory``; returns the paths.

    The JSON file is the list of records as given (``None`` becomes ``null``); the CSV has one
    header row with the column keys and empty cells for ``None``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    columns = list(columns if columns is not None else (records[0] if records else []))
    md = directory / f"{stem}.md"
    md.write_text(markdown_table(records, columns=columns, headers=headers, digits=digits))
    path_csv = directory / f"{stem}.csv"
    with path_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows([{c: ("" if r.get(c) is None else r.get(c)) for c in columns} for r in records])
    path_json = directory / f"{stem}.json"
    path_json.write_text(json.dumps([dict(r) for r in records], indent=1, allow_nan=False))
    return [md, path_csv, path_json]


def _cell(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
