"""The gradient study's views: its output files and its section of the report (the identification table,
side-by-side heatmaps, the through-training curves)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from layer_sim.experiments.gradient_study import NAME, GradientStudyResult
from layer_sim.report.figures import grid_figure, per_layer_accuracy_figure, save_figure
from layer_sim.report.files import save_matrix
from layer_sim.report.sections import ExperimentRecord, Table, Text, figure_block, section
from layer_sim.report.tables import write_table

__all__ = ["TABLE_HEADERS", "curves_figure", "write_gradient_study"]

#: Column titles of ``table.md``, by record key.
TABLE_HEADERS = {"index": "Index", "objective": "Objective", "accuracy": "Accuracy (%)", "stderr": "Jackknife SE"}

_COLOURS = {"CKA (linear)": "black", "gradient CKA (loss)": "tab:red", "gradient CKA (Tang)": "tab:blue"}


def curves_figure(result: GradientStudyResult) -> Figure:
    """Rows: similarity to the same layer at the end of training / to another seed; columns: layers.

    Lines are the mean over seeds (or seed pairs), bands one standard error.
    """
    summary = result.curve_summary()
    layers = list(result.layers)
    fig = Figure(figsize=(3.0 * len(layers), 5.6), layout="constrained")
    titles = {"final": "vs same layer, end of training", "seeds": "vs same layer, other seed"}
    for r, comparison in enumerate(("final", "seeds")):
        for c, layer in enumerate(layers):
            ax = fig.add_subplot(2, len(layers), r * len(layers) + c + 1)
            for index, colour in _COLOURS.items():
                d = summary[(summary["index"] == index) & (summary.comparison == comparison) & (summary.layer == layer)]
                if d.empty:
                    continue
                ax.plot(d.epoch, d["mean"], color=colour, label=index, marker=".", lw=1.2)
                ax.fill_between(d.epoch, d["mean"] - d.se, d["mean"] + d.se, color=colour, alpha=0.2, lw=0)
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{layer}: {titles[comparison]}", fontsize=8)
            ax.set_xlabel("epoch", fontsize=8)
            if c == 0:
                ax.set_ylabel("similarity", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.axes[0].legend(fontsize=7, loc="lower right")
    n_final = summary[summary.comparison == "final"]["count"].max()
    n_pairs = summary[summary.comparison == "seeds"]["count"].max()
    fig.suptitle(f"Similarity through training (mean ± SE over {n_final} seeds / {n_pairs} seed pairs)", fontsize=10)
    return fig


def _grid(result: GradientStudyResult) -> Figure:
    return grid_figure(result.matrices(0, 1), titles=[r.index.label for r in result.rows], ncols=4,
                       suptitle="Network 0 (rows) against network 1 (columns), every hidden layer")


def _per_layer(result: GradientStudyResult) -> Figure:
    return per_layer_accuracy_figure([r.identification for r in result.rows], labels=[r.index.label for r in result.rows])


def _per_layer_records(result: GradientStudyResult) -> list[dict]:
    return [{"index": r.index.label, **{k: round(100 * v, 2) for k, v in r.identification.per_layer.items()}}
            for r in result.rows]  # fmt: skip


def write_gradient_study(result: GradientStudyResult, directory) -> list[Path]:
    """Write ``table.md|csv|json``, ``per_layer.md|csv|json``, ``heatmaps/grid.png`` (networks 0 vs 1,
    every index side by side), ``heatmaps/<index>.csv``, ``heatmaps/per_layer_accuracy.png``,
    ``curves.png`` and ``curves.csv`` under ``directory``; returns the paths."""
    out = Path(directory)
    written = write_table(result.records(), out, columns=list(TABLE_HEADERS), headers=TABLE_HEADERS)
    written += write_table(_per_layer_records(result), out, stem="per_layer", columns=["index", *result.layers])
    for row, mat in zip(result.rows, result.matrices(0, 1)):
        written.append(save_matrix(mat, out / "heatmaps" / f"{row.index.slug}.csv"))
    written.append(save_figure(_grid(result), out / "heatmaps" / "grid.png", dpi=90))
    written.append(save_figure(_per_layer(result), out / "heatmaps" / "per_layer_accuracy.png", dpi=110))
    written.append(save_figure(curves_figure(result), out / "curves.png", dpi=100))
    curves_csv = out / "curves.csv"
    summary = result.curve_summary()
    summary.assign(mean=np.round(summary["mean"], 6), se=np.round(summary["se"], 6)).to_csv(curves_csv, index=False)
    written.append(curves_csv)
    return written


@section(NAME, title="Gradient CKA vs vanilla CKA (Tang et al. 2020): layer identification and training")
def _report_section(result: GradientStudyResult, record: ExperimentRecord):
    spec = result.spec
    accs = [100 * a for a in result.test_accuracies]
    seeds = ", ".join(map(str, spec.trajectory_seeds))
    trained = ", ".join(f"{100 * result.trajectory_accuracy[s]:.2f}%" for s in spec.trajectory_seeds)
    return [
        Text(f"{spec.nets} MLPs {list(spec.network.model.widths)} trained from seeds 0-{spec.nets - 1} as in the "
             f"sanity check (test accuracy: mean {sum(accs) / len(accs):.2f}%, min {min(accs):.2f}%), compared on "
             f"{spec.examples} MNIST test images. Gradient indexes use the per-example gradient of the objective with "
             f"respect to each layer: the task's loss with the true labels, or Tang et al.'s label-free objective "
             f"(beta = {spec.beta:g}). Layer identification as in the sanity check (logits excluded), jackknife SE "
             "over networks."),
        Table(result.records(), columns=list(TABLE_HEADERS), headers=TABLE_HEADERS,
              caption="Layer identification accuracy (%) with and without gradients"),
        Table(_per_layer_records(result), columns=["index", *result.layers], caption="Identification accuracy per layer (%)"),
        figure_block(_grid(result), name="grid", dpi=70,
                     caption="Every layer of network 0 (rows) against every layer of network 1 (columns), per index"),
        figure_block(_per_layer(result), name="per-layer", dpi=80, caption="Identification accuracy per layer (%)"),
        Text(f"Through training: seeds {seeds} retrained with a checkpoint at initialisation and after each of the "
             f"{spec.network.recipe.epochs} epochs (final test accuracy {trained}); each layer's similarity to the "
             "same layer at the end of training and to the same layer of another seed at the same epoch."),
        figure_block(curves_figure(result), name="curves", dpi=70,
                     caption="Similarity through training, linear CKA vs gradient CKA (mean ± SE over seeds / seed pairs)"),
    ]
