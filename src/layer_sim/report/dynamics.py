"""Views of the learning-dynamics study: per-epoch tables, curves over epochs, final values, snapshot tables.

Figures follow the report's: for each digit pair, loss, test accuracy and alignment against the
epoch, one curve per (learning rate, readout learning rate), the mean over seeds with a band of
± one standard deviation; and the final alignment of every layer for every configuration.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from layer_sim._io import atomic_write
from layer_sim.experiments.learning_dynamics import EPOCH_COLUMNS, HIDDEN, NAME, S2_R01, S2_R01_RUN, SNAPSHOT_COLUMNS, StudyResult
from layer_sim.report.figures import save_figure
from layer_sim.report.sections import ExperimentRecord, Table, Text, figure_block, section
from layer_sim.report.tables import write_table

__all__ = ["curves_figure", "final_alignment_figure", "final_records", "write_study", "write_snapshots",
           "snapshots_figure", "s2_comparison", "PANELS", "FINAL_HEADERS"]

#: The panels of a curves figure: (epochs column, y-axis label, log scale).
PANELS: tuple[tuple[str, str, bool], ...] = (
    ("train_loss", "training loss (MSE, mean over the epoch)", True),
    ("test_accuracy", "test accuracy", False),
    ("batch_alignment", f"batch alignment of {HIDDEN} (S2)", False),
    ("test_alignment", f"CKA(Test) of {HIDDEN}", False),
)

#: The final values tabulated per configuration (mean ± std over seeds).
FINAL_COLUMNS = ("train_loss", "train_accuracy", "test_accuracy", "batch_alignment", "train_alignment",
                 "test_alignment", "test/output")  # fmt: skip


def _config(record) -> tuple[float, float]:
    return record.run.lr, record.run.readout_lr


def _series(records, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and std over seeds of ``column`` (epochs where every seed has a value)."""
    per_seed = [{row["epoch"]: row.get(column) for row in r.epochs if row.get(column) is not None} for r in records]
    epochs = sorted(set.intersection(*(set(d) for d in per_seed))) if per_seed else []
    values = np.array([[d[e] for e in epochs] for d in per_seed], dtype=np.float64).reshape(len(per_seed), len(epochs))
    std = values.std(axis=0, ddof=1) if len(per_seed) > 1 else np.zeros(len(epochs))
    return np.array(epochs), values.mean(axis=0) if len(epochs) else np.array([]), std


def curves_figure(records: Sequence, *, title: str) -> Figure:
    """Loss, test accuracy, batch alignment and CKA(Test) against the epoch, one curve per configuration.

    ``records`` are :class:`~layer_sim.experiments.learning_dynamics.PairRecord` s of one pair;
    runs of the same (lr, readout lr) are seeds, drawn as their mean with a ± 1 std band.
    """
    configs: dict[tuple[float, float], list] = {}
    for r in records:
        configs.setdefault(_config(r), []).append(r)
    fig = Figure(figsize=(4.2 * len(PANELS), 3.6), layout="constrained")
    axes = fig.subplots(1, len(PANELS))
    colours = [f"C{k}" for k in range(10)]
    for k, ((lr, readout_lr), group) in enumerate(sorted(configs.items(), reverse=True)):
        label = f"lr {lr:g} / readout {readout_lr:g} ({len(group)} seed{'s' if len(group) > 1 else ''})"
        for ax, (column, ylabel, log) in zip(axes, PANELS):
            epochs, mean, std = _series(group, column)
            if not len(epochs):
                continue
            colour = colours[k % len(colours)]
            ax.plot(epochs, mean, color=colour, label=label, lw=1.4, marker="." if len(epochs) < 30 else None)
            ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_xlabel("epoch")
            if log:
                ax.set_yscale("log")
    axes[0].legend(fontsize=6)
    fig.suptitle(f"{title}: mean over seeds, band ± 1 std", fontsize=10)
    return fig


def final_records(result: StudyResult) -> list[dict]:
    """Per (pair, lr, readout lr): the last epoch's values, mean and std over seeds."""
    groups: dict[tuple, list] = {}
    for r in result.records:
        groups.setdefault((r.run.pair, r.run.lr, r.run.readout_lr), []).append(r)
    out = []
    for (pair, lr, readout_lr), group in groups.items():
        row = {"pair": f"[{pair[0]} {pair[1]}]", "lr": lr, "readout_lr": readout_lr, "seeds": len(group),
               "epochs": group[0].run.epochs}  # fmt: skip
        for column in FINAL_COLUMNS:
            values = [g.epochs[-1].get(column) for g in group]
            values = [v for v in values if v is not None]
            row[column] = float(np.mean(values)) if values else None
            row[f"{column} std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out.append(row)
    return out


def final_alignment_figure(result: StudyResult) -> Figure:
    """Final CKA(Test) of every recorded layer per configuration, one panel per pair (mean ± std over seeds)."""
    pairs: dict[tuple, list] = {}
    for r in result.records:
        pairs.setdefault(r.run.pair, []).append(r)
    fig = Figure(figsize=(4.0 * len(pairs), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(pairs), sharey=True))
    for ax, (pair, records) in zip(axes, pairs.items()):
        configs: dict[tuple, list] = {}
        for r in records:
            configs.setdefault(_config(r), []).append(r)
        names = sorted(configs, reverse=True)
        layers = [c.split("/", 1)[1] for c in records[0].epochs[-1] if c.startswith("test/")]
        width = 0.8 / max(len(layers), 1)
        for j, layer in enumerate(layers):
            means, stds = [], []
            for cfg in names:
                vals = [g.epochs[-1].get(f"test/{layer}") for g in configs[cfg]]
                vals = [v for v in vals if v is not None]
                means.append(np.mean(vals) if vals else math.nan)
                stds.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
            x = np.arange(len(names)) + (j - (len(layers) - 1) / 2) * width
            ax.bar(x, means, width, yerr=stds, label=layer, capsize=2)
        ax.set_xticks(range(len(names)), [f"{lr:g}/{r:g}" for lr, r in names], rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("lr / readout lr")
        ax.set_title(f"[{pair[0]} {pair[1]}]", fontsize=9)
    axes[0].set_ylabel("final CKA(Test) with the targets")
    axes[0].legend(fontsize=7, title="layer", title_fontsize=7)
    fig.suptitle("Final alignment per layer (mean ± std over seeds)", fontsize=10)
    return fig


def _csv_bytes(rows: Sequence[dict], columns: Sequence[str]) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{c: ("" if r.get(c) is None else r.get(c)) for c in columns} for r in rows])
    return text.getvalue().encode()


def _write_history(fh, records) -> None:
    """Every run's ``history.csv.gz`` artefact, prefixed with the run's columns, streamed into one gzip file
    (row by row: S2's 3000 epochs make tens of millions of rows)."""
    with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz, io.TextIOWrapper(gz, newline="", encoding="utf-8") as text:
        writer = csv.writer(text)
        writer.writerow(["pair", "lr", "readout_lr", "seed", "step", "epoch", "layer", "split", "measure", "value"])
        for r in records:
            prefix = [f"{r.run.pair[0]}-{r.run.pair[1]}", r.run.lr, r.run.readout_lr, r.run.seed]
            with gzip.open(r.artefacts["history"], "rt", newline="") as source:
                reader = csv.reader(source)
                next(reader)
                for line in reader:
                    writer.writerow(prefix + line)


def write_study(result: StudyResult, directory, *, figures: bool = True) -> list[Path]:
    """Write a study's tables and figures under ``directory``; returns the paths written.

    ``epochs.csv``: every epoch row of every run (``pair, lr, readout_lr, seed`` first, then
    ``epoch, step, train_loss, train_accuracy, test_loss, test_accuracy, batch_alignment,
    train_alignment, test_alignment`` and the per-layer ``<split>/<layer>`` columns);
    ``history.csv.gz``: every recorded value with the run's ``pair, lr, readout_lr, seed``;
    ``final.md|csv|json``: :func:`final_records`; with ``figures``, ``curves-<a>-<b>.png`` per pair
    (:func:`curves_figure`) and, for more than one configuration, ``final_alignment.png``.
    """
    out = Path(directory)
    written = []
    rows = result.epoch_rows()
    extra = sorted({k for row in rows for k in row} - {"pair", "lr", "readout_lr", "seed", *EPOCH_COLUMNS})
    columns = ["pair", "lr", "readout_lr", "seed", *EPOCH_COLUMNS, *extra]
    payload = _csv_bytes(rows, columns)
    atomic_write(out / "epochs.csv", lambda fh: fh.write(payload))
    written.append(out / "epochs.csv")
    atomic_write(out / "history.csv.gz", lambda fh: _write_history(fh, result.records))
    written.append(out / "history.csv.gz")
    finals = final_records(result)
    written += write_table(finals, out, stem="final", columns=list(finals[0]), digits=4)
    if figures:
        pairs: dict[tuple, list] = {}
        for r in result.records:
            pairs.setdefault(r.run.pair, []).append(r)
        for pair, records in pairs.items():
            fig = curves_figure(records, title=f"MNIST [{pair[0]} {pair[1]}], 784-{records[0].run.hidden}-2")
            written.append(save_figure(fig, out / f"curves-{pair[0]}-{pair[1]}.png", dpi=110))
        if len({_config(r) for r in result.records}) > 1 or len(pairs) > 1:
            written.append(save_figure(final_alignment_figure(result), out / "final_alignment.png", dpi=110))
    return written


def snapshots_figure(rows: Sequence[dict]) -> Figure:
    """Alignment on the whole training subset against the snapshot's epoch: one panel per pair and layer,
    one curve per configuration (mean over seeds, ± 1 std band)."""
    pairs = sorted({r["pair"] for r in rows})
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig = Figure(figsize=(4.0 * len(layers), 3.2 * len(pairs)), layout="constrained")
    axes = np.array(fig.subplots(len(pairs), len(layers), squeeze=False))
    for i, pair in enumerate(pairs):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            sub = [r for r in rows if r["pair"] == pair and r["layer"] == layer]
            configs = sorted({(r["lr"], r["readout_lr"]) for r in sub}, reverse=True)
            for k, (lr, readout_lr) in enumerate(configs):
                by_epoch: dict[int, list[float]] = {}
                for r in sub:
                    if (r["lr"], r["readout_lr"]) == (lr, readout_lr):
                        by_epoch.setdefault(r["epoch"], []).append(r["value"])
                epochs = np.array(sorted(by_epoch))
                mean = np.array([np.mean(by_epoch[e]) for e in epochs])
                std = np.array([np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])
                ax.plot(epochs, mean, color=f"C{k % 10}", marker=".", label=f"lr {lr:g} / readout {readout_lr:g}")
                ax.fill_between(epochs, mean - std, mean + std, color=f"C{k % 10}", alpha=0.2, lw=0)
            ax.set_title(f"[{pair.replace('-', ' ')}] {layer}", fontsize=9)
            ax.set_xlabel("epoch of the snapshot")
            ax.set_ylabel("CKA with the targets (whole training set)", fontsize=7)
    axes[0, 0].legend(fontsize=6)
    return fig


def write_snapshots(rows: Sequence[dict], directory) -> list[Path]:
    """``snapshots.csv`` (:data:`~layer_sim.experiments.learning_dynamics.SNAPSHOT_COLUMNS`) and ``snapshots.png``."""
    out = Path(directory)
    payload = _csv_bytes(rows, SNAPSHOT_COLUMNS)
    atomic_write(out / "snapshots.csv", lambda fh: fh.write(payload))
    return [out / "snapshots.csv", save_figure(snapshots_figure(rows), out / "snapshots.png", dpi=110)]


def s2_comparison(result: StudyResult) -> list[dict]:
    """Our batch alignment beside S2's recorded r01 values, at the epochs of :data:`S2_R01` every matching run reached.

    Matching runs have S2's r01 protocol (:data:`S2_R01_RUN`); rows ``epoch, ours`` (mean over
    their seeds), ``min``, ``max``, ``S2``, ``ours − S2``; empty when no run matches.

    Examples
    --------
    >>> s2_comparison(StudyResult((), None))
    []
    """
    runs = [r for r in result.records if all(getattr(r.run, k) == v for k, v in S2_R01_RUN.items())]
    rows = []
    for epoch, theirs in S2_R01.items():
        values = [row["batch_alignment"] for r in runs for row in r.epochs
                  if row["epoch"] == epoch and row.get("batch_alignment") is not None]  # fmt: skip
        if runs and len(values) == len(runs):
            mean = float(np.mean(values))
            rows.append({"epoch": epoch, "seeds": len(values), "ours": mean, "min": min(values), "max": max(values),
                         "S2": theirs, "ours − S2": mean - theirs})  # fmt: skip
    return rows


#: Column titles of the report section's table of final values, by :func:`final_records` key.
FINAL_HEADERS = {"pair": "pair", "lr": "lr", "readout_lr": "readout lr", "seeds": "seeds", "epochs": "epochs",
                 "train_loss": "train loss", "test_accuracy": "test acc.", "batch_alignment": "batch CKA (S2)",
                 "batch_alignment std": "± std", "test_alignment": "CKA(Test)", "test_alignment std": "± std",
                 "test/output": "CKA(Test) output"}  # fmt: skip


@section(NAME, title="Learning dynamics: kernel–target alignment while MLPs learn MNIST digit pairs (S2's protocol)")
def _report_section(result: StudyResult, record: ExperimentRecord):
    runs = [r.run for r in result.records]
    pairs = sorted({r.pair for r in runs})
    epochs = sorted({r.epochs for r in runs})
    blocks = [
        Text(f"{len(runs)} runs: digit pairs {', '.join(f'[{a} {b}]' for a, b in pairs)}, "
             f"{len({(r.lr, r.readout_lr) for r in runs})} (learning rate, readout learning rate) configurations, "
             f"{len({r.seed for r in runs})} seed(s), {'/'.join(map(str, epochs))} epochs. Network 784-"
             f"{runs[0].hidden}-2 (ReLU), nn.MSELoss on one-hot targets, plain SGD, batches of {runs[0].batch_size}, "
             "pixels in [0, 1]. 'batch CKA (S2)' is S2's recorded quantity: linear CKA of the hidden features of "
             "each batch, recomputed after its optimiser step, with the batch's one-hot targets, both correctly "
             "double-centred, averaged over the epoch; CKA(Test) is the same on a fixed probe set of test images."),
        Table(final_records(result), columns=list(FINAL_HEADERS), headers=FINAL_HEADERS, digits=3,
              caption="Last epoch, mean (± std) over seeds"),
    ]
    for pair in pairs:
        mine = [r for r in result.records if r.run.pair == pair]
        blocks.append(figure_block(curves_figure(mine, title=f"MNIST [{pair[0]} {pair[1]}]"), dpi=60,
                                   name=f"curves-{pair[0]}-{pair[1]}",
                                   caption=f"Digits {pair[0]} and {pair[1]}: loss, test accuracy, batch CKA and CKA(Test) "
                                           "per epoch (mean ± 1 std over seeds)"))  # fmt: skip
    blocks.append(figure_block(final_alignment_figure(result), name="final-alignment", dpi=70,
                               caption="Final CKA(Test) of every layer per configuration"))  # fmt: skip
    s2 = s2_comparison(result)
    if s2:
        blocks.append(Table(s2, digits=4, caption="Batch CKA of [0 1], lr 0.1 / readout 0.1, hidden 2000 (mean over "
                                                  "seeds) beside S2's recorded values (record r01)"))  # fmt: skip
    return blocks
