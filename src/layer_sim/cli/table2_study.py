"""``layer-sim table2-study``: why our Table 2 differs from Kornblith et al.'s (widths, examples per feature, CNN layouts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from layer_sim.cli._shared import (
    SWEEP_DEFAULTS,
    CacheDir,
    DataDir,
    Device,
    SweepOptions,
    output_option,
    sweep_options,
    writable_dir,
)
from layer_sim.errors import ConfigError

__all__ = ["EXAMPLE", "SUMMARY", "table2_study_command"]

SUMMARY = "Why our Table 2 differs from the paper's: layer widths, examples per feature, CNN layouts."
EXAMPLE = "Example: layer-sim table2-study --output results/table2 --workers 2"


def _int_or_none(option: str, value: str) -> int | None:
    if value.strip().lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{option}: expected an integer or 'none', got {value!r}") from None


@sweep_options
def table2_study_command(
    output: Annotated[Path, output_option("Directory for widths.*, examples.*, cnn.*, the figures and the results store.")],
    full: Annotated[bool, typer.Option("--full", help="10 networks, 3 width draws, 10 ratios n/p, RBF CKA and flattened maps everywhere, CNNs 5 epochs on all images.")] = False,
    nets: Annotated[Optional[int], typer.Option("--nets", help="Networks (seeds 0..N-1) per family (default 5; 10 with --full).")] = None,
    examples: Annotated[Optional[int], typer.Option("--examples", help="MNIST test images of the widths and CNN parts (default 2000).")] = None,
    cnns: Annotated[Optional[str], typer.Option("--cnns", help="CNNs of the CNN part: LeNet5 (default), Tiny10, LeNet5,Tiny10 (--full) or 'none'.")] = None,
    flatten_max_features: Annotated[Optional[str], typer.Option("--flatten-max-features", metavar="<int|none>", help="Flattened conv maps wider than this get the Gram-route indexes only (default 2048; 'none' with --full: every index).")] = None,
    device: Device = None,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    sweep: SweepOptions = SWEEP_DEFAULTS,
) -> None:
    """Kornblith et al.'s layer identification for every index of Table 2, one factor varied at a time: MLPs of equal, halving and random widths; n from 1.1 to 20 examples per feature of the widest layer; LeNet-5 and Tiny-10 with conv maps flattened, channels as neurons and spatially averaged.

    A command of its own rather than a flag of sanity-check: it has its own parts, options and outputs. Every identification is a unit in the results store (networks in the checkpoint cache, the equal-width MLPs being the sanity check's), so a rerun skips what is done and an interrupted run resumes.
    """
    from rich.console import Console

    from layer_sim.experiments.table2_study import Table2StudySpec, run_table2_study
    from layer_sim.report.table2_study import write_table2_study

    kinds = None if cnns is None else (() if cnns.strip() == "none" else tuple(k.strip() for k in cnns.split(",")))
    spec = Table2StudySpec.make(full=full, nets=nets, examples=examples, cnns=kinds)
    if flatten_max_features is not None:
        spec = dataclasses.replace(spec, flatten_max_features=_int_or_none("--flatten-max-features",
                                                                          flatten_max_features))
    writable_dir(output)
    console = Console()
    executor = sweep.executor()
    result = run_table2_study(spec, store=sweep.store_for(output), executor=executor, cache_dir=cache_dir,
                              data_dir=data_dir, device=device, progress=None, log=console.print)  # fmt: skip
    written = write_table2_study(result, output)
    for cell in result.part("widths"):
        if cell.row.measure in ("cca_rho", "pwcca", "linear_regression", "linear_cka"):
            se = cell.identification.stderr
            console.print(f"  {cell.family:<10} {cell.row.label:<22} {100 * cell.identification.accuracy:6.1f} %"
                          + ("" if se is None else f" ± {100 * se:.1f}"))
    if result.not_computed:
        console.print(f"{len(result.not_computed)} cells not computed (see not_computed.md)")
    console.print(f"wrote {len(written)} files under {output}")
