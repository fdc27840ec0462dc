"""Gradient CKA vs vanilla CKA on MNIST MLPs: layer identification and similarity through training.

Two questions about Tang et al.'s (2020) similarity with gradients, on the sanity check's
networks (:data:`~layer_sim.training.DEFAULT_SPEC`, seeds 0..N-1, the same checkpoint cache):

1. **Layer identification** (Kornblith et al. 2019's protocol, jackknife SE over networks) for
   gradient CKA and gradient NBS, each with the two objectives (the task's loss with the true
   labels, and Tang et al.'s label-free ``tang``), beside linear CKA, RBF CKA and NBS.
2. **Through training**: networks retrained from the same seeds with a checkpoint after every
   epoch (epoch 0 = initialisation); for each epoch and layer, the similarity to the same layer
   at the end of training (same seed) and to the same layer of another seed at the same epoch,
   with linear CKA and gradient CKA (both objectives).

The study is a registered experiment (:data:`GRADIENT_STUDY`, run by
:func:`~layer_sim.experiments.run_experiment`) in two stages. Stage 1: the N networks as the
sanity check trains them (one shared ``network.ensemble`` unit, see
:mod:`~layer_sim.experiments.networks`: with the same network and seeds it is the sanity check's
unit, the same key and the same checkpoint cache, so the two studies train them once), and one
trajectory unit per seed. Stage 2: one identification unit per index and one unit for the curves.
:func:`collect` reads the typed result back from the store (metrics, histories and the artefact
files it points to), never recomputing anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layer_sim._options import Int, Real, check_options, strict_signature
from layer_sim.analysis import LayerIdentification, SimilarityMatrix, layer_identification
from layer_sim.data.tasks import get_loss
from layer_sim.errors import ConfigError, DataError
from layer_sim.experiments.driver import Experiment, collect_experiment, done_runs, register_experiment, run_experiment
from layer_sim.experiments.networks import ensemble_unit, load_network
from layer_sim.measures import get
from layer_sim.representations import extract
from layer_sim.representations.objectives import Tang
from layer_sim.runs import Executor, SweepSummary, Unit, UnitContext, UnitResult, unit_kind
from layer_sim.store import Store
from layer_sim.training import DEFAULT_SPEC, NetworkSpec, fit, load_checkpoint, save_checkpoint

__all__ = [
    "Index",
    "INDEXES",
    "CURVE_INDEXES",
    "GradientStudySpec",
    "GradientStudyResult",
    "IdentificationRow",
    "EpochCheckpoints",
    "plan",
    "collect",
    "GRADIENT_STUDY",
    "run_gradient_study",
    "NAME",
]

#: The experiment's name (what the store and the report know it by).
NAME = "gradient-study"

KIND_TRAJECTORY = "gradient_study.trajectory"
KIND_IDENTIFICATION = "gradient_study.identification"
KIND_CURVES = "gradient_study.curves"


@strict_signature
@dataclass(frozen=True)
class Index:
    """One row of the table: a display label, a registry measure with parameters, the objective
    whose gradients it uses (None: features only; ``"loss"``: the task's loss with the true
    labels; ``"tang"``: :class:`~layer_sim.representations.objectives.Tang`)."""

    label: str
    measure: str
    params: dict = field(default_factory=dict)
    objective: str | None = None

    @property
    def slug(self) -> str:
        """File-name form, e.g. ``gradient_cka_tang`` or ``rbf_cka_sigma0.4``."""
        return self.measure + "".join(f"_{k}{v}" for k, v in self.params.items()) + (f"_{self.objective}" if self.objective else "")

    def to_dict(self) -> dict:
        return {"label": self.label, "measure": self.measure, "params": dict(self.params), "objective": self.objective}


#: The indexes compared by layer identification.
INDEXES: tuple[Index, ...] = (
    Index("CKA (linear)", "linear_cka"),
    Index("CKA (RBF 0.4)", "rbf_cka", {"sigma": 0.4}),
    Index("NBS", "nbs"),
    Index("gradient CKA (loss)", "gradient_cka", {}, "loss"),
    Index("gradient CKA (Tang)", "gradient_cka", {}, "tang"),
    Index("gradient NBS (loss)", "gradient_nbs", {}, "loss"),
    Index("gradient NBS (Tang)", "gradient_nbs", {}, "tang"),
)
#: The indexes of the through-training curves.
CURVE_INDEXES: tuple[Index, ...] = (INDEXES[0], INDEXES[3], INDEXES[4])

_DECLARED = {"nets": Int(3), "examples": Int(4, 10_000), "beta": Real(0.0, None)}


@strict_signature
@dataclass(frozen=True)
class GradientStudySpec:
    """What a gradient study runs: the networks, how many, on how many test images.

    Attributes
    ----------
    network : NetworkSpec, default=DEFAULT_SPEC
        The sanity check's network (architecture, task, recipe); seeds 0..nets-1.
    nets : int >= 3, default=5
        Networks for layer identification (3 at least, for a jackknife SE).
    examples : int, default=1000
        MNIST test images every index is computed on: the first ``examples`` of
        ``torch.randperm(10000)`` with generator seed 0 (the sanity check's subset rule). 1000
        rather than the sanity check's 2000 because exact gradient NBS costs O(n^3) per pair.
    trajectory_seeds : tuple of int, default=(0, 1, 2)
        Seeds retrained with a checkpoint per epoch for the curves (2 at least).
    beta : float >= 0, not 1, default=0.5
        Tang et al.'s smoothing of q.
    """

    network: NetworkSpec = DEFAULT_SPEC
    nets: int = 5
    examples: int = 1000
    trajectory_seeds: tuple[int, ...] = (0, 1, 2)
    beta: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.network, NetworkSpec):
            raise ConfigError(f"GradientStudySpec: network must be a NetworkSpec, got {type(self.network).__name__}")
        for name, value in check_options("GradientStudySpec", _DECLARED,
                                         {k: getattr(self, k) for k in _DECLARED}).items():  # fmt: skip
            object.__setattr__(self, name, value)
        Tang(beta=self.beta)  # refuses beta = 1 with the reason
        seeds = tuple(self.trajectory_seeds)
        if len(seeds) < 2 or len(set(seeds)) != len(seeds) or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ConfigError(f"GradientStudySpec: trajectory_seeds must be 2 or more distinct integers >= 0, got {seeds!r}")
        object.__setattr__(self, "trajectory_seeds", seeds)
        widest = max(self.network.model.widths[1:-1])
        if self.examples <= widest:
            raise ConfigError(f"GradientStudySpec: examples must exceed the widest hidden layer ({widest}), got {self.examples}")

    def to_dict(self) -> dict:
        return {"network": self.network.to_dict(), "nets": self.nets, "examples": self.examples,
                "trajectory_seeds": list(self.trajectory_seeds), "beta": self.beta}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> GradientStudySpec:
        if not isinstance(d, dict) or set(d) != {"network", "nets", "examples", "trajectory_seeds", "beta"}:
            raise ConfigError(f"GradientStudySpec.from_dict: unexpected keys in {d!r}")
        return cls(NetworkSpec.from_dict(d["network"]), d["nets"], d["examples"], tuple(d["trajectory_seeds"]), d["beta"])


# --------------------------------------------------------------------------- planning


def _trajectory_unit(spec: GradientStudySpec, seed: int) -> Unit:
    return Unit(KIND_TRAJECTORY, {"network": spec.network.to_dict(), "seed": seed})


def _identification_unit(spec: GradientStudySpec, index: Index) -> Unit:
    return Unit(KIND_IDENTIFICATION, {"network": spec.network.to_dict(), "nets": spec.nets, "examples": spec.examples,
                                      "beta": spec.beta, "index": index.to_dict()})  # fmt: skip


def _curves_unit(spec: GradientStudySpec) -> Unit:
    trajectories = {str(s): _trajectory_unit(spec, s).key for s in spec.trajectory_seeds}
    return Unit(KIND_CURVES, {"network": spec.network.to_dict(), "examples": spec.examples, "beta": spec.beta,
                              "trajectories": trajectories, "indexes": [i.to_dict() for i in CURVE_INDEXES]})  # fmt: skip


@strict_signature
def plan(spec: GradientStudySpec) -> list[list[Unit]]:
    """Stage 1: the N networks (the sanity check's ``network.ensemble`` unit, reusing the cache) and
    one trajectory unit per seed; stage 2: one identification unit per index and one unit for the curves."""
    networks = ensemble_unit(spec.network, range(spec.nets))
    stage1 = [networks, *(_trajectory_unit(spec, s) for s in spec.trajectory_seeds)]
    stage2 = [*(_identification_unit(spec, i) for i in INDEXES), _curves_unit(spec)]
    return [stage1, stage2]


# --------------------------------------------------------------------------- unit functions


def _probe(examples: int, data_dir) -> tuple[torch.Tensor, torch.Tensor]:
    from layer_sim.data import load_mnist

    x, y = load_mnist("test", data_dir)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:examples]
    return x[idx], y[idx]


def _objective(name: str | None, network: NetworkSpec, beta: float):
    if name is None:
        return None
    return Tang(beta=beta) if name == "tang" else get_loss(network.task.loss)


def _representations(model, probe, objective):
    if objective is None:
        return extract(model, probe[0])
    return extract(model, probe, gradients=True, objective=objective)


@strict_signature
class EpochCheckpoints:
    """Trainer callback: the model after every epoch, saved as ``<directory>/epoch-<k>/`` (a checkpoint)."""

    def __init__(self, directory: Path, meta: dict) -> None:
        self.directory, self.meta = Path(directory), meta

    def save(self, model, epoch: int, metrics: dict | None) -> None:
        save_checkpoint(self.directory / f"epoch-{epoch:03d}", model, meta={**self.meta, "epoch": epoch, "metrics": metrics})

    def on_epoch_end(self, state) -> None:
        self.save(state.model, state.epoch, state.metrics)


@unit_kind(KIND_TRAJECTORY)
def trajectory_unit(spec: dict, context: UnitContext) -> UnitResult:
    """Retrain one seed with :func:`~layer_sim.training.fit`, saving the model at initialisation and after every epoch."""
    network = NetworkSpec.from_dict(spec["network"])
    seed = spec["seed"]
    model = network.build_model(seed=seed)
    saver = EpochCheckpoints(context.output_dir, {"spec": network.to_dict(), "seed": seed})
    saver.save(model, 0, None)
    result = fit(model, network.build_task(data_dir=context.data_dir), network.recipe, seed=seed, device=context.device,
                 callbacks=[saver], progress=False)  # fmt: skip
    return UnitResult(metrics={"test_accuracy": result.test_accuracy, "epochs": network.recipe.epochs},
                      histories={"train": result.history},
                      artefacts={f"epoch-{e:03d}": Path(f"epoch-{e:03d}") / "model.pt"
                                 for e in range(network.recipe.epochs + 1)})  # fmt: skip


@unit_kind(KIND_IDENTIFICATION)
def identification_unit(spec: dict, context: UnitContext) -> UnitResult:
    """Layer identification of one index on the N networks (stage 1's, from the checkpoint cache);
    its arrays are the artefact ``identification.npz``."""
    network = NetworkSpec.from_dict(spec["network"])
    index = Index(**spec["index"])
    models = [load_network(network, s, context).model for s in range(spec["nets"])]
    probe = _probe(spec["examples"], context.data_dir)
    objective = _objective(index.objective, network, spec["beta"])
    reps = [_representations(m, probe, objective) for m in models]
    res = layer_identification(reps, index.measure, device=context.device, progress=False, **index.params)
    np.savez(context.output_dir / "identification.npz", scores=res.scores, predictions=res.predictions,
             confusion=res.confusion, jackknife=res.jackknife)  # fmt: skip
    metrics = {"accuracy": res.accuracy, "stderr": res.stderr, **{f"per_layer/{k}": v for k, v in res.per_layer.items()}}
    return UnitResult(metrics=metrics, artefacts={"identification": "identification.npz"})


def _epoch_models(context: UnitContext, key: str) -> list:
    # A trajectory unit's artefact directory is its sibling in the store's artefacts folder.
    where = Path(context.output_dir).parent / key
    dirs = sorted(where.glob("epoch-*"))
    if not dirs:
        raise DataError(f"gradient study: no epoch checkpoints in {where}; run stage 1 (the trajectories) first")
    return [load_checkpoint(d, map_location=context.device).model for d in dirs]


@unit_kind(KIND_CURVES)
def curves_unit(spec: dict, context: UnitContext) -> UnitResult:
    """Per epoch and layer: similarity to the same layer at the end of training, and to another seed."""
    network = NetworkSpec.from_dict(spec["network"])
    probe = _probe(spec["examples"], context.data_dir)
    indexes = [Index(**d) for d in spec["indexes"]]
    seeds = sorted(spec["trajectories"], key=int)
    objectives = {i.objective: _objective(i.objective, network, spec["beta"]) for i in indexes}
    # reps[seed][objective][epoch]
    reps = {s: {o: [_representations(m, probe, obj) for m in models] for o, obj in objectives.items()}
            for s, models in ((s, _epoch_models(context, spec["trajectories"][s])) for s in seeds)}  # fmt: skip
    rows = []
    for index in indexes:
        m = get(index.measure, **index.params)

        def score(a, b, layer):
            ga = a.gradients[layer] if m.uses_gradients else None
            gb = b.gradients[layer] if m.uses_gradients else None
            pa = m.prepare(a[layer], grad=ga) if m.uses_gradients else m.prepare(a[layer])
            pb = m.prepare(b[layer], grad=gb) if m.uses_gradients else m.prepare(b[layer])
            return float(m.score(pa, pb))

        for s in seeds:
            runs = reps[s][index.objective]
            layers = [k for k in runs[0] if k != "output"]
            for epoch, r in enumerate(runs):
                for layer in layers:
                    rows.append({"index": index.label, "comparison": "final", "seed": s, "epoch": epoch, "layer": layer,
                                 "value": score(r, runs[-1], layer)})  # fmt: skip
        for a_pos, a in enumerate(seeds):
            for b in seeds[a_pos + 1 :]:
                ra, rb = reps[a][index.objective], reps[b][index.objective]
                for epoch, (x, y) in enumerate(zip(ra, rb)):
                    for layer in [k for k in x if k != "output"]:
                        rows.append({"index": index.label, "comparison": "seeds", "seed": f"{a}-{b}", "epoch": epoch,
                                     "layer": layer, "value": score(x, y, layer)})  # fmt: skip
    return UnitResult(histories={"curves": rows})


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class IdentificationRow:
    """One index and its layer identification, as read back from the store."""

    index: Index
    identification: LayerIdentification

    def record(self) -> dict:
        """``{"index", "objective", "accuracy" (%), "stderr" (% points)}``."""
        se = self.identification.stderr
        return {"index": self.index.label, "objective": self.index.objective or "—",
                "accuracy": round(100 * self.identification.accuracy, 4),
                "stderr": None if se is None else round(100 * se, 4)}  # fmt: skip


@dataclass(frozen=True)
class GradientStudyResult:
    """Everything the study computed (data only; ``layer_sim.report.gradient_study`` draws and writes it).

    ``curves`` is a DataFrame with columns ``index, comparison ("final" | "seeds"), seed, epoch,
    layer, value``; ``test_accuracies`` the N networks'; ``trajectory_accuracy`` per seed.
    """

    spec: GradientStudySpec
    rows: tuple[IdentificationRow, ...]
    layers: tuple[str, ...]
    test_accuracies: tuple[float, ...]
    trajectory_accuracy: dict
    curves: Any

    def records(self) -> list[dict]:
        return [r.record() for r in self.rows]

    def matrices(self, a: int = 0, b: int = 1) -> list[SimilarityMatrix]:
        """Network ``a`` (rows) against network ``b`` (columns) for every index."""
        return [r.identification.matrix(a, b) for r in self.rows]

    def curve_summary(self) -> Any:
        """Mean and standard error over seeds (or seed pairs) per index, comparison, epoch and layer."""
        g = self.curves.groupby(["index", "comparison", "layer", "epoch"])["value"]
        out = g.agg(["mean", "std", "count"]).reset_index()
        out["se"] = out["std"].fillna(0.0) / np.sqrt(out["count"])
        return out


@strict_signature
def collect(store: Store, spec: GradientStudySpec) -> GradientStudyResult:
    """The study's result from a store in which every planned unit is done (read only).

    Raises
    ------
    IncompleteError
        Some unit of :func:`plan` is not done (the message says how many, and to rerun).
    DataError
        An identification's artefact file is missing or damaged.
    """
    stage1, stage2 = plan(spec)
    with store.snapshot():
        records = done_runs(store, stage1 + stage2, what="gradient study")
        networks, trajectories = records[0], records[1 : len(stage1)]
        identifications, curves_run = records[len(stage1) : -1], records[-1]
        curves = store.history(curves_run.key, "curves")
    accs = tuple(networks.metrics[f"test_accuracy/seed-{s}"] for s in range(spec.nets))
    trajectory = {s: r.metrics["test_accuracy"] for s, r in zip(spec.trajectory_seeds, trajectories)}
    rows = tuple(IdentificationRow(index, _identification(index, run.artefacts["identification"], run.metrics))
                 for index, run in zip(INDEXES, identifications))  # fmt: skip
    return GradientStudyResult(spec, rows, rows[0].identification.layers, accs, trajectory, curves)


def _identification(index: Index, path, metrics) -> LayerIdentification:
    """The LayerIdentification of one index from its stored arrays and metrics."""
    try:
        with np.load(path, allow_pickle=False) as a:
            arrays = {k: a[k] for k in ("scores", "predictions", "confusion", "jackknife")}
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"gradient study: the identification file {path} of {index.label} cannot be read ({exc}); "
                        "delete that run from the store (or the store) and rerun to recompute it") from None
    layers = tuple(k.split("/", 1)[1] for k in metrics if k.startswith("per_layer/"))
    return LayerIdentification(index.measure, dict(index.params), layers, arrays["scores"], arrays["predictions"],
                               metrics["accuracy"], {k: metrics[f"per_layer/{k}"] for k in layers},
                               arrays["confusion"], arrays["jackknife"], metrics["stderr"])  # fmt: skip


# --------------------------------------------------------------------------- running

#: The gradient study as a registered experiment (what ``layer-sim report`` collects and renders).
GRADIENT_STUDY = register_experiment(Experiment(NAME, GradientStudySpec.from_dict, plan, collect))


@strict_signature
def run_gradient_study(
    spec: GradientStudySpec | None = None,
    store: Store | str | os.PathLike | None = None,
    executor: Executor | None = None,
    *,
    command: Sequence[str] | None = None,
    device: str | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    retries: int = 1,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> tuple[GradientStudyResult, list[SweepSummary]]:
    """Run (or resume) the study with :func:`~layer_sim.experiments.run_experiment` into ``store``, then :func:`collect`.

    Finished units are skipped, so a rerun after an interruption only does what is missing; with
    the sanity check's network and seeds, stage 1's ensemble unit is the sanity check's (done
    already if both share a store) and its checkpoints are those of the same ``cache_dir``.

    Parameters
    ----------
    spec : GradientStudySpec or None
        None: the defaults.
    store : Store or path-like
        The results store (created if missing); unit artefacts go to ``artefacts/`` beside it.
    executor : Executor or None
        Where units run (:func:`~layer_sim.runs.make_executor`); None: in this process.
    command, data_dir, cache_dir, retries, progress, log
        As in :func:`~layer_sim.experiments.run_experiment` (``cache_dir`` None:
        ``$LAYER_SIM_CACHE``, else ``~/.cache/layer_sim/checkpoints``, resolved by the driver).
    device : str or None
        Where to train, extract and compare (None: CPU).

    Returns
    -------
    (GradientStudyResult, list of SweepSummary)
        The result, and one summary per stage.

    Raises
    ------
    UnitsFailedError
        A stage had units that failed every attempt (their errors are in the store).
    """
    from layer_sim._device import resolve_device

    spec = GradientStudySpec() if spec is None else spec
    if store is None:
        raise ConfigError("gradient_study: store= is required (a path, e.g. OUTPUT/results.sqlite)")
    device = resolve_device("gradient_study", device)
    summaries = run_experiment(GRADIENT_STUDY, spec, store, executor, command=command, device=str(device or "cpu"),
                               data_dir=data_dir, cache_dir=cache_dir, retries=retries, progress=progress, log=log)
    return collect_experiment(GRADIENT_STUDY, spec, store), summaries
