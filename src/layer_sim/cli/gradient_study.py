"""``layer-sim gradient-study``: gradient CKA / NBS (Tang et al. 2020) against vanilla CKA on the sanity check's MLPs."""

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
    parse_seeds,
    sweep_options,
    writable_dir,
)
from layer_sim.errors import ConfigError

__all__ = ["EXAMPLE", "SUMMARY", "gradient_study_command"]

SUMMARY = "Gradient CKA/NBS vs vanilla CKA: layer identification and similarity through training."
EXAMPLE = "Example: layer-sim gradient-study --output results/gradients"


@sweep_options
def gradient_study_command(
    ctx: typer.Context,
    output: Annotated[Path, output_option("Directory for table.md|csv|json, heatmaps/, curves.png|csv and the results store.")],
    nets: Annotated[int, typer.Option("--nets", help="Networks (seeds 0..N-1) for layer identification.")] = 5,
    examples: Annotated[int, typer.Option("--examples", help="MNIST test images every index is computed on.")] = 1000,
    trajectory_seeds: Annotated[str, typer.Option("--trajectory-seeds", help="Seeds retrained with a checkpoint per epoch: a range 0-2 or a list 0,1.")] = "0-2",
    beta: Annotated[float, typer.Option("--beta", help="Tang et al.'s smoothing of q (not 1).")] = 0.5,
    sweep: SweepOptions = SWEEP_DEFAULTS,
    device: Device = None,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    widths: Annotated[Optional[str], typer.Option("--widths", help="Layer widths, e.g. 784,32,32,10 (quick runs).", hidden=True)] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Training epochs (quick runs).", hidden=True)] = None,
    limit_train: Annotated[Optional[int], typer.Option("--limit-train", help="Train on the first N examples only (quick runs).", hidden=True)] = None,
) -> None:
    """Gradient CKA and gradient NBS (Tang et al. 2020) against linear CKA, RBF CKA and NBS on the sanity check's MLPs.

    Runs Kornblith et al.'s layer identification for every index (jackknife SE) on the sanity check's networks (the same units and checkpoint cache: trained once for both), retrains a few seeds with a checkpoint per epoch and follows each layer's similarity to its final state and to another seed, vanilla vs gradient CKA. Every piece is a unit recorded in the results store as it finishes: a rerun skips what is done; layer-sim report renders the store.
    """
    seeds = tuple(parse_seeds(trajectory_seeds))
    writable_dir(output)
    from rich.console import Console

    from layer_sim.experiments.gradient_study import GradientStudySpec, run_gradient_study
    from layer_sim.report.gradient_study import write_gradient_study
    from layer_sim.training import DEFAULT_SPEC

    changes = {"widths": None if widths is None else _parse_widths(widths), "epochs": epochs,
               "limit_train": limit_train}
    network = DEFAULT_SPEC.replace(**{k: v for k, v in changes.items() if v is not None})
    spec = GradientStudySpec(network, nets=nets, examples=examples, trajectory_seeds=seeds, beta=beta)
    console = Console()
    executor = sweep.executor()
    path = sweep.store_for(output)
    result, _ = run_gradient_study(spec, path, executor, command=command_line(ctx), device=device, data_dir=data_dir,
                                   cache_dir=cache_dir, progress=None, log=console.print)  # fmt: skip
    written = write_gradient_study(result, output)
    console.print(f"Layer identification, {spec.nets} MLPs {list(spec.network.model.widths)} on {spec.examples} MNIST test images")
    for r in result.records():
        console.print(f"  {r['index']:<22} {r['accuracy']:6.1f} % ± {r['stderr']:.1f} (jackknife SE)")
    accs = [100 * a for a in result.test_accuracies]
    console.print(f"network test accuracy: mean {sum(accs) / len(accs):.2f}%, min {min(accs):.2f}%")
    console.print(f"wrote {len(written)} files under {output}; results store {path}")


def _parse_widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise ConfigError(f"--widths: cannot parse {text!r}; use integers separated by commas, e.g. 784,32,32,10") from None
