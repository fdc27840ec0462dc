"""The sanity check's views (Kornblith et al. 2019, Table 2): its output files, and its section of the report."""

from __future__ import annotations

from pathlib import Path

from layer_sim._options import strict_signature
from layer_sim.experiments.sanity import NAME, ArchitectureComparison, SanityCheckResult
from layer_sim.report.figures import grid_figure, heatmap, per_layer_accuracy_figure, save_figure
from layer_sim.report.files import save_matrix
from layer_sim.report.sections import ExperimentRecord, Table, Text, figure_block, section
from layer_sim.report.tables import write_table

__all__ = ["TABLE_HEADERS", "write_sanity_check"]

#: Column titles of ``table.md`` (and of the CLI's printed table), by record key.
TABLE_HEADERS = {"measure": "Index", "accuracy": "Accuracy (%)", "stderr": "Jackknife SE",
                 "paper": "Paper, Tiny-10 (%)"}  # fmt: skip


def _row_heatmap(r):
    ax = heatmap(r.identification.matrix(0, 1))
    ax.set_title(f"{r.row.label}\nnetwork 0 vs network 1", fontsize=9)
    return ax.figure


def _grid(result: SanityCheckResult):
    return grid_figure([r.identification.matrix(0, 1) for r in result.rows], titles=[r.row.label for r in result.rows],
                       suptitle="Every layer of network 0 (rows) against every layer of network 1 (columns)")


def _per_layer(result: SanityCheckResult):
    return per_layer_accuracy_figure([r.identification for r in result.rows], labels=[r.row.label for r in result.rows])


def _arch_heatmap(arch: ArchitectureComparison, row, mat):
    ax = heatmap(mat)
    ax.set_title(f"{row.label}\n{arch.name} {list(arch.widths[1:-1])} vs reference", fontsize=8)
    return ax.figure


def _per_layer_records(result: SanityCheckResult) -> list[dict]:
    return [{"measure": r.row.label, **{k: round(100 * v, 2) for k, v in r.identification.per_layer.items()}}
            for r in result.rows]


@strict_signature
def write_sanity_check(result: SanityCheckResult, directory) -> list[Path]:
    """Write the table, heatmaps and architecture comparison of ``result`` under ``directory``.

    Layout: ``table.md|csv|json``, ``per_layer.md|csv|json``,
    ``heatmaps/<measure>.png|csv`` (networks 0 and 1, every layer against every layer),
    ``heatmaps/grid.png``, ``heatmaps/per_layer_accuracy.png``,
    ``architectures/<name>_<measure>.png|csv``, ``architectures/<name>_best_match.md|csv|json``.
    Every file is written atomically; returns their paths.
    """
    out = Path(directory)
    heat = out / "heatmaps"
    written = write_table(result.records(), out, columns=list(TABLE_HEADERS), headers=TABLE_HEADERS)
    written += write_table(_per_layer_records(result), out, stem="per_layer", columns=["measure", *result.layers])
    for r in result.rows:
        written += [save_figure(_row_heatmap(r), heat / f"{r.row.slug}.png", dpi=110),
                    save_matrix(r.identification.matrix(0, 1), heat / f"{r.row.slug}.csv")]  # fmt: skip
    written.append(save_figure(_grid(result), heat / "grid.png", dpi=90))
    written.append(save_figure(_per_layer(result), heat / "per_layer_accuracy.png", dpi=110))
    for arch in result.architectures:
        adir = out / "architectures"
        for row, mat in zip(arch.measures, arch.matrices):
            written += [save_figure(_arch_heatmap(arch, row, mat), adir / f"{arch.name}_{row.slug}.png", dpi=110),
                        save_matrix(mat, adir / f"{arch.name}_{row.slug}.csv")]  # fmt: skip
        written += write_table(arch.best_matches(), adir, stem=f"{arch.name}_best_match")
    return written


@section(NAME, title="Sanity check: layer identification (Kornblith et al. 2019, Table 2)")
def _report_section(result: SanityCheckResult, record: ExperimentRecord):
    accs = [100 * a for a in result.test_accuracies]
    blocks = [
        Text(f"{result.nets} MLPs {list(result.widths)} trained from seeds 0-{result.nets - 1} (test accuracy: mean "
             f"{sum(accs) / len(accs):.2f}%, min {min(accs):.2f}%), compared on {result.examples} MNIST test images. "
             "For every ordered pair of networks and every hidden layer of the first, an index predicts the layer of "
             "the second it is most similar to; accuracy is the share of correct predictions (logits excluded)."),
        Table(result.records(), columns=list(TABLE_HEADERS), headers=TABLE_HEADERS,
              caption="Layer identification accuracy (%), with the paper's Tiny-10 values"),
        figure_block(_grid(result), name="grid", dpi=70,
                     caption="Every layer of network 0 (rows) against every layer of network 1 (columns), per index"),
        figure_block(_per_layer(result), name="per-layer", dpi=80, caption="Identification accuracy per layer (%)"),
    ]
    for arch in result.architectures:
        blocks.append(Table(arch.best_matches(), caption=f"{arch.name} {list(arch.widths)} (test accuracy "
                                                          f"{100 * arch.test_accuracy:.2f}%): most similar reference "
                                                          "layer per layer"))
        for row, mat in zip(arch.measures, arch.matrices):
            blocks.append(figure_block(_arch_heatmap(arch, row, mat), name=f"{arch.name}-{row.slug}", dpi=80,
                                       caption=f"{row.label}: every layer of {arch.name} against network 0"))
    return blocks
