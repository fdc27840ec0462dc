"""``layer-sim sanity-check``: Kornblith et al.'s (2019) Table 2 with MNIST MLPs, run as units into a results store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from layer_sim.cli._shared import (
    SWEEP_DEFAULTS,
    CacheDir,
    DataDir,
    Device,
    SweepOptions,
    command_line,
    output_option,
    sweep_options,
    writable_dir,
)

__all__ = ["EXAMPLE", "SUMMARY", "sanity_check_command"]

SUMMARY = "Kornblith et al. (2019) Table 2 sanity check with MNIST MLPs."
EXAMPLE = "Example: layer-sim sanity-check --output results/sanity --workers 2"


@sweep_options
def sanity_check_command(
    ctx: typer.Context,
    output: Annotated[Path, output_option("Directory for table.md|csv|json, heatmaps/, architectures/ and the store.")],
    nets: Annotated[Optional[int], typer.Option("--nets", help="Networks trained from seeds 0..N-1 (default 5; 10 with --full).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Paper-sized run: 10 networks, 3000 examples, two other architectures.")] = False,
    examples: Annotated[Optional[int], typer.Option("--examples", help="Test examples to compare on (default 2000; 3000 with --full).")] = None,
    device: Device = None,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    sweep: SweepOptions = SWEEP_DEFAULTS,
) -> None:
    """Kornblith et al. (2019) Table 2 sanity check with MNIST MLPs: can each index find the corresponding layer?

    Trains (or reuses cached) MLPs from different seeds, runs layer identification for every index, writes the table beside the paper's values plus heatmaps, and compares networks of different depth/width layer by layer. Every piece (the networks, one identification per index, one comparison per other architecture) is a unit recorded in the results store as it finishes: a rerun after an interruption skips what is done.
    """
    writable_dir(output)
    from rich.console import Console
    from rich.table import Table

    from layer_sim.experiments.sanity import sanity_check
    from layer_sim.report.sanity import TABLE_HEADERS, write_sanity_check

    console = Console()
    executor = sweep.executor()
    path = sweep.store_for(output)
    result = sanity_check(store=path, nets=nets, examples=examples, full=full, device=device, data_dir=data_dir,
                          cache_dir=cache_dir, executor=executor, command=command_line(ctx), progress=None,
                          log=console.print)  # fmt: skip
    written = write_sanity_check(result, output)
    for seed, (acc, reused) in enumerate(zip(result.test_accuracies, result.reused)):
        console.print(f"network {list(result.widths)} seed {seed}: {'reused' if reused else 'trained'}, "
                      f"test accuracy {100 * acc:.2f}%")
    accs = [100 * a for a in result.test_accuracies]
    table = Table(title=f"Layer identification, {result.nets} MLPs {list(result.widths)} on {result.examples} MNIST test examples")
    for key, col in TABLE_HEADERS.items():
        table.add_column(col, justify="left" if key == "measure" else "right")
    for r in result.records():
        table.add_row(r["measure"], f"{r['accuracy']:.1f}", _dash(r["stderr"]), _dash(r["paper"]))
    console.print(table)
    console.print(f"network test accuracy: mean {sum(accs) / len(accs):.2f}%, min {min(accs):.2f}%")
    for arch in result.architectures:
        console.print(f"{arch.name} {list(arch.widths)}: best-matching reference layer per layer")
        for rec in arch.best_matches():
            console.print("  " + ", ".join(f"{k}: {v}" for k, v in rec.items()))
    t = result.timings
    console.print(f"work (summed over units): train/load {t.train_or_load:.0f} s, extract {t.extract:.1f} s, "
                  f"identification {t.identification:.0f} s, architectures {t.architectures:.0f} s, "
                  f"total {t.total:.0f} s")  # fmt: skip
    console.print(f"wrote {len(written)} files under {output}; results store {path}")


def _dash(x) -> str:
    return "—" if x is None else f"{x:.1f}"
