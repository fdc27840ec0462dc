"""``layer-sim train``: accuracy of the default MLP across seeds (one unit per seed), with a one-sided t-test."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from layer_sim.cli._shared import (
    SWEEP_DEFAULTS,
    DataDir,
    Device,
    Seeds,
    SweepOptions,
    command_line,
    output_option,
    parse_seeds,
    sweep_options,
    writable_dir,
)
from layer_sim.errors import ConfigError

__all__ = ["EXAMPLE", "SUMMARY", "train_command"]

SUMMARY = "Train the default MLP from several seeds; t-test of mean test accuracy."
EXAMPLE = "Example: layer-sim train --seeds 0-4 --output runs/default --workers 2"


def _check_threshold(value: float) -> float:
    # Here, not only in train_seeds: click's FloatRange lets NaN through, and this runs before
    # --output is touched.
    from layer_sim.experiments.seeds import THRESHOLD

    try:
        return THRESHOLD.check("--threshold", value)
    except ConfigError:
        raise ConfigError(f"--threshold must be a finite number in [0, 1], got {value!r}") from None


@sweep_options
def train_command(
    ctx: typer.Context,
    output: Annotated[Path, output_option("Directory for summary.json, the store and the checkpoints, <key>/seed-<k>/ (reused if they match).")],
    seeds: Seeds = "0-4",
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Training epochs (default: the default config's).")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="H0 of the one-sided t-test: mean test accuracy <= threshold.", callback=_check_threshold)] = 0.98,
    device: Device = None,
    data_dir: DataDir = None,
    sweep: SweepOptions = SWEEP_DEFAULTS,
    limit_train: Annotated[Optional[int], typer.Option("--limit-train", help="Train on the first N examples only (quick runs).", hidden=True)] = None,
) -> None:
    """Train the default MLP on MNIST from each seed; report test accuracy and a t-test of mean > threshold.

    Each seed is one unit recorded in the results store (a rerun skips the seeds done; --workers 2 trains two at once). Prints accuracy per seed, mean, std, 95% CI and the one-sided one-sample t-test of H0: mean <= threshold (t, df, p), all read back from the store; writes OUTPUT/summary.json and OUTPUT/<key>/seed-<k>/{model.pt,meta.json}.
    """
    from rich.console import Console
    from rich.table import Table

    from layer_sim.experiments.seeds import train_seeds
    from layer_sim.report.seeds import write_seeds_summary
    from layer_sim.training.spec import DEFAULT_SPEC

    seed_list = parse_seeds(seeds)
    writable_dir(output)
    spec = DEFAULT_SPEC.replace(**{k: v for k, v in (("epochs", epochs), ("limit_train", limit_train)) if v is not None})
    executor = sweep.executor()
    console = Console()
    res = train_seeds(seed_list, store=sweep.store_for(output), spec=spec, threshold=threshold, cache_dir=output,
                      executor=executor, command=command_line(ctx), data_dir=data_dir, device=device, progress=None,
                      log=console.print)  # fmt: skip
    table = Table(title=f"MLP {list(spec.model.widths)}, {spec.recipe.epochs} epochs: MNIST test accuracy")
    table.add_column("seed", justify="right")
    table.add_column("test accuracy (%)", justify="right")
    table.add_column("train time (s)", justify="right")
    for seed, acc, sec, reused in zip(res.seeds, res.test_accuracy, res.train_seconds, res.reused):
        table.add_row(str(seed), f"{100 * acc:.2f}", f"{sec:.0f}" + (" (reused)" if reused else ""))
    s = res.summary
    if s is not None:
        table.add_section()
        table.add_row("mean", f"{100 * s.mean:.2f}", "")
        table.add_row("std", f"{100 * s.std:.2f}", "")
        table.add_row(f"{100 * s.confidence:.0f}% CI", f"[{100 * s.ci_low:.2f}, {100 * s.ci_high:.2f}]", "")
    console.print(table)
    if s is None:
        console.print("no t-test: it needs at least two seeds with finite, differing accuracies")
    else:
        verdict = "reject H0" if s.p_value < 0.05 else "cannot reject H0"
        console.print(f"one-sided t-test, H0: mean <= {s.threshold:g}: t = {s.t:.3f}, df = {s.df}, "
                      f"p = {s.p_value:.3g} ({verdict} at 0.05)")  # fmt: skip
    console.print(f"wrote {write_seeds_summary(res, output / 'summary.json')}")
