"""``layer-sim dynamics run|sweep|snapshots|correlations``: the report's learning-rate study (S2), its
snapshots, and Canatar & Pehlevan's correlation table."""

from __future__ import annotations

import os
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
    store_path,
    sweep_options,
    writable_dir,
)
from layer_sim.errors import ConfigError

__all__ = ["app", "SUMMARY", "EXAMPLE"]

SUMMARY = "Kernel-target alignment while MLPs learn MNIST digit pairs (the report's study, S2)."
EXAMPLE = "Example: layer-sim dynamics sweep --output results/dynamics"
RUN_EXAMPLE = "Example: layer-sim dynamics run --pair 2 7 --lr 0.1 --readout-lr 0.001 --seeds 0-2 --output runs/27"
SWEEP_EXAMPLE = EXAMPLE
SNAPSHOTS_EXAMPLE = "Example: layer-sim dynamics snapshots runs/27"
CORRELATIONS_EXAMPLE = "Example: layer-sim dynamics correlations --output results/correlations"

app = typer.Typer(name="dynamics", help=SUMMARY, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode=None, epilog=EXAMPLE,
                  context_settings={"max_content_width": 100})  # fmt: skip


@app.callback()
def _dynamics() -> None:
    """Kernel-target alignment while MLPs learn MNIST digit pairs (the report's study, S2).

    Every run of a configuration and seed is a unit stored in the results store (default
    OUTPUT/results.sqlite) as soon as it finishes; running the same command again skips them, so
    an interrupted command resumes.
    """


Protocol = Annotated[str, typer.Option("--protocol", help="report: S2's protocol exactly (784-2000-2 ReLU, "
                                       "nn.MSELoss on one-hot, plain SGD, batch 200, pixels in [0, 1]).")]
Epochs = Annotated[Optional[int], typer.Option("--epochs", help="Epochs per run (default 10).")]
SweepEpochs = Annotated[Optional[int], typer.Option("--epochs", help="Epochs per run (default 10; 3000 with --full).")]
SnapshotEvery = Annotated[int, typer.Option("--snapshot-every", help="Save the weights at initialisation and every "
                                            "K epochs (0: never), for `dynamics snapshots`.")]
Every = Annotated[int, typer.Option("--every", help="Record the batch alignment after every N-th step (1: all, as S2).")]
ProbeSize = Annotated[int, typer.Option("--probe-size", help="Examples of each probe set for CKA(Train), CKA(Test).")]
ProbeEvery = Annotated[Optional[int], typer.Option("--probe-every", help="Probe every N epochs (default 1).")]
SweepProbeEvery = Annotated[Optional[int], typer.Option("--probe-every", help="Probe every N epochs (default 1; 10 with "
                                                        "--full).")]
LimitTrain = Annotated[Optional[int], typer.Option("--limit-train", help="Train on the first N images of the pair.",
                                                  hidden=True)]  # fmt: skip


def _set_data_dir(data_dir: Path | None) -> None:
    # Units find MNIST through the settings (LAYER_SIM_DATA), in this process and in any worker.
    if data_dir is not None:
        from layer_sim import settings

        os.environ[settings.DATA_ENV] = str(data_dir)


def _fields(every, probe_size, probe_every, snapshot_every, limit_train) -> dict:
    fields = {"every": every, "probe_size": probe_size, "snapshot_every": snapshot_every, "limit_train": limit_train}
    if probe_every is not None:
        fields["probe_every"] = probe_every
    return fields


def _print_finals(console, result, title: str) -> None:
    from rich.table import Table

    from layer_sim.report.dynamics import final_records

    table = Table(title=title)
    for col in ("pair", "lr/readout", "train loss", "test acc.", "batch CKA", "CKA(Test)"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in final_records(result):
        def cell(name, digits=3):
            v, s = r.get(name), r.get(f"{name} std")
            return "—" if v is None else (f"{v:.{digits}f}" + ("" if s is None else f"±{s:.{digits}f}"))

        table.add_row(r["pair"], f"{r['lr']:g}/{r['readout_lr']:g}", cell("train_loss"), cell("test_accuracy"),
                      cell("batch_alignment"), cell("test_alignment"))
    console.print(table)


@app.command("run", epilog=RUN_EXAMPLE)
@sweep_options
def run_command(
    ctx: typer.Context,
    output: Annotated[Path, output_option("Directory for epochs.csv, history.csv.gz, final.*, curves-<a>-<b>.png "
                                          "and the results store.")],
    protocol: Protocol = "report",
    pair: Annotated[tuple[int, int], typer.Option("--pair", help="The two digits; the first is label 0.")] = (0, 1),
    lr: Annotated[float, typer.Option("--lr", help="Learning rate of the hidden layer.")] = 0.1,
    readout_lr: Annotated[float, typer.Option("--readout-lr", help="Learning rate of the readout.")] = 0.1,
    epochs: Epochs = None,
    seeds: Seeds = "0-2",
    snapshot_every: SnapshotEvery = 0,
    every: Every = 1,
    probe_size: ProbeSize = 2000,
    probe_every: ProbeEvery = None,
    device: Device = None,
    data_dir: DataDir = None,
    sweep: SweepOptions = SWEEP_DEFAULTS,
    limit_train: LimitTrain = None,
) -> None:
    """Train one configuration (digit pair, learning rate, readout learning rate) from several seeds.

    Records after every step the alignment (linear CKA) of the batch's hidden features with its
    one-hot targets, per epoch CKA(Train) and CKA(Test) on fixed probe sets; writes per-epoch and
    full histories, the final values and the curves (mean over seeds with a ± 1 std band).
    """
    writable_dir(output)
    from rich.console import Console

    from layer_sim.experiments.learning_dynamics import DEFAULT_SWEEP_EPOCHS, PairRun
    from layer_sim.report.dynamics import write_study

    _set_data_dir(data_dir)
    fields = _fields(every, probe_size, probe_every, snapshot_every, limit_train)
    runs = [PairRun(pair=pair, lr=lr, readout_lr=readout_lr, seed=s, protocol=protocol,
                    epochs=DEFAULT_SWEEP_EPOCHS if epochs is None else epochs, **fields) for s in parse_seeds(seeds)]
    console = Console()
    result = _study(runs, output, sweep, device, console, command_line(ctx))
    written = write_study(result, output)
    _print_finals(console, result, f"MNIST [{pair[0]} {pair[1]}], protocol {protocol}: epoch {runs[0].epochs}, "
                                           f"mean ± std over {len(runs)} seeds")
    console.print(f"wrote {len(written)} files under {output}")


@app.command("sweep", epilog=SWEEP_EXAMPLE)
@sweep_options
def sweep_command(
    ctx: typer.Context,
    output: Annotated[Path, output_option("Directory for epochs.csv, history.csv.gz, final.*, figures and the "
                                          "results store.")],
    pairs: Annotated[str, typer.Option("--pairs", help="Digit pairs, e.g. 0-1,2-7,4-6,8-9.")] = "0-1,2-7,4-6,8-9",
    rates: Annotated[str, typer.Option("--rates", help="(learning rate : readout learning rate) pairs; default "
                                       "the report's.")] = "0.9:0.09,0.2:0.1,0.1:0.1,0.1:0.01,0.01:0.001",
    seeds: Seeds = "0-2",
    epochs: SweepEpochs = None,
    full: Annotated[bool, typer.Option("--full", help="S2's 3000 epochs, probes every 10, snapshots every 4 "
                                       "(a bigger machine or a cluster).")] = False,
    snapshot_every: Annotated[Optional[int], typer.Option("--snapshot-every", help="Save the weights every K "
                                                          "epochs (default 0; 4 with --full).")] = None,
    every: Every = 1,
    probe_size: ProbeSize = 2000,
    probe_every: SweepProbeEvery = None,
    device: Device = None,
    data_dir: DataDir = None,
    sweep: SweepOptions = SWEEP_DEFAULTS,
    limit_train: LimitTrain = None,
) -> None:
    """The report's grid: digit pairs x (learning rate, readout learning rate) x seeds.

    Default: pairs [0 1], [2 7], [4 6], [8 9]; the rates of the report (0.9/0.09, 0.2/0.1,
    0.1/0.01, 0.01/0.001) and the equal rates of S2's public record (0.1/0.1); seeds 0-2; 10
    epochs (S2's first ten). Writes the curves per pair, the final alignment per layer and the
    table of final values.
    """
    writable_dir(output)
    from rich.console import Console

    from layer_sim.experiments.learning_dynamics import sweep_runs
    from layer_sim.report.dynamics import write_study

    _set_data_dir(data_dir)
    fields = _fields(every, probe_size, probe_every, 0, limit_train)
    if snapshot_every is not None:
        fields["snapshot_every"] = snapshot_every
    elif full:
        del fields["snapshot_every"]
    runs = sweep_runs(pairs=_parse_pairs(pairs), rates=_parse_rates(rates), seeds=parse_seeds(seeds), epochs=epochs,
                      full=full, **fields)  # fmt: skip
    console = Console()
    console.print(f"{len(runs)} runs ({runs[0].epochs} epochs each) under {output}")
    result = _study(runs, output, sweep, device, console, command_line(ctx))
    written = write_study(result, output)
    _print_finals(console, result, f"Epoch {runs[0].epochs}, mean ± std over seeds")
    console.print(f"wrote {len(written)} files under {output}")


@app.command("snapshots", epilog=SNAPSHOTS_EXAMPLE)
def snapshots_command(
    directory: Annotated[Path, typer.Argument(help="Output directory of `dynamics run` or `dynamics sweep` with "
                                              "--snapshot-every.", exists=True, file_okay=False)],
    store: Annotated[Optional[Path], typer.Option("--store", help="Results store of those runs (default "
                                                  "DIRECTORY/results.sqlite).")] = None,
    device: Device = None,
    data_dir: DataDir = None,
) -> None:
    """Alignment of every saved snapshot on the whole training subset (S2's 2023 cka_calc, correctly centred).

    Writes DIRECTORY/snapshots.csv with pair, lr, readout_lr, seed, epoch, layer, value (linear
    CKA of each layer's features over all training images of the run with their one-hot targets)
    and DIRECTORY/snapshots.png.
    """
    writable_dir(directory, option="DIRECTORY")
    from rich.console import Console

    from layer_sim.experiments.learning_dynamics import snapshot_alignment
    from layer_sim.report.dynamics import write_snapshots

    _set_data_dir(data_dir)
    console = Console()
    rows = snapshot_alignment(store_path(store, directory), device=device, progress=None, log=console.print)
    written = write_snapshots(rows, directory)
    console.print(f"{len(rows)} values; wrote {', '.join(str(p) for p in written)}")


@app.command("correlations", epilog=CORRELATIONS_EXAMPLE)
@sweep_options
def correlations_command(
    ctx: typer.Context,
    output: Annotated[Path, output_option("Directory for table.md, correlations.*, runs.*, heatmap.png and the "
                                          "results store.")],
    full: Annotated[bool, typer.Option("--full", help="Two replicates of the design (216 runs), 10 epochs on all "
                                       "60,000 training images.")] = False,
    replicates: Annotated[Optional[int], typer.Option("--replicates", help="Replicates of the factorial design "
                                                      "(default 1; 2 with --full).")] = None,
    runs: Annotated[Optional[int], typer.Option("--runs", help="A random design: this many runs drawn from the "
                                                "factorial (default: all of it).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs per run (default 5; 10 with --full).")] = None,
    probe_size: Annotated[int, typer.Option("--probe-size", help="Training and test images of the CKA probes.")] = 5000,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples of each interval.")] = 2000,
    device: Device = None,
    data_dir: DataDir = None,
    sweep: SweepOptions = SWEEP_DEFAULTS,
    limit_train: LimitTrain = None,
) -> None:
    """Canatar & Pehlevan's (2022) Table I on MNIST MLPs: Pearson r of hyperparameters and outcomes with outcomes.

    Trains 784-256-256-256-10 MLPs over skip connections {off, on} x augmentation {off, shifts of
    2 px} x batch size {32, 128, 512} x learning rate {0.01, 0.03, 0.1} x momentum {0, 0.5, 0.9}
    (108 runs, 5 epochs on 20,000 images), then CKA(Train) and CKA(Test) of every layer with the
    targets; writes r with p-values and 95 % bootstrap intervals beside the report's values.
    """
    writable_dir(output)
    from rich.console import Console

    from layer_sim.experiments.correlations import correlation_design, correlation_study
    from layer_sim.report.correlations import table_markdown, write_correlations

    _set_data_dir(data_dir)
    kw = {} if limit_train is None else {"limit_train": limit_train}
    design = correlation_design(full=full, replicates=replicates, epochs=epochs, probe_size=probe_size, runs=runs, **kw)
    console = Console()
    console.print(f"{len(design)} runs ({design[0].epochs} epochs each) under {output}")
    executor = sweep.executor()
    result = correlation_study(design, sweep.store_for(output), executor, n_boot=n_boot, command=command_line(ctx),
                               device=device or "cpu", progress=None, log=console.print)  # fmt: skip
    written = write_correlations(result, output)
    typer.echo(table_markdown(result))
    console.print(f"wrote {len(written)} files under {output}")


def _study(runs, output, sweep, device, console, command):
    from layer_sim.experiments.learning_dynamics import study

    executor = sweep.executor()
    # run_sweep logs each failed attempt and the summary line ("N units: d done, s skipped ...").
    return study(runs, sweep.store_for(output), executor, command=command, device=device or "cpu", progress=None,
                 log=console.print)  # fmt: skip


def _parse_pairs(text: str) -> list[tuple[int, int]]:
    """``"0-1,2-7"`` -> ``[(0, 1), (2, 7)]``."""
    out = []
    for part in text.replace(" ", "").split(","):
        try:
            a, b = part.split("-")
            out.append((int(a), int(b)))
        except ValueError:
            raise ConfigError(f"--pairs: cannot parse {part!r} in {text!r}; use digit pairs like 0-1,2-7") from None
    return out


def _parse_rates(text: str) -> list[tuple[float, float]]:
    """``"0.1:0.01,0.2:0.1"`` -> ``[(0.1, 0.01), (0.2, 0.1)]``."""
    out = []
    for part in text.replace(" ", "").split(","):
        try:
            lr, readout_lr = part.split(":")
            out.append((float(lr), float(readout_lr)))
        except ValueError:
            raise ConfigError(f"--rates: cannot parse {part!r} in {text!r}; use lr:readout_lr pairs like "
                              "0.1:0.01,0.2:0.1") from None
    return out
