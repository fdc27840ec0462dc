"""``layer-sim runs list|show|export``: inspect and export a results store.

(The sweep options of the experiment commands, ``--store``, ``--workers``, ``--backend`` and
``--ray-address``, live with the other shared options in :mod:`layer_sim.cli._shared`.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from layer_sim.cli._shared import PATH
from layer_sim.store import STATUSES, Store

__all__ = ["runs_app"]

# ---------------------------------------------------------------------------- layer-sim runs

LIST_EXAMPLE = "Example: layer-sim runs list --store results/sanity/results.sqlite"
SHOW_EXAMPLE = "Example: layer-sim runs show 3fa2 --store results/sanity/results.sqlite"
EXPORT_EXAMPLE = "Example: layer-sim runs export --store results/sanity/results.sqlite --output export"

runs_app = typer.Typer(name="runs", help="Inspect and export a results store: list, show, export.",
                       no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       epilog=LIST_EXAMPLE)

#: Leading hex digits of a key shown by ``runs list`` (``runs show`` takes any unambiguous prefix).
KEY_SHOWN = 12

_StoreArg = Annotated[Path, typer.Option("--store", help="Results store file (SQLite).", **PATH)]


@runs_app.callback()
def _runs() -> None:
    """Inspect and export a results store: list, show, export."""


@runs_app.command("list", epilog=LIST_EXAMPLE)
def list_cmd(
    store: _StoreArg,
    kind: Annotated[Optional[str], typer.Option("--kind", help="Only runs of this unit kind.")] = None,
    status: Annotated[Optional[str], typer.Option("--status", help=f"Only runs with this status: {', '.join(STATUSES)}.")] = None,
    format: Annotated[Literal["table", "json"], typer.Option("--format", help="table for reading, json for programs.")] = "table",
) -> None:
    """List the runs of a store: key, kind, spec, status, attempts, seconds and metrics (or error).

    Reading never modifies the store, and works while a sweep is writing it.
    """
    with Store(store) as s, s.snapshot():
        runs = s.runs(kind=kind, status=status)
        metrics = s.metrics(kind=kind, status=None)
    per_run: dict[str, dict[str, float]] = {}
    for key, name, value in zip(metrics["key"], metrics["name"], metrics["value"]):
        per_run.setdefault(key, {})[name] = float(value)
    if format == "json":
        records = []
        for rec in runs.to_dict("records"):
            rec = {k: (None if _missing(v) else v) for k, v in rec.items()}  # pandas' NaN for SQL NULL -> null
            rec["spec"] = json.loads(rec["spec"])
            rec["metrics"] = per_run.get(rec["key"], {})
            records.append(rec)
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False, allow_nan=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(runs)} runs in {store}")
    for col in ("key", "kind", "spec", "status", "attempts", "seconds", "metrics / error"):
        table.add_column(col, justify="right" if col in ("attempts", "seconds") else "left",
                         no_wrap=col == "key", max_width=48 if col == "spec" else None)
    for rec in runs.to_dict("records"):
        m = per_run.get(rec["key"], {})
        detail = ", ".join(f"{k}={v:.4g}" for k, v in list(m.items())[:4]) + (", …" if len(m) > 4 else "")
        if not m and not _missing(rec["error"]):
            detail = rec["error"]
        seconds = rec["seconds"]
        table.add_row(rec["key"][:KEY_SHOWN], rec["kind"], rec["spec"], rec["status"], str(rec["attempts"]),
                      "" if _missing(seconds) else f"{seconds:.2f}", detail)
    console = Console()
    if not console.is_terminal:  # a file or a pipe: no terminal width to fit, so cut nothing
        console = Console(width=200)
    console.print(table)


def _missing(value) -> bool:
    """SQL NULL as pandas returns it (None, or NaN in a float column)."""
    return value is None or (isinstance(value, float) and value != value)


@runs_app.command("show", epilog=SHOW_EXAMPLE)
def show_cmd(
    key: Annotated[str, typer.Argument(help="Run key, or any unambiguous prefix of one.")],
    store: _StoreArg,
    format: Annotated[Literal["text", "json"], typer.Option("--format", help="text for reading, json for programs.")] = "text",
) -> None:
    """Show one run: spec, status, attempts, timings, versions, metrics, histories, artefacts, error.
    """
    with Store(store) as s:
        run = s.run(key)
    if format == "json":
        typer.echo(json.dumps(run.to_json(), indent=2, ensure_ascii=False, allow_nan=False))
        return
    lines = [f"key       {run.key}", f"kind      {run.kind}",
             f"status    {run.status} ({run.attempts} attempt{'s' if run.attempts != 1 else ''})",
             f"spec      {json.dumps(run.spec, sort_keys=True, ensure_ascii=False)}"]
    if run.worker:
        lines.append(f"worker    {run.worker}")
    if run.started:
        lines.append(f"started   {run.started}")
    if run.finished:
        lines.append(f"finished  {run.finished}" + (f" ({run.seconds:.3f} s)" if run.seconds is not None else ""))
    if any(run.versions.values()):
        lines.append("versions  " + ", ".join(f"{k.removesuffix('_version')} {v}" for k, v in run.versions.items() if v))
    for title, items in (("metrics", {k: f"{v:.6g}" for k, v in run.metrics.items()}),
                         ("histories", {k: f"{n} rows" for k, n in run.histories.items()}),
                         ("artefacts", {k: str(p) for k, p in run.artefacts.items()})):
        if items:
            width = max(map(len, items))
            lines.append(title)
            lines.extend(f"  {k:<{width}}  {v}" for k, v in items.items())
    if run.error:
        lines.append(f"error     {run.error}")
    if run.traceback:
        lines.append("traceback\n" + run.traceback.rstrip())
    typer.echo("\n".join(lines))


@runs_app.command("export", epilog=EXPORT_EXAMPLE)
def export_cmd(
    store: _StoreArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for runs, metrics, histories, artefacts and meta files.", **PATH)],
    format: Annotated[Literal["csv", "parquet"], typer.Option("--format", help="csv, or parquet (needs pyarrow).")] = "csv",
) -> None:
    """Export every table of a store as CSV or Parquet files (histories expanded to one column per field).
    """
    from layer_sim.store.export import export_store

    for path in export_store(store, output, format=format):
        typer.echo(f"wrote {path}")
