"""The files of the pruning study: sparsity and similarity tables, a summary against the noise floor, figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from layer_sim.experiments.pruning import MEASURES, PruningStudyResult
from layer_sim.report.figures import save_figure
from layer_sim.report.tables import write_table

__all__ = ["SPARSITY_COLUMNS", "SIMILARITY_COLUMNS", "summary_records", "write_pruning_study",
           "similarity_figure", "accuracy_figure"]  # fmt: skip

SPARSITY_COLUMNS = ["seed", "iteration", "sparsity", "test_accuracy", "pruned", "prunable", "train_seconds"]
SIMILARITY_COLUMNS = ["comparison", "seed", "other_seed", "iteration", "sparsity", "layer", "measure", "value",
                      "layout", "rows", "features"]  # fmt: skip


def summary_records(result: PruningStudyResult) -> list[dict]:
    """Per measure and layer: the noise floor and each iteration's pruned-vs-complete value (mean, min, max over seeds).

    ``margin`` is the last iteration's smallest pruned value minus the largest noise-floor value:
    positive means every pruned network stayed more similar to its complete network than any two
    complete networks are to each other.
    """
    out = []
    last = result.spec.iterations
    for key in result.spec.measures:
        for layer in result.layers:
            floor = result.noise_floor(layer, key)
            rec = {"measure": MEASURES[key].label, "layer": layer, "noise_floor": _mean(floor),
                   "noise_floor_min": min(floor), "noise_floor_max": max(floor)}  # fmt: skip
            for i in range(1, last + 1):
                vals = result.pruned(layer, key, i)
                rec[f"iteration_{i}"] = _mean(vals)
                rec[f"iteration_{i}_min"] = min(vals)
            rec["margin"] = min(result.pruned(layer, key, last)) - max(floor)
            out.append(rec)
    return out


def write_pruning_study(result: PruningStudyResult, directory) -> list[Path]:
    """Write ``sparsity.csv``, ``parameter_sparsity.csv``, ``similarity.csv``, ``summary.md|csv|json`` and two figures.

    ``sparsity.csv`` (and ``.md``/``.json``): one row per network (``iteration`` 0 = complete);
    ``parameter_sparsity.csv``: per pruned network and prunable tensor, the share pruned.
    ``similarity.csv``: one row per comparison, layer and index (see
    :class:`~layer_sim.experiments.pruning.SimilarityRow`). ``similarity_vs_sparsity.png``: per
    layer, each index's pruned-vs-complete similarity (mean over seeds, band = min to max) against
    sparsity, beside its noise floor (dashed, band = min to max over pairs of seeds);
    ``accuracy_vs_sparsity.png``. Every file is written atomically; returns their paths.
    """
    out = Path(directory)
    written = write_table([n.record() for n in result.networks], out, stem="sparsity", columns=SPARSITY_COLUMNS,
                          digits=4)  # fmt: skip
    written += write_table([r.record() for r in result.parameters], out, stem="parameter_sparsity", digits=4)
    written += write_table([r.record() for r in result.similarities], out, stem="similarity",
                           columns=SIMILARITY_COLUMNS, digits=4)  # fmt: skip
    summary = summary_records(result)
    cols = ["measure", "layer", "noise_floor", *[f"iteration_{i}" for i in range(1, result.spec.iterations + 1)], "margin"]
    written += write_table(summary, out, stem="summary", columns=[*cols, *[k for k in summary[0] if k not in cols]],
                           digits=3)  # fmt: skip
    written.append(save_figure(similarity_figure(result), out / "similarity_vs_sparsity.png", dpi=110))
    written.append(save_figure(accuracy_figure(result), out / "accuracy_vs_sparsity.png", dpi=110))
    return written


def similarity_figure(result: PruningStudyResult, *, ncols: int = 4) -> Figure:
    """One panel per layer: similarity to the complete network against sparsity, per index, with its noise floor."""
    layers = list(result.layers)
    ncols = max(1, min(ncols, len(layers)))
    nrows = math.ceil(len(layers) / ncols)
    fig = Figure(figsize=(3.4 * ncols, 2.9 * nrows + 0.6), layout="constrained")
    colours = dict(zip(result.spec.measures, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    iterations = range(1, result.spec.iterations + 1)
    # x: the share of prunable weights left, on a log axis that runs towards sparser to the right,
    # so that IMP's geometric steps are evenly spaced.
    left = [1 - _mean([n.sparsity for n in result.networks if n.iteration == i]) for i in iterations]
    for k, layer in enumerate(layers):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for key in result.spec.measures:
            c = colours[key]
            per_it = [result.pruned(layer, key, i) for i in iterations]
            ax.plot(left, [_mean(v) for v in per_it], "o-", color=c, label=MEASURES[key].label, ms=3)
            ax.fill_between(left, [min(v) for v in per_it], [max(v) for v in per_it], color=c, alpha=0.2)
            floor = result.noise_floor(layer, key)
            ax.axhline(_mean(floor), color=c, ls="--", lw=1)
            ax.axhspan(min(floor), max(floor), color=c, alpha=0.08)
        _left_axis(ax, left)
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("share of prunable weights left", fontsize=7)
        ax.set_ylabel("similarity to the complete network", fontsize=7)
        ax.tick_params(labelsize=7)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    seeds = len(result.spec.seeds)
    fig.suptitle(f"Pruned vs complete LeNet-5 (solid: mean over {seeds} seeds, band: min-max); "
                 f"dashed: complete vs complete, other seed (noise floor)", fontsize=9)  # fmt: skip
    return fig


def accuracy_figure(result: PruningStudyResult) -> Figure:
    """Test accuracy against sparsity, one line per seed."""
    fig = Figure(figsize=(4.6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for seed in result.spec.seeds:
        nets = sorted((n for n in result.networks if n.seed == seed), key=lambda n: n.iteration)
        ax.plot([1 - n.sparsity for n in nets], [100 * n.test_accuracy for n in nets], "o-", ms=3, label=f"seed {seed}")
    _left_axis(ax, sorted({1 - n.sparsity for n in result.networks}))
    ax.set_xlabel("share of prunable weights left (iteration 0: complete)")
    ax.set_ylabel("MNIST test accuracy (%)")
    ax.set_title(f"LeNet-5, IMP at rate {result.spec.rate:g}, {result.spec.epochs} epochs per training", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def _left_axis(ax, left: Sequence[float]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(left, [f"{x:.3g}" for x in left])
    ax.minorticks_off()
    ax.invert_xaxis()


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if len(values) else float(np.nan)
