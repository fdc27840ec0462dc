"""``layer-sim pruning-study``: are pruned LeNet-5 layers still similar to the complete network's?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from layer_sim.cli._shared import CacheDir, DataDir, Device, Seeds, output_option, parse_seeds, writable_dir
from layer_sim.cli._shared import (
    DEFAULT_BACKEND,
    DEFAULT_WORKERS,
    BackendOption,
    RayAddressOption,
    StoreOption,
    WorkersOption,
    store_path,
)

__all__ = ["EXAMPLE", "SUMMARY", "pruning_study_command"]

SUMMARY = "IMP-pruned vs complete LeNet-5 on MNIST, layer by layer, beside the seed noise floor."
EXAMPLE = "Example: layer-sim pruning-study --output results/pruning"


def pruning_study_command(
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
    store: StoreOption = None,
    workers: WorkersOption = DEFAULT_WORKERS,
    backend: BackendOption = DEFAULT_BACKEND,
    ray_address: RayAddressOption = None,
    limit_train: Annotated[Optional[int], typer.Option("--limit-train", help="Train on the first N examples only (quick runs).", hidden=True)] = None,
) -> None:
    """Train LeNet-5 on MNIST with the original layer_sim's recipe, prune it by IMP with learning-rate rewinding, and compare every layer of each pruned network with its complete network (linear CKA, NBS if available, mean CCA after SVD to 99 %, PWCCA), beside the similarity of two complete networks from different seeds.

    The study is a sweep of units (one IMP chain per seed, then one comparison per pair of networks) recorded in a results store: a rerun skips finished units, networks are cached and an interrupted training resumes from its last epoch, so a second run computes nothing.
    """
    seed_list = parse_seeds(seeds)
    writable_dir(output)
    from rich.console import Console

    from layer_sim.experiments.pruning import PruningStudySpec, pruning_study
    from layer_sim.report.pruning import write_pruning_study
    from layer_sim.runs import make_executor

    if epochs is None:
        epochs = 15 if full else 5
    spec = PruningStudySpec(seeds=tuple(seed_list), epochs=epochs, iterations=iterations, rate=rate,
                            examples=examples, cca_layout=cca_layout, limit_train=limit_train)  # fmt: skip
    console = Console()
    executor = make_executor(workers=workers, backend=backend, ray_address=ray_address)
    result = pruning_study(spec, store=store_path(store, output), executor=executor, cache_dir=cache_dir,
                           data_dir=data_dir, device=device, progress=None, log=console.print)  # fmt: skip
    written = write_pruning_study(result, output)
    if result.missing_measures:
        console.print(f"not computed (not in this build's registry): {', '.join(result.missing_measures)}")
    console.print(f"time: {result.seconds:.0f} s wall, {result.cpu_seconds:.0f} s CPU")
    console.print(f"wrote {len(written)} files under {output}")
