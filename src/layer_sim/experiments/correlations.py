r"""Canatar & Pehlevan's (2022) Table I analogue: how hyperparameters and outcomes correlate with alignment.

MLPs ``784-256-256-256-10`` (ReLU, cross-entropy) are trained on MNIST over a full factorial design
of skip connections {off, on}, augmentation {off, on} (random shifts of up to 2 pixels, the
trainer's ``shift``), batch size {32, 128, 512}, learning rate {0.01, 0.03, 0.1} and momentum
{0, 0.5, 0.9} (plain SGD otherwise: constant rate, no weight decay), one seed per run. After
training, linear CKA of every hidden layer with the one-hot targets is computed exactly on fixed
probe sets of training and test images (CKA(Train), CKA(Test)); "CKA" is the last hidden layer's,
"Avg. CKA" the mean over the hidden layers. The table is the Pearson correlation of every
hyperparameter and outcome with every outcome over the runs, with p-values and 95 % bootstrap
intervals (:func:`layer_sim.analysis.correlation.correlation_table`).

The design is orthogonal: hyperparameters are uncorrelated with each other by construction.
Hyperparameters enter the correlations as their values (skip and augmentation as 0/1; batch size,
learning rate and momentum as numbers, not logarithms), as in the paper's table as the report
quotes it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from layer_sim._options import Flag, Int, Maybe, Real, check_options, strict_signature
from layer_sim.errors import ConfigError, UnknownNameError
from layer_sim.experiments.driver import Experiment, done_runs, register_experiment, run_experiment
from layer_sim.runs import Unit, UnitResult, unit_kind

__all__ = [
    "CORRELATION_KIND",
    "LEVELS",
    "WIDTHS",
    "ROWS",
    "COLUMNS",
    "REPORT_TABLE_I",
    "CorrelationRun",
    "CorrelationResult",
    "correlation_design",
    "correlation_unit",
    "correlation_study",
    "NAME",
    "CorrelationSpec",
    "plan",
    "collect",
    "CORRELATIONS",
]

#: The unit kind of one :class:`CorrelationRun`.
CORRELATION_KIND = "dynamics.correlation"
#: The levels of each hyperparameter in the design.
LEVELS: dict[str, tuple] = {
    "skip": (False, True),
    "shift": (0, 2),
    "batch_size": (32, 128, 512),
    "lr": (0.01, 0.03, 0.1),
    "momentum": (0.0, 0.5, 0.9),
}
#: The network of every run (three equal hidden layers, so that skip connections apply to two).
WIDTHS: tuple[int, ...] = (784, 256, 256, 256, 10)

#: Table I's rows: (label, variable).
ROWS: tuple[tuple[str, str], ...] = (
    ("Skip", "skip"),
    ("Aug.", "augmentation"),
    ("Batch Size", "batch_size"),
    ("LR", "lr"),
    ("Momentum", "momentum"),
    ("Loss", "loss"),
    ("Acc.", "test_accuracy"),
    ("CKA (Test)", "cka_test"),
    ("CKA (Train)", "cka_train"),
    ("Avg. CKA (Test)", "avg_cka_test"),
    ("Avg. CKA (Train)", "avg_cka_train"),
)
#: Table I's columns: (label, variable).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("Loss", "loss"),
    ("Test Acc.", "test_accuracy"),
    ("CKA (Test)", "cka_test"),
    ("CKA (Train)", "cka_train"),
)
_TABLE_I = """\
Skip             0.097 -0.024 -0.026 -0.024
Aug.             0.335  0.806  0.529  0.162
Batch Size      -0.039 -0.247 -0.181 -0.045
LR              -0.078  0.163 -0.035 -0.263
Momentum         0.099  0.448  0.823  0.936
Loss             1.000  0.384  0.366  0.253
Acc.             0.384  1.000  0.850  0.528
CKA (Test)       0.366  0.850  1.000  0.870
CKA (Train)      0.253  0.528  0.870  1.000
Avg. CKA (Test)  0.279  0.920  0.944  0.747
Avg. CKA (Train) 0.221  0.828  0.930  0.837"""
#: Canatar & Pehlevan's Table I as the report (``shared/reference/report-2022-11-18.txt``) quotes it:
#: ``{(row label, column label): r}``.
REPORT_TABLE_I: dict[tuple[str, str], float] = {
    (" ".join(line.split()[:-4]), col): float(v)
    for line in _TABLE_I.splitlines()
    for col, v in zip((c for c, _ in COLUMNS), line.split()[-4:])
}

_DECLARED = {
    "skip": Flag(),
    "shift": Int(0),
    "batch_size": Int(1),
    "lr": Real(0, None, low_open=True),
    "momentum": Real(0, 1, high_open=True),
    "seed": Int(0),
    "epochs": Int(1),
    "limit_train": Maybe(Int(1)),
    "probe_size": Int(2),
}


@strict_signature
@dataclass(frozen=True)
class CorrelationRun:
    """One network of the design: its hyperparameters, seed and training length (a unit spec).

    Examples
    --------
    >>> run = CorrelationRun(skip=True, shift=2, batch_size=128, lr=0.03, momentum=0.9, seed=4)
    >>> run.variables()
    {'skip': 1.0, 'augmentation': 1.0, 'batch_size': 128.0, 'lr': 0.03, 'momentum': 0.9}
    """

    skip: bool
    shift: int
    batch_size: int
    lr: float
    momentum: float
    seed: int
    epochs: int = 5
    limit_train: int | None = 20000
    probe_size: int = 5000

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in check_options("CorrelationRun", _DECLARED, values).items():
            object.__setattr__(self, name, value)

    def to_spec(self) -> dict[str, Any]:
        """The JSON object naming this run."""
        return dataclasses.asdict(self)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> CorrelationRun:
        """Inverse of :meth:`to_spec`."""
        if not isinstance(spec, dict):
            raise ConfigError(f"CorrelationRun.from_spec: expected a dict, got {type(spec).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(spec) - set(names))
        if unknown:
            raise UnknownNameError(f"CorrelationRun.from_spec: unknown field(s) {unknown}; valid: {names}")
        return cls(**spec)

    def variables(self) -> dict[str, float]:
        """The hyperparameters as the numbers the correlations use (skip and augmentation as 0/1)."""
        return {"skip": float(self.skip), "augmentation": float(self.shift > 0), "batch_size": float(self.batch_size),
                "lr": self.lr, "momentum": self.momentum}  # fmt: skip


@strict_signature
def correlation_design(*, full: bool = False, replicates: int | None = None, epochs: int | None = None,
                       limit_train: int | None | str = "default", probe_size: int = 5000,
                       runs: int | None = None) -> list[CorrelationRun]:  # fmt: skip
    """The full factorial design over :data:`LEVELS`, ``replicates`` times, run ``k`` with seed ``k``.

    Default: one replicate (108 runs) of 5 epochs on the first 20,000 training images. ``full``:
    two replicates (216 runs) of 10 epochs on all 60,000. ``runs``: a random design instead, that
    many runs drawn from the factorial without replacement (``random.Random(0).sample``).

    Examples
    --------
    >>> runs = correlation_design()
    >>> len(runs), runs[0], runs[-1].seed
    (108, CorrelationRun(skip=False, shift=0, batch_size=32, lr=0.01, momentum=0.0, seed=0, epochs=5, limit_train=20000, probe_size=5000), 107)
    """
    replicates = (2 if full else 1) if replicates is None else replicates
    epochs = (10 if full else 5) if epochs is None else epochs
    if limit_train == "default":
        limit_train = None if full else 20000
    check_options("correlation_design", {"replicates": Int(1), "runs": Maybe(Int(3))},
                  {"replicates": replicates, "runs": runs})
    grid = list(itertools.product(*LEVELS.values()))
    design = [CorrelationRun(**dict(zip(LEVELS, values)), seed=k, epochs=epochs, limit_train=limit_train,
                             probe_size=probe_size)
              for k, values in enumerate(grid * replicates)]  # fmt: skip
    if runs is not None:
        if runs > len(design):
            raise ConfigError(f"correlation_design: runs={runs} exceeds the {len(design)} runs of the design")
        design = sorted(random.Random(0).sample(design, runs), key=lambda r: r.seed)
    return design


@strict_signature
@unit_kind(CORRELATION_KIND)
def correlation_unit(spec: dict, context) -> UnitResult:
    """Unit function of :data:`CORRELATION_KIND`: train one network, then CKA of every layer on the probes.

    Metrics: ``loss`` (the last epoch's mean training loss, on the batches as trained, augmented
    when augmentation is on), ``test_accuracy``, ``cka_test``/``cka_train`` (last hidden layer),
    ``avg_cka_test``/``avg_cka_train`` (mean over hidden layers), ``test/<layer>``,
    ``train/<layer>`` for every recorded layer (the output included), ``seconds`` and ``cpu_seconds``
    (CPU time of the process during the unit, all threads).
    """
    import time

    from layer_sim.data import mnist_task
    from layer_sim.dynamics import AlignmentRecorder, probe_sets
    from layer_sim.models import MLP
    from layer_sim.training import Recipe, fit

    run = CorrelationRun.from_spec(spec)
    t0, cpu = time.perf_counter(), time.process_time()
    task = mnist_task(limit_train=run.limit_train)
    model = MLP(WIDTHS, skip=run.skip, seed=run.seed)
    recipe = Recipe(optimizer="sgd", lr=run.lr, momentum=run.momentum, weight_decay=0.0, batch_size=run.batch_size,
                    epochs=run.epochs, schedule="constant", warmup_epochs=0.0, shift=run.shift)  # fmt: skip
    result = fit(model, task, recipe, seed=run.seed, device=context.device, progress=False)  # the sweep has the bar
    recorder = AlignmentRecorder(probes=probe_sets(task, size=run.probe_size))
    steps = math.ceil(len(task.train[1]) / run.batch_size) * run.epochs
    recorder.record_probes(model, epoch=run.epochs, step=steps)
    values = {f"{r['split']}/{r['layer']}": r["value"] for r in recorder.history().to_dict("records")}
    hidden = model.layer_names
    metrics = {"loss": result.history[-1]["train_loss"], "test_accuracy": result.test_accuracy,
               "cka_test": values[f"test/{hidden[-1]}"], "cka_train": values[f"train/{hidden[-1]}"],
               "avg_cka_test": sum(values[f"test/{h}"] for h in hidden) / len(hidden),
               "avg_cka_train": sum(values[f"train/{h}"] for h in hidden) / len(hidden),
               **values, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu}  # fmt: skip
    return UnitResult(metrics=metrics, histories={"epochs": result.history})


@dataclass(frozen=True)
class CorrelationResult:
    """The runs of a correlation study with their outcomes, and the table (data only; views in
    ``layer_sim.report.correlations``).

    Attributes
    ----------
    runs : tuple of (CorrelationRun, dict)
        Each run with its metrics.
    table : tuple of dict
        :func:`~layer_sim.analysis.correlation.correlation_table` records for :data:`ROWS` ×
        :data:`COLUMNS` (variables), each with its ``row_label``, ``col_label`` and the report's
        value ``report_r``.
    summary : SweepSummary
    """

    runs: tuple[tuple[CorrelationRun, dict], ...]
    table: tuple[dict, ...]
    summary: Any

    def run_rows(self) -> list[dict]:
        """One row per run: its hyperparameters, seed and every metric."""
        return [{**dataclasses.asdict(run), **metrics} for run, metrics in self.runs]


#: The correlation study's name in the experiment registry and the results store.
NAME = "dynamics-correlations"


@strict_signature
@dataclass(frozen=True)
class CorrelationSpec:
    """What a correlation study runs: its :class:`CorrelationRun` s, and the bootstrap of its intervals.

    Examples
    --------
    >>> spec = CorrelationSpec(tuple(correlation_design(runs=4)), n_boot=500)
    >>> len(spec.runs), CorrelationSpec.from_dict(spec.to_dict()) == spec
    (4, True)
    """

    runs: tuple[CorrelationRun, ...]
    n_boot: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        runs = self.runs
        if isinstance(runs, (str, bytes, dict)) or not isinstance(runs, Sequence) or len(runs) < 3 \
                or not all(isinstance(r, CorrelationRun) for r in runs):  # fmt: skip
            raise ConfigError("correlation_study: runs must be a list of at least 3 CorrelationRun")
        object.__setattr__(self, "runs", tuple(runs))
        check_options("CorrelationSpec", {"n_boot": Int(1), "seed": Int(0)}, {"n_boot": self.n_boot, "seed": self.seed})

    def to_dict(self) -> dict:
        return {"runs": [r.to_spec() for r in self.runs], "n_boot": self.n_boot, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> CorrelationSpec:
        if not isinstance(d, dict) or set(d) != {"runs", "n_boot", "seed"}:
            raise ConfigError(f"CorrelationSpec.from_dict: unexpected keys in {d!r}")
        return cls(tuple(CorrelationRun.from_spec(r) for r in d["runs"]), d["n_boot"], d["seed"])


@strict_signature
def plan(spec: CorrelationSpec) -> list[list[Unit]]:
    """One stage: a :data:`CORRELATION_KIND` unit per run."""
    return [[Unit(CORRELATION_KIND, r.to_spec()) for r in spec.runs]]


@strict_signature
def collect(store, spec: CorrelationSpec) -> CorrelationResult:
    """The runs' outcomes read back from ``store`` and the correlation table over them (``summary`` None).

    Raises
    ------
    IncompleteError
        Some run is not done in the store.
    """
    from layer_sim.analysis.correlation import correlation_table

    (units,) = plan(spec)
    records = done_runs(store, units, what="correlation study")
    pairs = tuple((run, dict(rec.metrics)) for run, rec in zip(spec.runs, records))
    columns = {name: [] for _, name in ROWS}
    for run, metrics in pairs:
        row = {**run.variables(), **metrics}
        for name in columns:
            columns[name].append(row[name])
    table = correlation_table(columns, [v for _, v in ROWS], [v for _, v in COLUMNS], n_boot=spec.n_boot,
                              seed=spec.seed)  # fmt: skip
    row_labels = {v: k for k, v in ROWS}
    col_labels = {v: k for k, v in COLUMNS}
    for rec in table:
        rec["row_label"], rec["col_label"] = row_labels[rec["row"]], col_labels[rec["col"]]
        rec["report_r"] = REPORT_TABLE_I[(rec["row_label"], rec["col_label"])]
    return CorrelationResult(pairs, tuple(table), None)


#: The correlation study as a registered experiment (what ``layer-sim report`` collects and renders).
CORRELATIONS = register_experiment(Experiment(NAME, CorrelationSpec.from_dict, plan, collect))


@strict_signature
def correlation_study(runs: Sequence[CorrelationRun], store, executor=None, *, n_boot: int = 2000, seed: int = 0,
                      command: Sequence[str] | None = None, device: str = "cpu", progress: bool | None = None,
                      log: Callable[[str], Any] | None = None) -> CorrelationResult:  # fmt: skip
    """Train every run not yet in ``store`` as the experiment :data:`NAME` (resumable, any executor), then the table.

    Raises
    ------
    UnitsFailedError
        A run failed in every attempt (its error is in the store; calling again retries it).
    """
    from layer_sim.store import Store

    spec = CorrelationSpec(runs, n_boot, seed)
    (summary,) = run_experiment(CORRELATIONS, spec, store, executor, command=command, device=device,
                                progress=progress, log=log)  # fmt: skip
    path = store.path if hasattr(store, "path") else store
    with Store(path) as db:
        return dataclasses.replace(collect(db, spec), summary=summary)
