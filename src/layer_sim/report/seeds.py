"""``layer-sim train``'s views: ``summary.json``, and its section of the report."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure

from layer_sim._io import atomic_write
from layer_sim.experiments.seeds import NAME, SeedsResult
from layer_sim.report.sections import ExperimentRecord, Table, Text, figure_block, section

__all__ = ["write_seeds_summary"]


def write_seeds_summary(result: SeedsResult, path) -> Path:
    """Write :meth:`SeedsResult.to_dict` as JSON to ``path`` atomically; returns the path."""
    path = Path(path)
    text = json.dumps(result.to_dict(), indent=2, allow_nan=False)
    atomic_write(path, lambda fh: fh.write(text.encode()))
    return path


def _curves(result: SeedsResult) -> Figure | None:
    """Test accuracy per epoch of every seed, from the training histories."""
    lines = [(seed, [h["epoch"] for h in history], [100 * h["test_accuracy"] for h in history])
             for seed, history in zip(result.seeds, result.histories) if history]
    if not lines:
        return None
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for seed, epochs, accs in sorted(lines):
        ax.plot(epochs, accs, marker="o", markersize=3, label=f"seed {seed}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)
    return fig


@section(NAME, title="Training across seeds (layer-sim train)")
def _report_section(result: SeedsResult, record: ExperimentRecord):
    rows = [{"seed": s, "test accuracy (%)": 100 * a, "train time (s)": t, "reused": "yes" if r else "no"}
            for s, a, t, r in zip(result.seeds, result.test_accuracy, result.train_seconds, result.reused)]
    blocks = [Text(f"MLP {list(result.spec.model.widths)}, {result.spec.recipe.epochs} epochs, network key "
                   f"{result.spec.key()}: MNIST test accuracy per seed."),
              Table(rows, digits=2, caption="Per seed")]
    s = result.summary
    if s is None:
        blocks.append(Text("No t-test: it needs at least two seeds with differing accuracies."))
    else:
        verdict = "reject H0" if s.p_value < 0.05 else "cannot reject H0"
        blocks.append(Text(f"Mean {100 * s.mean:.2f}%, std {100 * s.std:.2f}%, {100 * s.confidence:.0f}% CI "
                           f"[{100 * s.ci_low:.2f}, {100 * s.ci_high:.2f}]; one-sided t-test of H0: mean <= "
                           f"{s.threshold:g}: t = {s.t:.3f}, df = {s.df}, p = {s.p_value:.3g} ({verdict} at 0.05)."))
    fig = _curves(result)
    if fig is not None:
        blocks.append(figure_block(fig, name="curves", caption="Test accuracy per epoch, per seed"))
    return blocks
