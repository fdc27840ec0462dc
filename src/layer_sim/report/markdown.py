"""A report :class:`~layer_sim.report.sections.Document` as Markdown, its figures as PNG files beside it.

The twin of :mod:`~layer_sim.report.html`: the same sections and blocks, for reading in a
repository browser or an editor. Figures go to ``figures/<section anchor>-<name>.png`` next to
the Markdown file and are linked relatively.
"""

from __future__ import annotations

from pathlib import Path

from layer_sim._io import atomic_write
from layer_sim.report.sections import Code, Document, Figure, Table, Text
from layer_sim.report.tables import markdown_table

__all__ = ["render_markdown", "write_markdown", "FIGURES_DIR"]

#: Directory of the figures, relative to the Markdown file.
FIGURES_DIR = "figures"


def _fence(text: str) -> str:
    fence = "```"
    while fence in text:  # a fence longer than any run of backticks inside
        fence += "`"
    return f"{fence}text\n{text}\n{fence}"


def render_markdown(doc: Document) -> tuple[str, dict[str, bytes]]:
    """The Markdown text and the figures it links, ``{relative path: PNG bytes}``."""
    lines = [f"# {doc.title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in doc.facts] + [""]
    lines += [f"- [{s.title}](#{s.anchor})" for s in doc.sections] + [""]
    figures: dict[str, bytes] = {}
    for s in doc.sections:
        lines += [f'<a id="{s.anchor}"></a>', "", f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, Text):
                lines += [b.text, ""]
            elif isinstance(b, Table):
                if b.caption:
                    lines += [f"**{b.caption}**", ""]
                records = [{k: _cell(r.get(k)) for k in b.keys} for r in b.records]
                lines += [markdown_table(records, columns=b.keys, headers=b.headers, digits=b.digits)]
            elif isinstance(b, Figure):
                rel = f"{FIGURES_DIR}/{s.anchor}-{b.name}.png"
                figures[rel] = b.png
                lines += [f"![{b.caption}]({rel})", "", f"*{b.caption}*", ""]
            elif isinstance(b, Code):
                lines += [_fence(b.text), ""]
            else:
                raise TypeError(f"render_markdown: unknown block {type(b).__name__}")
    return "\n".join(lines).rstrip() + "\n", figures


def _cell(v):
    # A "|" would end the cell early; escape it (numbers and None pass through for formatting).
    return v.replace("|", "\\|").replace("\n", " ") if isinstance(v, str) else v


def write_markdown(doc: Document, path) -> list[Path]:
    """Write the Markdown to ``path`` and its figures beside it, each atomically; returns every path."""
    path = Path(path)
    text, figures = render_markdown(doc)
    written = []
    for rel, png in figures.items():
        target = path.parent / rel
        atomic_write(target, lambda fh, png=png: fh.write(png))
        written.append(target)
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return [path, *written]
