"""``layer-sim pruning-study``: are pruned LeNet-5 layers still similar to the complete network's?"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from layer_sim.cli._shared import (
    SWEEP_DEFAULTS,
    CacheDir,
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

__all__ = ["EXAMPLE", "SUMMARY", "pruning_study_command"]

SUMMARY = "IMP-pruned vs complete LeNet-5 on MNIST, layer by layer, beside the seed noise floor."
EXAMPLE = "Example: layer-sim pruning-study --output results/pruning"


@sweep_options
def pruning_study_command(
    ctx: typer.Context,
    output: Annotated[Path, output_option("Directory for sparsity.csv, similarity.csv, summary.md and the figures.")],
    full: Annotated[bool, typer.Option("--full", help="The original recipe: 15 epochs per training (default 5).")] = False,
    seeds: Seeds = "0-2",
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs per training (default 5; 15 with --full).")] = None,
    iterations: Annotated[int, typer.Option("--iterations", help="IMP iterations per seed.")] = 2,
    rate: Annotated[float, typer.Option("--rate", help="Share of surviving prunable weights pruned per iteration.")] = 0.5,
    examples: Annotated[int, typer.Option("--examples", help="MNIST test images the layers are compared on.")] = 2000,
    cca_layout: Annotated[str, typer.Option("--cca-layout", help="Conv maps for the CCA family: channels, spatial_mean or flatten.")] = "channels",
    device: Device = None,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    sweep: SweepOptions = SWEEP_DEFAULTS,
    limit_train: Annotated[Optional[int], typer.Option("--limit-train", help="Train on the first N examples only (quick runs).", hidden=True)] = None,
) -> None:
    """Train LeNet-5 on MNIST with the original layer_sim's recipe, prune it by IMP with learning-rate rewinding, and compare every layer of each pruned network with its complete network (linear CKA, NBS, mean CCA after SVD to 99 %, PWCCA), beside the similarity of two complete networks from different seeds.

    The study is an experiment of units recorded in a results store (the complete networks; one IMP chain per seed and the noise floor; one comparison per pruned network): a rerun skips finished units, networks are cached and an interrupted training resumes from its last epoch, so a second run computes nothing. layer-sim report --store shows it with every other experiment of the store.
    """
    seed_list = parse_seeds(seeds)
    writable_dir(output)
    from rich.console import Console

    from layer_sim.experiments.pruning import PruningStudySpec, pruning_study
    from layer_sim.report.pruning import write_pruning_study

    if epochs is None:
        epochs = 15 if full else 5
    spec = PruningStudySpec(seeds=tuple(seed_list), epochs=epochs, iterations=iterations, rate=rate,
                            examples=examples, cca_layout=cca_layout, limit_train=limit_train)  # fmt: skip
    console = Console()
    executor = sweep.executor()
    path = sweep.store_for(output)
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = pruning_study(spec, store=path, executor=executor, command=command_line(ctx), cache_dir=cache_dir,
                           data_dir=data_dir, device=device, progress=None, log=console.print)  # fmt: skip
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    written = write_pruning_study(result, output)
    work = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.unit_seconds.items())
    console.print(f"time: {wall:.0f} s wall, {cpu:.0f} s CPU (this command and its local workers); "
                  f"recorded work of the units: {work}")  # fmt: skip
    console.print(f"wrote {len(written)} files under {output}; results store {path}")


def _cpu_seconds() -> float:
    # User + system time of this process and of its finished children (a local pool's workers
    # are waited for when the executor closes); Ray's workers are not children.
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
