"""Tables of results as Markdown, CSV and JSON (the same records in every format)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from layer_sim._io import atomic_write
from layer_sim._options import strict_signature

__all__ = ["markdown_table", "write_table", "format_cell"]


@strict_signature
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
        lines.append("| " + " | ".join(format_cell(r.get(c), digits) for c in columns) + " |")
    return "\n".join(lines) + "\n"


@strict_signature
def write_table(records: Sequence[Mapping], directory, *, stem: str = "table",
                columns: Sequence[str] | None = None, headers: Mapping[str, str] | None = None,
                digits: int = 1) -> list[Path]:
    """Write ``stem.md``, ``stem.csv`` and ``stem.json`` into ``directory``; returns the paths.

    The JSON file is the list of records as given (``None``, NaN and infinities become ``null``); the CSV has one
    header row with the column keys and empty cells for ``None``.
    """
    directory = Path(directory)
    columns = list(columns if columns is not None else (records[0] if records else []))
    table_csv = io.StringIO(newline="")
    writer = csv.DictWriter(table_csv, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{c: ("" if r.get(c) is None else r.get(c)) for c in columns} for r in records])
    texts = {
        directory / f"{stem}.md": markdown_table(records, columns=columns, headers=headers, digits=digits),
        directory / f"{stem}.csv": table_csv.getvalue(),
        # NaN/Inf (e.g. an accuracy that does not exist) are null: strict JSON, readable anywhere.
        directory / f"{stem}.json": json.dumps([{k: _json_value(v) for k, v in r.items()} for r in records],
                                               indent=1, allow_nan=False),
    }
    for path, text in texts.items():
        atomic_write(path, lambda fh, text=text: fh.write(text.encode()))
    return list(texts)


@strict_signature
def format_cell(value, digits: int) -> str:
    """A table cell as text: floats with ``digits`` decimals, None and NaN as an em dash.

    Examples
    --------
    >>> format_cell(98.75, 1), format_cell(None, 1), format_cell(3, 1)
    ('98.8', '—', '3')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _json_value(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value
