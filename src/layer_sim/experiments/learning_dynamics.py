r"""The report's learning-rate study (S2): kernel–target alignment while a one-hidden-layer MLP learns a digit pair.

``--protocol report`` is S2's protocol (``shared/reference/seed-systems.md``) exactly: MNIST
restricted to two digits, pixels in [0, 1]; ``Linear(784, 2000) → ReLU → Linear(2000, 2)`` with
PyTorch's default ``nn.Linear`` initialisation; mean squared error against one-hot targets as
``nn.MSELoss()`` averages it; plain SGD (no momentum, no weight decay, constant rates) with one
rate for the hidden layer and one for the readout; batches of 200, reshuffled every epoch; after
every optimiser step the alignment of the batch's recomputed hidden features with its targets
(:class:`~layer_sim.dynamics.AlignmentRecorder`), averaged per epoch.

One configuration and seed is a :class:`PairRun`: a JSON spec, and the unit of work of a sweep.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from layer_sim._io import atomic_write
from layer_sim._options import Choice, Int, Maybe, Real, check_options, strict_signature
from layer_sim.errors import ConfigError, UnknownNameError
from layer_sim.experiments.driver import Experiment, done_runs, register_experiment, run_experiment
from layer_sim.runs import Unit, UnitResult, unit_kind

__all__ = [
    "PROTOCOLS",
    "REPORT_PAIRS",
    "REPORT_RATES",
    "REPORT_EPOCHS",
    "PairRun",
    "PairRunResult",
    "report_recipe",
    "report_model",
    "run_pair",
    "HIDDEN",
    "PAIR_KIND",
    "pair_unit",
    "sweep_runs",
    "StudyResult",
    "PairRecord",
    "study",
    "NAME",
    "S2_R01",
    "S2_R01_RUN",
    "DynamicsSpec",
    "plan",
    "collect",
    "DYNAMICS",
    "DEFAULT_SWEEP_EPOCHS",
    "FULL_EPOCHS_PROBE_EVERY",
    "snapshot_alignment",
    "SNAPSHOT_COLUMNS",
]

#: Protocols ``layer-sim dynamics run --protocol`` knows: ``"report"`` is S2's.
PROTOCOLS: tuple[str, ...] = ("report",)
#: The digit pairs of the report's figures.
REPORT_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (2, 7), (4, 6), (8, 9))
#: (hidden learning rate, readout learning rate) of the report's runs: the four of S2's
#: ``records/learning_rate_test`` (readout below the hidden rate) and the equal rates of its
#: public record ``records/different_lr_test/data/r01.json`` (0.1, 0.1).
REPORT_RATES: tuple[tuple[float, float], ...] = ((0.9, 0.09), (0.2, 0.1), (0.1, 0.1), (0.1, 0.01), (0.01, 0.001))
#: S2's training length.
REPORT_EPOCHS = 3000
#: S2's recorded batch alignment ("Centered Kernel Alignment", the mean over an epoch's batches) of its
#: public record ``records/different_lr_test/data/r01.json`` (glomerulus-lab/slow-feature-learning @
#: 0ec572b; pair [0 1], hidden 2000, batch 200, lr 0.1, readout lr 0.1, one unnamed seed), at some
#: of its first 100 epochs, rounded to 4 digits: ``{epoch: value}`` (it plateaus near 0.830 from epoch
#: ~400).
S2_R01: dict[int, float] = {1: 0.7818, 2: 0.7753, 3: 0.7707, 4: 0.7689, 5: 0.7688, 6: 0.7695, 8: 0.7689,
                            10: 0.7709, 15: 0.7753, 20: 0.7785, 30: 0.7849, 40: 0.7915, 50: 0.7961, 60: 0.8002,
                            70: 0.8038, 80: 0.8073, 90: 0.8099, 100: 0.8116}  # fmt: skip
#: S2's r01 protocol as :class:`PairRun` fields (the runs :func:`layer_sim.report.dynamics.s2_comparison` compares).
S2_R01_RUN: dict[str, Any] = {"pair": (0, 1), "lr": 0.1, "readout_lr": 0.1, "hidden": 2000, "batch_size": 200,
                              "protocol": "report", "limit_train": None, "every": 1}  # fmt: skip
#: The hidden layer of the report's network (what S2 records).
HIDDEN = "act1"

_DECLARED = {
    "protocol": Choice(*PROTOCOLS),
    "lr": Real(0, None, low_open=True),
    "readout_lr": Real(0, None, low_open=True),
    "seed": Int(0),
    "epochs": Int(1),
    "hidden": Int(1),
    "batch_size": Int(1),
    "every": Int(1),
    "probe_every": Int(1),
    "probe_size": Maybe(Int(2)),
    "limit_train": Maybe(Int(1)),
    "snapshot_every": Int(0),
}


@strict_signature
def report_recipe(lr: float, readout_lr: float, *, epochs: int = REPORT_EPOCHS, batch_size: int = 200):
    """S2's optimiser: plain SGD at ``lr`` (hidden layer) and ``readout_lr`` (readout), constant, batches of 200.

    Examples
    --------
    >>> r = report_recipe(0.1, 0.01, epochs=5)
    >>> r.momentum, r.weight_decay, r.schedule, r.warmup_epochs, r.readout_lr
    (0.0, 0.0, 'constant', 0.0, 0.01)
    """
    from layer_sim.training import Recipe

    return Recipe(optimizer="sgd", lr=lr, readout_lr=readout_lr, momentum=0.0, weight_decay=0.0,
                  batch_size=batch_size, epochs=epochs, schedule="constant", warmup_epochs=0.0, shift=0)  # fmt: skip


@strict_signature
def report_model(*, hidden: int = 2000, seed: int):
    """S2's network ``784 → hidden (ReLU) → 2``, drawn as ``nn.Linear`` draws its default initialisation.

    :class:`~layer_sim.models.MLP` draws every weight and bias from
    :math:`U(-1/\\sqrt{d_{in}}, 1/\\sqrt{d_{in}})`, layer by layer, weight before bias: the
    distribution (and draw order) of ``nn.Linear``'s ``reset_parameters``, from a private
    generator seeded ``seed``.
    """
    from layer_sim.models import MLP

    return MLP((784, hidden, 2), seed=seed)


@strict_signature
@dataclass(frozen=True)
class PairRun:
    """One configuration of the study with one seed: what a unit of a sweep trains.

    Attributes
    ----------
    pair : (int, int)
        The digits; the first is label 0.
    lr, readout_lr : float > 0
        Learning rate of the hidden layer and of the readout.
    seed : int >= 0
        Initial weights (``report_model(seed=...)``) and batch order (``fit(seed=...)``).
    epochs : int >= 1
    protocol : {"report"}
    hidden : int, default=2000
        Hidden width (S2: 2000; its later runs 1024 and 2048).
    batch_size : int, default=200
    every : int, default=1
        Record the batch alignment after every ``every``-th step (1: every step, as S2).
    probe_every : int, default=1
        CKA(Train) and CKA(Test) on the probe sets every ``probe_every`` epochs (and always
        at initialisation and after the last epoch).
    probe_size : int or None, default=2000
        Examples of each probe set (a fixed random subset of each split); None: whole splits.
    limit_train : int or None, default=None
        Train on the first ``limit_train`` images of the pair only (None: all, as S2).
    snapshot_every : int, default=0
        Save the weights at initialisation and every ``snapshot_every`` epochs (0: never).

    Examples
    --------
    >>> run = PairRun(pair=(2, 7), lr=0.1, readout_lr=0.001, seed=0, epochs=5)
    >>> run.label, PairRun.from_spec(run.to_spec()) == run
    ('[2 7] lr 0.1 / readout 0.001, seed 0', True)
    """

    pair: tuple[int, int]
    lr: float
    readout_lr: float
    seed: int
    epochs: int
    protocol: str = "report"
    hidden: int = 2000
    batch_size: int = 200
    every: int = 1
    probe_every: int = 1
    probe_size: int | None = 2000
    limit_train: int | None = None
    snapshot_every: int = 0

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "pair"}
        for name, value in check_options("PairRun", _DECLARED, values).items():
            object.__setattr__(self, name, value)
        pair = self.pair
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ConfigError(f"PairRun: pair must be two digits (a, b), got {pair!r}")
        a, b = (check_options("PairRun", {"pair": Int(0, 9)}, {"pair": d})["pair"] for d in pair)
        if a == b:
            raise ConfigError(f"PairRun: the two digits of pair must differ, got {list(pair)}")
        object.__setattr__(self, "pair", (a, b))

    def to_spec(self) -> dict[str, Any]:
        """The JSON object that names this run (the unit spec of a sweep)."""
        d = dataclasses.asdict(self)
        d["pair"] = list(self.pair)
        return d

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> PairRun:
        """Inverse of :meth:`to_spec`; unknown keys are an :class:`~layer_sim.errors.UnknownNameError`."""
        if not isinstance(spec, dict) or "pair" not in spec:
            raise ConfigError(f"PairRun.from_spec: expected a dict with a 'pair', got {spec!r}")
        unknown = sorted(set(spec) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UnknownNameError(f"PairRun.from_spec: unknown field(s) {unknown}; valid: "
                                   f"{[f.name for f in dataclasses.fields(cls)]}")
        return cls(**{**spec, "pair": tuple(spec["pair"])})

    @property
    def label(self) -> str:
        """``"[2 7] lr 0.1 / readout 0.01, seed 0"``."""
        return f"[{self.pair[0]} {self.pair[1]}] lr {self.lr:g} / readout {self.readout_lr:g}, seed {self.seed}"


@dataclass(frozen=True)
class PairRunResult:
    """What one :class:`PairRun` produced (data only; views are in ``layer_sim.report.dynamics``).

    Attributes
    ----------
    run : PairRun
    epochs : tuple of dict
        One row per epoch, epoch 0 being the initial network: ``epoch, step, train_loss,
        train_accuracy, test_loss, test_accuracy, batch_alignment, train_alignment,
        test_alignment`` and, per recorded layer, ``batch/<layer>``, ``train/<layer>``,
        ``test/<layer>``. ``batch_alignment`` is S2's recorded quantity, the mean over the epoch's
        batches of the hidden layer's alignment; ``train_alignment`` and ``test_alignment`` are
        the hidden layer's CKA(Train) and CKA(Test) on the probe sets (None where not probed).
        ``train_loss`` and ``train_accuracy`` are means over the epoch's batches as they were
        trained on (before each step); epoch 0 has only probe values.
    history : tuple of dict
        Every recorded value: ``step, epoch, layer, split, measure, value``.
    snapshots : tuple of (int, str)
        ``(epoch, path)`` of every saved snapshot.
    seconds, recorder_seconds, probe_seconds : float
        Wall time of the run, of the batch alignment and of the probes.
    """

    run: PairRun
    epochs: tuple[dict, ...]
    history: tuple[dict, ...]
    snapshots: tuple[tuple[int, str], ...]
    seconds: float
    recorder_seconds: float
    probe_seconds: float

    def final(self) -> dict[str, float]:
        """The last epoch's row, without None values."""
        return {k: v for k, v in self.epochs[-1].items() if v is not None}


class _Snapshots:
    """Callback: the weights after every ``every``-th epoch, written atomically to ``directory``."""

    def __init__(self, directory: Path, every: int) -> None:
        self.directory, self.every, self.saved = Path(directory), every, []

    def save(self, model, epoch: int) -> None:
        path = self.directory / f"epoch-{epoch:05d}.pt"
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        atomic_write(path, lambda fh: torch.save(state, fh))
        self.saved.append((epoch, str(path)))

    def on_epoch_end(self, state) -> None:
        if state.epoch % self.every == 0:
            self.save(state.model, state.epoch)


@strict_signature
def run_pair(run: PairRun, *, data_dir=None, device=None, snapshot_dir=None, task=None,
             progress: bool | None = None) -> PairRunResult:  # fmt: skip
    """Train one configuration with the alignment recorder; returns every epoch's values.

    The probe sets are a fixed random subset of ``run.probe_size`` examples of each split
    (generator seed 0, the same for every run); they are probed at initialisation (epoch 0),
    every ``run.probe_every`` epochs and after the last epoch.

    Parameters
    ----------
    run : PairRun
    data_dir : path-like or None
        MNIST directory (see :func:`~layer_sim.data.load_mnist`).
    device : str, torch.device or None
        Where to train (None: CPU).
    snapshot_dir : path-like or None
        Where snapshots go (``epoch-<k>.pt`` state dicts); needed when ``run.snapshot_every``.
    task : Task or None
        The pair's task if already loaded (sweeps reuse it); None loads it.
    progress : bool or None
        Progress bar of the training loop.

    Returns
    -------
    PairRunResult
    """
    from layer_sim.data import digit_pair_task
    from layer_sim.dynamics import AlignmentRecorder, probe_sets
    from layer_sim.training import fit

    if not isinstance(run, PairRun):
        raise ConfigError(f"run_pair: run must be a PairRun, got {type(run).__name__}")
    if run.snapshot_every and snapshot_dir is None:
        raise ConfigError("run_pair: snapshot_every needs snapshot_dir")
    t0 = time.perf_counter()
    if task is None:
        task = digit_pair_task(*run.pair, data_dir=data_dir, limit_train=run.limit_train)
    model = report_model(hidden=run.hidden, seed=run.seed)
    if device is not None:
        model.to(device)
    recorder = AlignmentRecorder(probes=probe_sets(task, size=run.probe_size), every=run.every,
                                 probe_every=run.probe_every)  # fmt: skip
    callbacks: list = [recorder]
    snapshots = None
    if run.snapshot_every:
        snapshots = _Snapshots(Path(snapshot_dir), run.snapshot_every)
        snapshots.save(model, 0)
        callbacks.append(snapshots)
    recorder.record_probes(model, epoch=0, step=0)
    fit(model, task, report_recipe(run.lr, run.readout_lr, epochs=run.epochs, batch_size=run.batch_size),
        seed=run.seed, device=device, callbacks=callbacks, progress=progress)  # fmt: skip
    if run.epochs % run.probe_every:  # the last epoch is always probed
        steps = math.ceil(len(task.train[1]) / run.batch_size) * run.epochs
        recorder.record_probes(model, epoch=run.epochs, step=steps)
    return PairRunResult(
        run=run,
        epochs=tuple(_epoch_rows(recorder.epochs())),
        history=tuple(recorder.history().to_dict("records")),
        snapshots=tuple(snapshots.saved) if snapshots else (),
        seconds=time.perf_counter() - t0,
        recorder_seconds=recorder.seconds,
        probe_seconds=recorder.probe_seconds,
    )


#: Columns of the per-epoch table that always come first, in this order.
EPOCH_COLUMNS = ("epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                 "batch_alignment", "train_alignment", "test_alignment")  # fmt: skip


def _epoch_rows(frame) -> list[dict]:
    rows = []
    for rec in frame.to_dict("records"):
        # The trainer's "lr" is the run's constant hidden rate: the run names it already.
        rec = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items() if k != "lr"}
        rec["batch_alignment"] = rec.get(f"batch/{HIDDEN}")
        rec["train_alignment"] = rec.get(f"train/{HIDDEN}")
        rec["test_alignment"] = rec.get(f"test/{HIDDEN}")
        rec["epoch"], rec["step"] = int(rec["epoch"]), int(rec["step"])
        rows.append({**{c: rec.get(c) for c in EPOCH_COLUMNS}, **{k: v for k, v in rec.items() if k not in EPOCH_COLUMNS}})
    return rows


def history_csv_gz(rows: Sequence[dict]) -> bytes:
    """``rows`` (the long history) as gzip-compressed CSV bytes, deterministic (no timestamp)."""
    import csv

    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=["step", "epoch", "layer", "split", "measure", "value"])
    writer.writeheader()
    writer.writerows(rows)
    return gzip.compress(text.getvalue().encode(), mtime=0)


LogFn = Callable[[str], Any]

# ----------------------------------------------------------------------------- units and sweeps

#: The unit kind of one :class:`PairRun`.
PAIR_KIND = "dynamics.pair"
#: Epochs of the default sweep: S2's first epochs, sized so that the default grid finishes in
#: about 20 minutes on 2 idle cores (see the README for the measured time).
DEFAULT_SWEEP_EPOCHS = 10
#: With ``full`` (S2's 3000 epochs), probes every this many epochs, snapshots every 4 (as S2).
FULL_EPOCHS_PROBE_EVERY = 10


@strict_signature
@unit_kind(PAIR_KIND)
def pair_unit(spec: dict, context) -> UnitResult:
    """Unit function of :data:`PAIR_KIND`: train ``PairRun.from_spec(spec)``, keep its epochs and artefacts.

    Artefacts (in ``context.output_dir``): ``history``, the long history of every value
    (``history.csv.gz``), and ``snapshot-<epoch>``, the snapshots (``snapshots/epoch-<k>.pt``).
    Metrics: the last epoch's values, the run's wall times and ``cpu_seconds`` (CPU time of the
    process during the unit, all threads). History ``"epochs"``: the rows of
    :attr:`PairRunResult.epochs`. MNIST is found through the settings (``$LAYER_SIM_DATA``), in
    the driver's process and in any worker.
    """
    run = PairRun.from_spec(spec)
    out = Path(context.output_dir)
    cpu = time.process_time()
    # No bar per unit: the sweep draws one for all units (and a pool's workers share the terminal).
    result = run_pair(run, device=context.device, snapshot_dir=out / "snapshots" if run.snapshot_every else None,
                      progress=False)  # fmt: skip
    payload = history_csv_gz(result.history)
    atomic_write(out / "history.csv.gz", lambda fh: fh.write(payload))
    artefacts = {"history": "history.csv.gz"}
    artefacts |= {f"snapshot-{epoch:05d}": str(Path(path).relative_to(out)) for epoch, path in result.snapshots}
    metrics = {k: float(v) for k, v in result.final().items() if isinstance(v, (int, float))}
    metrics |= {"seconds": result.seconds, "recorder_seconds": result.recorder_seconds,
                "probe_seconds": result.probe_seconds, "cpu_seconds": time.process_time() - cpu}  # fmt: skip
    return UnitResult(metrics=metrics, histories={"epochs": list(result.epochs)}, artefacts=artefacts)


@strict_signature
def sweep_runs(*, pairs: Sequence[Sequence[int]] = REPORT_PAIRS, rates: Sequence[Sequence[float]] = REPORT_RATES,
               seeds: Sequence[int] = (0, 1, 2), epochs: int | None = None, full: bool = False,
               **fields) -> list[PairRun]:  # fmt: skip
    """The grid pairs × (learning rate, readout learning rate) × seeds as :class:`PairRun` s.

    ``epochs`` defaults to :data:`DEFAULT_SWEEP_EPOCHS`, or S2's :data:`REPORT_EPOCHS` with
    ``full`` (which also probes every :data:`FULL_EPOCHS_PROBE_EVERY` epochs and keeps a snapshot
    every 4 epochs, as S2 did). Other ``fields`` of :class:`PairRun` apply to every run.

    Examples
    --------
    >>> runs = sweep_runs(pairs=[(2, 7)], rates=[(0.1, 0.01)], seeds=[0, 1], epochs=3)
    >>> [(r.pair, r.lr, r.readout_lr, r.seed, r.epochs) for r in runs]
    [((2, 7), 0.1, 0.01, 0, 3), ((2, 7), 0.1, 0.01, 1, 3)]
    """
    if full:
        fields = {"probe_every": FULL_EPOCHS_PROBE_EVERY, "snapshot_every": 4, **fields}
    epochs = (REPORT_EPOCHS if full else DEFAULT_SWEEP_EPOCHS) if epochs is None else epochs
    for name, value in (("pairs", pairs), ("rates", rates), ("seeds", seeds)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise ConfigError(f"sweep_runs: {name} must be a non-empty sequence, got {value!r}")
    for rate in rates:
        if isinstance(rate, (str, bytes)) or not isinstance(rate, Sequence) or len(rate) != 2:
            raise ConfigError(f"sweep_runs: each rate must be (learning rate, readout learning rate), got {rate!r}")
    return [PairRun(pair=tuple(pair), lr=lr, readout_lr=readout_lr, seed=seed, epochs=epochs, **fields)
            for pair in pairs for lr, readout_lr in rates for seed in seeds]  # fmt: skip


@dataclass(frozen=True)
class PairRecord:
    """One finished :class:`PairRun` as read back from the store: epochs rows, final metrics, artefact paths."""

    run: PairRun
    key: str
    epochs: tuple[dict, ...]
    metrics: dict[str, float]
    artefacts: dict[str, str]


@dataclass(frozen=True)
class StudyResult:
    """Every run of a study, in the order asked for, as stored (data only; views in ``report.dynamics``).

    ``summary`` is the :class:`~layer_sim.runs.SweepSummary` of the sweep that made it (what was
    trained now, what was already in the store).
    """

    records: tuple[PairRecord, ...]
    summary: Any

    def epoch_rows(self) -> list[dict]:
        """Every epochs row of every run, with the run's ``pair`` (``"a-b"``), ``lr``, ``readout_lr``, ``seed`` first."""
        return [{"pair": f"{r.run.pair[0]}-{r.run.pair[1]}", "lr": r.run.lr, "readout_lr": r.run.readout_lr,
                 "seed": r.run.seed, **row} for r in self.records for row in r.epochs]  # fmt: skip

    def epochs_frame(self):
        """:meth:`epoch_rows` as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.epoch_rows())


#: The study's name in the experiment registry and the results store (its report section's too).
NAME = "dynamics"


@strict_signature
@dataclass(frozen=True)
class DynamicsSpec:
    """What a dynamics experiment trains: its :class:`PairRun` s (one configuration's seeds, or a sweep's grid).

    Examples
    --------
    >>> spec = DynamicsSpec(tuple(sweep_runs(pairs=[(0, 1)], rates=[(0.1, 0.1)], seeds=[0, 1], epochs=3)))
    >>> len(spec.runs), DynamicsSpec.from_dict(spec.to_dict()) == spec
    (2, True)
    """

    runs: tuple[PairRun, ...]

    def __post_init__(self) -> None:
        runs = self.runs
        if isinstance(runs, (str, bytes, dict)) or not isinstance(runs, Sequence) or not runs \
                or not all(isinstance(r, PairRun) for r in runs):  # fmt: skip
            raise ConfigError(f"DynamicsSpec: runs must be a non-empty sequence of PairRun, got {runs!r}")
        object.__setattr__(self, "runs", tuple(runs))

    def to_dict(self) -> dict:
        return {"runs": [r.to_spec() for r in self.runs]}

    @classmethod
    def from_dict(cls, d: dict) -> DynamicsSpec:
        if not isinstance(d, dict) or set(d) != {"runs"}:
            raise ConfigError(f"DynamicsSpec.from_dict: expected {{'runs': [...]}}, got {d!r}")
        return cls(tuple(PairRun.from_spec(r) for r in d["runs"]))


@strict_signature
def plan(spec: DynamicsSpec) -> list[list[Unit]]:
    """One stage: a :data:`PAIR_KIND` unit per run (independent of each other)."""
    return [[Unit(PAIR_KIND, r.to_spec()) for r in spec.runs]]


@strict_signature
def collect(store, spec: DynamicsSpec) -> StudyResult:
    """Every run of ``spec`` read back from ``store`` (read only; ``summary`` None).

    Raises
    ------
    IncompleteError
        Some run is not done in the store (the message says how many, and to rerun).
    """
    (units,) = plan(spec)
    with store.snapshot():
        stored = done_runs(store, units, what="dynamics")
        records = []
        for run, rec in zip(spec.runs, stored):
            epochs = store.history(rec.key, "epochs").to_dict("records")
            epochs = tuple({k: _none_if_nan(v) for k, v in row.items()} for row in epochs)
            records.append(PairRecord(run, rec.key, epochs, dict(rec.metrics),
                                      {k: str(v) for k, v in rec.artefacts.items()}))  # fmt: skip
    return StudyResult(tuple(records), None)


#: The study as a registered experiment (what ``layer-sim report`` collects and renders).
DYNAMICS = register_experiment(Experiment(NAME, DynamicsSpec.from_dict, plan, collect))


@strict_signature
def study(runs: Sequence[PairRun], store, executor=None, *, command: Sequence[str] | None = None,
          device: str = "cpu", progress: bool | None = None, log: LogFn | None = None) -> StudyResult:  # fmt: skip
    """Run every :class:`PairRun` not yet done in the results ``store`` as the experiment :data:`NAME`, then read them all back.

    The runs are the stage of one :class:`DynamicsSpec` run by
    :func:`~layer_sim.experiments.run_experiment` (recorded in the store with ``command``, so
    ``layer-sim report`` renders it): each run is a unit of :data:`PAIR_KIND`, finished runs are
    never trained again, so the same call after an interruption (Ctrl-C, a crash, ``kill -9``)
    trains only what is missing, and ``executor`` (e.g. ``runs.make_executor(workers=2)``) spreads
    them over processes or a Ray cluster.

    Raises
    ------
    UnitsFailedError
        A run failed in every attempt (e.g. training diverged); the others are stored, the error
        of each failed run is in the store, and calling again retries only those.
    """
    from layer_sim.store import Store

    spec = DynamicsSpec(runs)
    (summary,) = run_experiment(DYNAMICS, spec, store, executor, command=command, device=device, progress=progress,
                                log=log)  # fmt: skip
    path = store.path if hasattr(store, "path") else store
    with Store(path) as db:
        return dataclasses.replace(collect(db, spec), summary=summary)


def _none_if_nan(v):
    return None if isinstance(v, float) and math.isnan(v) else v


# ----------------------------------------------------------------------------- snapshots

#: Columns of ``snapshots.csv``.
SNAPSHOT_COLUMNS = ("pair", "lr", "readout_lr", "seed", "epoch", "layer", "value")


@strict_signature
def snapshot_alignment(store, *, device=None, progress: bool | None = None, log: LogFn | None = None) -> list[dict]:
    """Linear CKA of every layer with the targets over the whole training subset, for every saved snapshot.

    S2's 2023 ``cka_calc``, with correct centring: for each snapshot of each finished run under
    the results ``store`` (runs made with ``snapshot_every``), the features of every training image of the run
    (the pair's training split, limited as the run was) and their one-hot targets, both centred
    over the examples (column means only), accumulated exactly batch by batch
    (:class:`~layer_sim.measures.StreamingLinearCKA` through the recorder's probes).

    Returns
    -------
    list of dict
        One row per (run, snapshot, layer) with :data:`SNAPSHOT_COLUMNS`; ``pair`` is ``"a-b"``.

    Raises
    ------
    ConfigError
        No finished run in ``store`` has snapshots.
    """
    from layer_sim._progress import progress_bar
    from layer_sim.data import digit_pair_task
    from layer_sim.dynamics import AlignmentRecorder

    from layer_sim.store import Store

    with Store(store) as db, db.snapshot():
        done = db.runs(kind=PAIR_KIND, status="done")
        artefacts = db.artefacts()
    records = [{"spec": json.loads(spec), "artefacts": {k: str(v) for k, v in artefacts.get(key, {}).items()}}
               for key, spec in zip(done.key, done.spec)]  # fmt: skip
    records = [rec for rec in records if any(k.startswith("snapshot-") for k in rec["artefacts"])]
    if not records:
        raise ConfigError(f"snapshot_alignment: no run in {store} has snapshots; train with --snapshot-every K "
                          "(snapshot_every=K)")
    total = sum(sum(k.startswith("snapshot-") for k in rec["artefacts"]) for rec in records)
    rows = []
    tasks: dict[tuple, Any] = {}
    with progress_bar(progress, total, "snapshots") as advance:
        for rec in records:
            run = PairRun.from_spec(rec["spec"])
            task_key = (run.pair, run.limit_train)
            if task_key not in tasks:
                tasks[task_key] = digit_pair_task(*run.pair, limit_train=run.limit_train)
            task = tasks[task_key]
            model = report_model(hidden=run.hidden, seed=run.seed)
            if device is not None:
                model.to(device)
            recorder = AlignmentRecorder(probes={"train": task.train})
            snaps = sorted((int(k.split("-", 1)[1]), path) for k, path in rec["artefacts"].items()
                           if k.startswith("snapshot-"))  # fmt: skip
            for epoch, path in snaps:
                model.load_state_dict(torch.load(path, map_location=model.fc1.weight.device, weights_only=True))
                recorder.record_probes(model, epoch=epoch, step=0)
                advance()
            for row in recorder.history().to_dict("records"):
                rows.append({"pair": f"{run.pair[0]}-{run.pair[1]}", "lr": run.lr, "readout_lr": run.readout_lr,
                             "seed": run.seed, "epoch": int(row["epoch"]), "layer": row["layer"],
                             "value": row["value"]})  # fmt: skip
            if log is not None:
                log(f"{run.label}: {len(snaps)} snapshots on {len(task.train[1])} training images")
    return sorted(rows, key=lambda r: (r["pair"], -r["lr"], -r["readout_lr"], r["seed"], r["epoch"]))
