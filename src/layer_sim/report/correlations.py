"""Views of the correlation study: Table I (ours beside the report's), the runs, and a heatmap of both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from layer_sim.experiments.correlations import COLUMNS, NAME, ROWS, WIDTHS, CorrelationResult
from layer_sim.report.figures import save_figure
from layer_sim.report.sections import ExperimentRecord, Table, Text, figure_block, section
from layer_sim.report.tables import markdown_table, write_table

__all__ = ["table_markdown", "heatmap_figure", "write_correlations"]

#: Columns of ``correlations.csv|json`` (one record per row × column of Table I).
TABLE_FIELDS = ("row_label", "col_label", "r", "ci_low", "ci_high", "p_value", "n", "n_boot", "report_r")


def _cells(result: CorrelationResult, fmt) -> list[dict]:
    by = {(t["row_label"], t["col_label"]): t for t in result.table}
    return [{"": row, **{col: fmt(by[(row, col)]) for col, _ in COLUMNS}} for row, _ in ROWS]


def table_markdown(result: CorrelationResult) -> str:
    """Three Markdown tables: our r with its 95 % bootstrap interval, the p-values, the report's r."""
    n = len(result.runs)
    ours = markdown_table(_cells(result, lambda t: f"{t['r']:+.3f} [{t['ci_low']:+.2f}, {t['ci_high']:+.2f}]"))
    pvals = markdown_table(_cells(result, lambda t: f"{t['p_value']:.2g}"))
    report = markdown_table(_cells(result, lambda t: f"{t['report_r']:+.3f}"))
    return (f"Pearson r over {n} runs, with 95 % percentile bootstrap intervals ({result.table[0]['n_boot']} "
            f"resamples):\n\n{ours}\nTwo-sided p-values (scipy.stats.pearsonr):\n\n{pvals}\n"
            f"Canatar & Pehlevan (2022), Table I, as the report quotes it:\n\n{report}")


def heatmap_figure(result: CorrelationResult) -> Figure:
    """Our r (with the interval in each cell) beside the report's Table I, both on the same colour scale."""
    rows, cols = [r for r, _ in ROWS], [c for c, _ in COLUMNS]
    by = {(t["row_label"], t["col_label"]): t for t in result.table}
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "r", f"ours ({len(result.runs)} runs)"), (axes[1], "report_r", "report's Table I")):
        values = np.array([[by[(r, c)][key] for c in cols] for r in rows])
        im = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_title(title, fontsize=10)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                t = by[(r, c)]
                text = f"{t[key]:.2f}" if key == "report_r" else f"{t['r']:.2f}\n[{t['ci_low']:.2f}, {t['ci_high']:.2f}]"
                ax.text(j, i, text, ha="center", va="center", fontsize=6,
                        color="white" if abs(t[key]) > 0.6 else "black")
    fig.colorbar(im, ax=axes, label="Pearson r", shrink=0.8)
    fig.suptitle("Correlations of hyperparameters and outcomes with outcomes (MNIST MLPs)", fontsize=10)
    return fig


def write_correlations(result: CorrelationResult, directory) -> list[Path]:
    """``table.md`` (:func:`table_markdown`), ``correlations.md|csv|json`` (one record per cell,
    :data:`TABLE_FIELDS`), ``runs.md|csv|json`` (one row per run) and ``heatmap.png``; returns the paths."""
    from layer_sim._io import atomic_write

    out = Path(directory)
    written = write_table(list(result.table), out, stem="correlations", columns=list(TABLE_FIELDS), digits=3)
    text = table_markdown(result)
    atomic_write(out / "table.md", lambda fh: fh.write(text.encode()))
    written.append(out / "table.md")
    rows = result.run_rows()
    first = ["skip", "shift", "batch_size", "lr", "momentum", "seed", "loss", "test_accuracy", "cka_test", "cka_train",
             "avg_cka_test", "avg_cka_train"]  # fmt: skip
    columns = first + sorted({k for r in rows for k in r} - set(first))
    written += write_table(rows, out, stem="runs", columns=columns, digits=4)
    written.append(save_figure(heatmap_figure(result), out / "heatmap.png", dpi=120))
    return written


@section(NAME, title="Correlations of hyperparameters and outcomes with alignment (Canatar & Pehlevan 2022, Table I)")
def _report_section(result: CorrelationResult, record: ExperimentRecord):
    run = result.runs[0][0]
    n_boot = result.table[0]["n_boot"]
    return [
        Text(f"{len(result.runs)} MLPs {list(WIDTHS)} trained on MNIST ({run.epochs} epochs"
             f"{'' if run.limit_train is None else f' on the first {run.limit_train:,} training images'}) over the "
             "factorial design of skip connections, augmentation, batch size, learning rate and momentum; CKA(Train) "
             f"and CKA(Test) of every layer with the one-hot targets on {run.probe_size:,} images. Pearson r, 95 % "
             f"percentile bootstrap intervals ({n_boot} resamples) and two-sided p-values (scipy.stats.pearsonr)."),
        Table(_cells(result, lambda t: f"{t['r']:+.3f} [{t['ci_low']:+.2f}, {t['ci_high']:+.2f}]"),
              caption="Pearson r [95 % bootstrap interval]"),
        Table(_cells(result, lambda t: f"{t['p_value']:.2g}"), caption="p-values"),
        Table(_cells(result, lambda t: f"{t['report_r']:+.3f}"), caption="Canatar & Pehlevan's Table I as the report quotes it"),
        figure_block(heatmap_figure(result), name="heatmap", dpi=70, caption="Ours beside the report's Table I"),
    ]
