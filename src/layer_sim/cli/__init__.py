"""Command-line interface: a thin typer layer over the library; no computation lives here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from layer_sim.errors import LayerSimError

app = typer.Typer(
    name="layer-sim",
    help="Layer-by-layer similarity of neural network representations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Layer-by-layer similarity of neural network representations."""


@app.command("train")
def train_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="Directory for summary.json and seed-<k>/ checkpoints (reused if they match)."),
    seeds: str = typer.Option("0-4", "--seeds", help="Seeds: a range 0-4, a list 0,2,5, or both 0-2,7."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default: the default config's)."),
    threshold: float = typer.Option(0.98, "--threshold", help="H0 of the one-sided t-test: mean test accuracy <= threshold."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device, e.g. cpu, cuda, mps (default cpu)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="MNIST directory (default $LAYER_SIM_DATA, else ~/.cache/layer_sim/mnist)."),
    limit_train: Optional[int] = typer.Option(None, "--limit-train", help="Train on the first N examples only (quick runs).", hidden=True),
) -> None:
    """Train the default MLP on MNIST from each seed; report test accuracy and a t-test of mean > threshold.

    Prints accuracy per seed, mean, std, 95% CI and the one-sided one-sample t-test of H0: mean <= threshold (t, df, p); writes OUTPUT/summary.json and OUTPUT/seed-<k>/{model.pt,meta.json}.

    Example: layer-sim train --seeds 0-4 --output runs/default
    """
    import dataclasses

    from rich.console import Console
    from rich.table import Table

    from layer_sim.training.loop import DEFAULT_CONFIG, train_seeds

    config = DEFAULT_CONFIG
    if epochs is not None or limit_train is not None:
        config = dataclasses.replace(config, epochs=config.epochs if epochs is None else epochs, limit_train=limit_train)
    console = Console()
    res = train_seeds(seeds, output=output, config=config, threshold=threshold, data_dir=data_dir,
                      device=device, progress=None, log=console.print)
    table = Table(title=f"MLP {list(config.widths)}, {config.epochs} epochs: MNIST test accuracy")
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
        console.print("no t-test: it needs at least two seeds with differing accuracies")
    else:
        verdict = "reject H0" if s.p_value < 0.05 else "cannot reject H0"
        console.print(f"one-sided t-test, H0: mean <= {s.threshold:g}: t = {s.t:.3f}, df = {s.df}, "
                      f"p = {s.p_value:.3g} ({verdict} at 0.05)")
    console.print(f"wrote {output / 'summary.json'}")


@app.command("sanity-check")
def sanity_check_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="Directory for table.md|csv|json, heatmaps/ and architectures/."),
    nets: Optional[int] = typer.Option(None, "--nets", help="Networks trained from seeds 0..N-1 (default 5; 10 with --full)."),
    full: bool = typer.Option(False, "--full", help="Paper-sized run: 10 networks, 3000 examples, two other architectures."),
    examples: Optional[int] = typer.Option(None, "--examples", help="Test examples to compare on (default 2000; 3000 with --full)."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device, e.g. cpu, cuda, mps (default cpu)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="MNIST directory (default $LAYER_SIM_DATA, else ~/.cache/layer_sim/mnist)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Checkpoint cache (default $LAYER_SIM_CACHE, else ~/.cache/layer_sim/checkpoints)."),
) -> None:
    """Kornblith et al. (2019) Table 2 sanity check with MNIST MLPs: can each index find the corresponding layer?

    Trains (or reuses cached) MLPs from different seeds, runs layer identification for every index, writes the table beside the paper's values plus heatmaps, and compares networks of different depth/width layer by layer.

    Example: layer-sim sanity-check --output results/sanity
    """
    from rich.console import Console
    from rich.table import Table

    from layer_sim.experiments.sanity import sanity_check

    console = Console()
    result = sanity_check(nets=nets, examples=examples, full=full, device=device, data_dir=data_dir,
                          cache_dir=cache_dir, progress=sys.stdout.isatty(), log=console.print)
    written = result.write(output)
    accs = [100 * a for a in result.test_accuracies]
    table = Table(title=f"Layer identification, {result.nets} MLPs {list(result.widths)} on {result.examples} MNIST test examples")
    for col in ("Index", "Accuracy (%)", "Jackknife SE", "Paper, Tiny-10 (%)"):
        table.add_column(col, justify="left" if col == "Index" else "right")
    for r in result.records():
        table.add_row(r["measure"], f"{r['accuracy']:.1f}", _dash(r["stderr"]), _dash(r["paper"]))
    console.print(table)
    console.print(f"network test accuracy: mean {sum(accs) / len(accs):.2f}%, min {min(accs):.2f}%")
    for arch in result.architectures:
        console.print(f"{arch.name} {list(arch.widths)}: best-matching reference layer per layer")
        for rec in arch.best_matches():
            console.print("  " + ", ".join(f"{k}: {v}" for k, v in rec.items()))
    t = result.timings
    console.print(f"time: train/load {t['train_or_load']:.0f} s, extract {t['extract']:.1f} s, "
                  f"identification {t['identification']:.0f} s, architectures {t['architectures']:.0f} s, "
                  f"total {t['total']:.0f} s")
    console.print(f"wrote {len(written)} files under {output}")


from layer_sim.cli.runs import runs_app  # noqa: E402  (the runs command group)

app.add_typer(runs_app, name="runs")


def _dash(x) -> str:
    return "—" if x is None else f"{x:.1f}"


def main() -> None:
    """Console-script entry point: library errors become one-line messages, exit code 2."""
    try:
        app()
    except LayerSimError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
