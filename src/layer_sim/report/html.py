"""A report :class:`~layer_sim.report.sections.Document` as one self-contained HTML page.

Self-contained: the styles are inline and every figure is a ``data:image/png;base64,...`` URI, so
the single file can be mailed, archived or opened offline; the page needs no script and loads
nothing from anywhere. Every text is escaped.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from layer_sim._io import atomic_write
from layer_sim.report.sections import Code, Document, Figure, Table, Text
from layer_sim.report.tables import format_cell

__all__ = ["render_html", "write_html"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1d1d1f; background: #ffffff; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.3rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem;
     border-bottom: 1px solid #d0d0d7; padding-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #d0d0d7; padding: 0.2rem 0.5rem; vertical-align: top; }
th { background: #f0f0f5; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.2rem; }
pre { background: #f6f6f9; border: 1px solid #e0e0e7; padding: 0.5rem 0.7rem; overflow-x: auto; font-size: 0.85rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #e0e0e7; }
figcaption { font-size: 0.9rem; color: #4a4a55; } dl.facts { display: grid; grid-template-columns: max-content auto;
     gap: 0.1rem 1rem; font-size: 0.9rem; } dl.facts dt { font-weight: 600; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _table(t: Table) -> str:
    keys = t.keys
    head = "".join(f"<th>{_e(t.headers.get(k, k))}</th>" for k in keys)
    rows = []
    for r in t.records:
        cells = []
        for k in keys:
            v = r.get(k)
            numeric = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            cells.append(f'<td class="num">{_e(format_cell(v, t.digits))}</td>' if numeric
                         else f"<td>{_e(format_cell(v, t.digits))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{_e(t.caption)}</caption>" if t.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure(f: Figure) -> str:
    uri = "data:image/png;base64," + base64.b64encode(f.png).decode("ascii")
    return f'<figure><img src="{uri}" alt="{_e(f.caption)}"><figcaption>{_e(f.caption)}</figcaption></figure>'


def _block(b) -> str:
    if isinstance(b, Text):
        return f"<p>{_e(b.text)}</p>"
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        return _figure(b)
    if isinstance(b, Code):
        return f"<pre><code>{_e(b.text)}</code></pre>"
    raise TypeError(f"render_html: unknown block {type(b).__name__}")


def render_html(doc: Document) -> str:
    """The page as text: title, facts, a table of contents, then every section."""
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in doc.facts)
    toc = "".join(f'<li><a href="#{_e(s.anchor)}">{_e(s.title)}</a></li>' for s in doc.sections)
    body = "".join(f'<section id="{_e(s.anchor)}"><h2>{_e(s.title)}</h2>{"".join(map(_block, s.blocks))}</section>'
                   for s in doc.sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(doc.title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{_e(doc.title)}</h1><dl class=\"facts\">{facts}</dl><nav><ul>{toc}</ul></nav>{body}"
            "</body></html>\n")


def write_html(doc: Document, path) -> Path:
    """Write :func:`render_html` to ``path`` atomically; returns the path."""
    path = Path(path)
    text = render_html(doc)
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return path
