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

    from layer_sim.experiments.sanity_check import sanity_check

    console = Console()
    result = sanity_check(nets=nets, examples=examples, full=full, device=device, data_dir=data_dir,
                          cache_dir=cache_dir, progress=True, log=console.print)
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


def _dash(x) -> str:
    return "—" if x is None else f"{x:.1f}"


def main() -> None:
    """Console-script entry point: library errors become one-line messages, exit code 2."""
    try:
        app()
    except LayerSimError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
