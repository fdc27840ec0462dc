"""A :class:`~layer_sim.analysis.SimilarityMatrix` as a file: CSV or JSON, written atomically, read back checked.

CSV: a header row ``<title>,<col 1>,...`` (the top-left cell holds the measure with its
parameters, e.g. ``rbf_cka(sigma=0.4)``), then one row per row layer. JSON: an object
``{"measure", "params", "rows", "cols", "row_label", "col_label", "values"}``. Both keep float64
values exactly (shortest round-trip representation).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from layer_sim._io import atomic_write, loads_json
from layer_sim._options import strict_signature
from layer_sim.analysis.comparison import SimilarityMatrix
from layer_sim.errors import DataError, InputError, UnknownNameError

__all__ = ["save_matrix", "load_matrix"]

_SUFFIXES = (".csv", ".json")


@strict_signature
def save_matrix(matrix: SimilarityMatrix, path) -> Path:
    """Write ``matrix`` to ``path`` (``.csv`` or ``.json``, by suffix), atomically; returns the path.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> m = SimilarityMatrix(np.array([[1.0, 0.5]]), ("a1",), ("b1", "b2"), "linear_cka")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     back = load_matrix(save_matrix(m, Path(d) / "m.json"))
    >>> back.values.tolist(), back.cols, back.measure
    ([[1.0, 0.5]], ('b1', 'b2'), 'linear_cka')
    """
    if not isinstance(matrix, SimilarityMatrix):
        raise InputError(f"save_matrix: matrix must be a SimilarityMatrix, got {type(matrix).__name__}")
    path = Path(path)
    suffix = _suffix(path, "save_matrix")
    if not np.all(np.isfinite(matrix.values)):
        raise InputError(f"save_matrix: the values of {matrix.title} contain NaN or Inf; they cannot be saved")
    if suffix == ".csv":
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([matrix.title, *matrix.cols])
        writer.writerows([[r, *map(repr, map(float, row))] for r, row in zip(matrix.rows, matrix.values)])
        text = buf.getvalue()
    else:
        text = json.dumps(
            {
                "measure": matrix.measure,
                "params": dict(matrix.params),
                "rows": list(matrix.rows),
                "cols": list(matrix.cols),
                "row_label": matrix.row_label,
                "col_label": matrix.col_label,
                "values": matrix.values.tolist(),
            },
            indent=1,
            allow_nan=False,
        )
    atomic_write(path, lambda fh: fh.write(text.encode()))
    return path


@strict_signature
def load_matrix(path) -> SimilarityMatrix:
    """Read a matrix written by :func:`save_matrix`; CSV keeps the title as ``measure``, no params.

    Raises
    ------
    DataError
        The file is not a similarity matrix (not valid CSV/JSON, missing fields, rows of
        different lengths, non-numeric or non-finite values); the message names the file.
    UnknownNameError
        A suffix other than ``.csv`` or ``.json``.
    OSError
        The file cannot be read (missing, permission denied).
    """
    path = Path(path)
    suffix = _suffix(path, "load_matrix")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"load_matrix: {path} is not a text file ({exc.reason})") from None
    try:
        return _parse_csv(text) if suffix == ".csv" else _parse_json(text)
    except _Damaged as exc:
        raise DataError(f"load_matrix: {path} is not a similarity matrix: {exc}") from None
    except InputError as exc:  # what SimilarityMatrix itself refuses (e.g. a row name twice)
        raise DataError(f"load_matrix: {path} is not a similarity matrix: {str(exc).removeprefix('SimilarityMatrix: ')}") from None


class _Damaged(Exception):
    """What is wrong with a file's content (turned into a DataError naming the file)."""


def _parse_csv(text: str) -> SimilarityMatrix:
    lines = list(csv.reader(io.StringIO(text)))
    if not lines or not lines[0]:
        raise _Damaged("it is empty")
    title, *cols = lines[0]
    if not cols:
        raise _Damaged("the header row has no column names")
    rows, values = [], []
    for k, line in enumerate(lines[1:], start=2):
        if len(line) != len(cols) + 1:
            raise _Damaged(f"line {k} has {len(line)} cells, the header {len(cols) + 1}")
        rows.append(line[0])
        values.append([_number(v, f"line {k}") for v in line[1:]])
    if not rows:
        raise _Damaged("it has no rows")
    return SimilarityMatrix(np.array(values, dtype=np.float64), rows, cols, title)


def _parse_json(text: str) -> SimilarityMatrix:
    try:
        d = loads_json(text)
    except json.JSONDecodeError as exc:
        raise _Damaged(f"invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(d, dict):
        raise _Damaged(f"the JSON is a {type(d).__name__}, not an object")
    missing = [k for k in ("measure", "rows", "cols", "values") if k not in d]
    if missing:
        raise _Damaged(f"no {', '.join(missing)}")
    rows, cols, values = d["rows"], d["cols"], d["values"]
    for key, names in (("rows", rows), ("cols", cols)):
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise _Damaged(f'"{key}" must be a non-empty list of layer names')
    if not isinstance(values, list) or len(values) != len(rows) or not all(
        isinstance(r, list) and len(r) == len(cols) for r in values
    ):
        raise _Damaged(f'"values" must be {len(rows)} lists of {len(cols)} numbers (one per row and column)')
    values = [[_number(v, f"row {rows[i]!r}") for v in r] for i, r in enumerate(values)]
    params = d.get("params", {})
    if not isinstance(params, dict):
        raise _Damaged('"params" must be an object')
    labels = [d.get(k, "a" if k == "row_label" else "b") for k in ("row_label", "col_label")]
    if not isinstance(d["measure"], str) or not all(isinstance(s, str) for s in labels):
        raise _Damaged('"measure", "row_label" and "col_label" must be strings')
    return SimilarityMatrix(np.array(values, dtype=np.float64), rows, cols, d["measure"], params, *labels)


def _number(value, where: str) -> float:
    if isinstance(value, bool):
        raise _Damaged(f"{where}: {value!r} is not a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _Damaged(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise _Damaged(f"{where}: {value!r} is not a finite number")
    return x


def _suffix(path: Path, fn: str) -> str:
    if path.suffix not in _SUFFIXES:
        raise UnknownNameError(f"{fn}: unknown suffix {path.suffix!r} of {path}; use .csv or .json")
    return path.suffix
