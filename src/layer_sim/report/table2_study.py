"""The Table 2 study's views: its tables, its figures, and its section of ``layer-sim report``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from layer_sim.experiments.table2_study import NAME, Cell, Table2StudyResult
from layer_sim.report.figures import per_layer_accuracy_figure, save_figure
from layer_sim.report.sections import ExperimentRecord, Table, Text, figure_block, section
from layer_sim.report.tables import write_table

__all__ = ["widths_records", "examples_records", "cnn_records", "shape_records", "per_layer_records",
           "examples_figure", "cnn_figure", "write_table2_study"]

_LAYOUT_LABEL = {"flatten": "flatten", "channels": "channels", "spatial_mean": "spatial mean"}


def _acc(cell: Cell | None) -> float | None:
    return None if cell is None else 100 * cell.identification.accuracy


def _se(cell: Cell | None) -> float | None:
    if cell is None or cell.identification.stderr is None:
        return None
    return 100 * cell.identification.stderr


def _index(cells: Sequence[Cell]) -> dict[tuple, Cell]:
    return {(c.family, c.row.label, c.layout, c.examples): c for c in cells}


def widths_records(result: Table2StudyResult) -> list[dict]:
    """Per index: accuracy and jackknife SE (%) of every MLP family on the sanity check's probe, and the paper's value."""
    cells = result.part("widths")
    families = list(dict.fromkeys(c.family for c in cells))
    got = {(c.family, c.row.label): c for c in cells}
    out = []
    for row in result.spec.rows:
        rec: dict = {"index": row.label}
        for f in families:
            rec[f] = _acc(got.get((f, row.label)))
            rec[f"{f} SE"] = _se(got.get((f, row.label)))
        rec["paper"] = row.paper
        out.append(rec)
    return out


def examples_records(result: Table2StudyResult) -> list[dict]:
    """The examples part in long form: family, index, requested n/p, n, actual n/p, accuracy, SE, chance (%), capped."""
    return [{"family": c.family, "index": c.row.label, "ratio": c.ratio, "examples": c.examples, "widest": c.widest,
             "n_over_p": c.examples / c.widest, "accuracy": _acc(c), "stderr": _se(c), "chance": 100 * c.chance,
             "capped": c.examples < math.ceil(c.ratio * c.widest - 1e-9)}
            for c in result.part("examples")]


def cnn_records(result: Table2StudyResult) -> list[dict]:
    """Per index: accuracy (%) of every CNN in every layout (``<cnn> <layout>`` and its SE); None where not computed."""
    cells = result.part("cnn")
    combos = list(dict.fromkeys((c.family, c.layout) for c in cells))
    combos += [(s["family"], s["layout"]) for s in result.not_computed
               if s["part"] == "cnn" and (s["family"], s["layout"]) not in combos]
    got = {(c.family, c.layout, c.row.label): c for c in cells}
    out = []
    for row in result.spec.rows:
        rec: dict = {"index": row.label}
        for fam, layout in combos:
            cell = got.get((fam, layout, row.label))
            rec[f"{fam} {_LAYOUT_LABEL[layout]}"] = _acc(cell)
            rec[f"{fam} {_LAYOUT_LABEL[layout]} SE"] = _se(cell)
        rec["paper"] = row.paper
        out.append(rec)
    return out


def shape_records(result: Table2StudyResult) -> list[dict]:
    """What each CNN layout hands the indexes: rows, features per layer, rows / widest and the share of forced canonical correlations."""
    seen, out = set(), []
    for c in result.part("cnn"):
        if (c.family, c.layout) in seen:
            continue
        seen.add((c.family, c.layout))
        out.append({"family": c.family, "layout": c.layout, "examples": c.examples, "rows": c.rows,
                    "features": ", ".join(f"{k} {v}" for k, v in c.features.items()), "widest": c.widest,
                    "rows_per_feature": c.rows / c.widest, "forced_share": c.forced, "chance": 100 * c.chance})
    return out


def per_layer_records(result: Table2StudyResult, part: str) -> list[dict]:
    """Per cell of ``part``: family, layout, n, index, then each layer's accuracy (%) and the layer it is most often matched to."""
    out = []
    for c in result.part(part):
        ident = c.identification
        rec = {"family": c.family, "layout": c.layout, "examples": c.examples, "index": c.row.label}
        for i, layer in enumerate(ident.layers):
            rec[layer] = 100 * ident.per_layer[layer]
            rec[f"{layer} →"] = ident.layers[int(np.argmax(ident.confusion[i]))]
        out.append(rec)
    return out


# ----------------------------------------------------------------------------- figures


def examples_figure(result: Table2StudyResult, *, ncols: int = 4) -> Figure:
    """One panel per index: accuracy against n/p (log axis), one line per family, band = ± one jackknife SE.

    Dashed grey: chance (one over the number of layers); dotted: the paper's Tiny-10 value.
    """
    cells = result.part("examples")
    rows = list(result.spec.rows)
    ncols = max(1, min(ncols, len(rows)))
    nrows = math.ceil(len(rows) / ncols)
    fig = Figure(figsize=(3.0 * ncols, 2.5 * nrows + 0.6), layout="constrained")
    families = list(dict.fromkeys(c.family for c in cells))
    colours = dict(zip(families, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for k, row in enumerate(rows):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for fam in families:
            mine = sorted((c for c in cells if c.family == fam and c.row.label == row.label), key=lambda c: c.examples)
            if not mine:
                continue
            x = [c.examples / c.widest for c in mine]
            y = np.array([_acc(c) for c in mine])
            se = np.array([_se(c) or 0.0 for c in mine])
            ax.plot(x, y, "o-", ms=3, color=colours[fam], label=f"{fam} (p = {mine[0].widest})")
            ax.fill_between(x, y - se, y + se, color=colours[fam], alpha=0.2, lw=0)
            ax.axhline(100 * mine[0].chance, color=colours[fam], ls="--", lw=0.8, alpha=0.6)
        if row.paper is not None:
            ax.axhline(row.paper, color="k", ls=":", lw=1)
        ax.set_xscale("log")
        # A panel spanning less than a decade (RBF CKA stops at 2,048 rows) would otherwise label
        # its minor ticks, at the default font size, on top of each other.
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-3, 103)
        ax.set_title(row.label, fontsize=9)
        ax.set_xlabel("n / p (p: widest layer)", fontsize=7)
        ax.set_ylabel("accuracy (%)", fontsize=7)
        ax.tick_params(labelsize=7)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=max(1, len(labels)), fontsize=8)
    fig.suptitle(f"Layer identification against examples per feature, {result.spec.nets} MLPs per family "
                 "(band: ± jackknife SE; dashed: chance; dotted: Kornblith et al.'s Tiny-10)", fontsize=9)
    return fig


def cnn_figure(result: Table2StudyResult) -> Figure:
    """Grouped bars: accuracy (%) per index for every CNN and layout, with ± jackknife SE."""
    cells = result.part("cnn")
    combos = list(dict.fromkeys((c.family, c.layout) for c in cells))
    rows = list(result.spec.rows)
    got = {(c.family, c.layout, c.row.label): c for c in cells}
    fig = Figure(figsize=(max(7.0, 0.75 * len(rows) * max(1, len(combos)) / 3 + 3), 3.6), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(combos))
    cmap = {"flatten": "Blues", "channels": "Oranges", "spatial_mean": "Greens"}
    fams = list(dict.fromkeys(f for f, _ in combos))
    for k, (fam, layout) in enumerate(combos):
        import matplotlib

        shade = matplotlib.colormaps[cmap[layout]](0.45 + 0.4 * fams.index(fam) / max(1, len(fams) - 1))
        x = np.arange(len(rows)) + (k - (len(combos) - 1) / 2) * width
        acc = [_acc(got.get((fam, layout, r.label))) for r in rows]
        se = [_se(got.get((fam, layout, r.label))) or 0.0 for r in rows]
        ax.bar(x, [np.nan if a is None else a for a in acc], width, yerr=se, color=shade,
               label=f"{fam}, {_LAYOUT_LABEL[layout]}", error_kw={"lw": 0.6})
    ax.set_xticks(np.arange(len(rows)), [r.label for r in rows], rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncols=2)
    ax.set_title(f"CNN conv layers, {result.spec.examples} MNIST test images: layer identification per layout "
                 "(missing bar: not computed)", fontsize=9)
    return fig


def _per_layer_figure(result: Table2StudyResult, family: str, layout: str = "flatten"):
    cells = [c for c in result.cells if c.family == family and c.layout == layout
             and c.part in ("widths", "cnn")]
    return per_layer_accuracy_figure([c.identification for c in cells], labels=[c.row.label for c in cells])


# ----------------------------------------------------------------------------- files


def write_table2_study(result: Table2StudyResult, directory) -> list[Path]:
    """Write the study's tables and figures under ``directory``; returns their paths.

    ``families.*`` (networks and test accuracy), ``widths.*`` (accuracy ± SE per index and MLP
    family), ``widths_per_layer.*``, ``examples.*`` (long form, one row per family, index and
    n), ``accuracy_vs_examples.png``, ``cnn.*`` (accuracy ± SE per index, CNN and layout),
    ``cnn_shapes.*`` (rows, features, forced correlations per layout), ``cnn_per_layer.*``,
    ``cnn_layouts.png``, ``cells.csv|json`` (every cell), ``not_computed.*``; ``.md``, ``.csv``
    and ``.json`` for each table. Every file is written atomically.
    """
    out = Path(directory)
    written = write_table([f.record() for f in result.families], out, stem="families", digits=2)
    if result.part("widths"):
        written += write_table(widths_records(result), out, stem="widths")
        written += write_table(per_layer_records(result, "widths"), out, stem="widths_per_layer")
    if result.part("examples"):
        written += write_table(examples_records(result), out, stem="examples", digits=2)
        written.append(save_figure(examples_figure(result), out / "accuracy_vs_examples.png", dpi=100))
    if result.part("cnn"):
        written += write_table(cnn_records(result), out, stem="cnn")
        written += write_table(shape_records(result), out, stem="cnn_shapes", digits=3)
        written += write_table(per_layer_records(result, "cnn"), out, stem="cnn_per_layer")
        written.append(save_figure(cnn_figure(result), out / "cnn_layouts.png", dpi=100))
    written += [p for p in write_table(result.records(), out, stem="cells", digits=3) if p.suffix != ".md"]
    written += write_table(list(result.not_computed) or [{"part": None, "reason": "every planned cell was computed"}],
                           out, stem="not_computed")
    return written


@section(NAME, title="Why our Table 2 differs from Kornblith et al.'s: widths, examples per feature, CNN layouts")
def _report_section(result: Table2StudyResult, record: ExperimentRecord):
    spec = result.spec
    blocks = [
        Text(f"Layer identification (Kornblith et al. 2019, Table 2 protocol; logits excluded; jackknife SE over "
             f"{spec.nets} networks per family) for every index, varying one factor at a time."),
        Table([f.record() for f in result.families], caption="Networks (test accuracy, %)", digits=2),
    ]
    if result.part("widths"):
        blocks.append(Table(widths_records(result), caption=f"Widths: accuracy (%) on {spec.examples} MNIST test images "
                                                           "per MLP family (equal / unequal / random widths)"))
    if result.part("examples"):
        blocks.append(figure_block(examples_figure(result), name="accuracy-vs-examples", dpi=70,
                                   caption="Accuracy against n/p per index (band: ± jackknife SE)"))
    if result.part("cnn"):
        blocks.append(Table(cnn_records(result), caption="CNN conv layers: accuracy (%) per layout"))
        blocks.append(Table(shape_records(result), digits=3,
                            caption="What each layout hands the indexes (forced_share: share of canonical correlations "
                                    "that the shapes force to 1)"))
        blocks.append(figure_block(cnn_figure(result), name="cnn-layouts", dpi=70,
                                   caption="CNN conv layers: accuracy per index and layout"))
    if result.not_computed:
        blocks.append(Table(list(result.not_computed), caption="Cells not computed", digits=0))
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    blocks.append(Text(f"Work recorded by the units (seconds, summed): {secs}."))
    return blocks
