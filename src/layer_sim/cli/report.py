"""``layer-sim report``: one self-contained HTML page and its Markdown twin of everything a results store holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from layer_sim.cli._shared import PATH, output_option, writable_dir

__all__ = ["EXAMPLE", "SUMMARY", "report_command"]

SUMMARY = "HTML page and Markdown twin of everything a results store holds."
EXAMPLE = "Example: layer-sim report --store results/sanity/results.sqlite --output results/report"


def report_command(
    store: Annotated[Path, typer.Option("--store", help="Results store file (SQLite) to report on.", **PATH)],
    output: Annotated[Path, output_option("Directory for report.html (self-contained), report.md and figures/.")],
) -> None:
    """Write OUTPUT/report.html, one self-contained page (figures embedded, no network needed), and OUTPUT/report.md with its figures in OUTPUT/figures/.

    One section per experiment recorded in the store (its tables and figures, the exact commands, seeds and library versions that produced them) and one per unit kind outside any experiment. Reads the store only, and works while a sweep is writing it (unfinished experiments are reported as such).
    """
    writable_dir(output)
    from layer_sim.report.html import write_html
    from layer_sim.report.markdown import write_markdown
    from layer_sim.report.sections import build_report
    from layer_sim.store import Store

    with Store(store) as s:
        doc = build_report(s)
    page = write_html(doc, output / "report.html")
    md = write_markdown(doc, output / "report.md")
    typer.echo(f"wrote {page} ({len(doc.sections)} sections) and {md[0]} with {len(md) - 1} figures")
