"""The files of a sanity check (Kornblith et al. 2019, Table 2): tables, heatmaps, architecture comparison."""

from __future__ import annotations

from pathlib import Path

from layer_sim._options import strict_signature
from layer_sim.experiments.sanity import SanityCheckResult
from layer_sim.report.figures import grid_figure, heatmap, per_layer_accuracy_figure, save_figure
from layer_sim.report.files import save_matrix
from layer_sim.report.tables import write_table

__all__ = ["TABLE_HEADERS", "write_sanity_check"]

#: Column titles of ``table.md`` (and of the CLI's printed table), by record key.
TABLE_HEADERS = {"measure": "Index", "accuracy": "Accuracy (%)", "stderr": "Jackknife SE",
                 "paper": "Paper, Tiny-10 (%)"}  # fmt: skip


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
    per_layer = [{"measure": r.row.label, **{k: round(100 * v, 2) for k, v in r.identification.per_layer.items()}}
                 for r in result.rows]  # fmt: skip
    written += write_table(per_layer, out, stem="per_layer", columns=["measure", *result.layers])
    mats = []
    for r in result.rows:
        mat = r.identification.matrix(0, 1)
        ax = heatmap(mat)
        ax.set_title(f"{r.row.label}\nnetwork 0 vs network 1", fontsize=9)
        written += [save_figure(ax.figure, heat / f"{r.row.slug}.png", dpi=110),
                    save_matrix(mat, heat / f"{r.row.slug}.csv")]  # fmt: skip
        mats.append(mat)
    fig = grid_figure(mats, titles=[r.row.label for r in result.rows],
                      suptitle="Every layer of network 0 (rows) against every layer of network 1 (columns)")
    written.append(save_figure(fig, heat / "grid.png", dpi=90))
    fig = per_layer_accuracy_figure([r.identification for r in result.rows], labels=[r.row.label for r in result.rows])
    written.append(save_figure(fig, heat / "per_layer_accuracy.png", dpi=110))
    for arch in result.architectures:
        adir = out / "architectures"
        for row, mat in zip(arch.measures, arch.matrices):
            ax = heatmap(mat)
            ax.set_title(f"{row.label}\n{arch.name} {list(arch.widths[1:-1])} vs reference", fontsize=8)
            written += [save_figure(ax.figure, adir / f"{arch.name}_{row.slug}.png", dpi=110),
                        save_matrix(mat, adir / f"{arch.name}_{row.slug}.csv")]  # fmt: skip
        written += write_table(arch.best_matches(), adir, stem=f"{arch.name}_best_match")
    return written
