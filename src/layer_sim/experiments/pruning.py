r"""Are the layers of a pruned network still similar to the complete network's? (The original layer_sim's study.)

For each seed, LeNet-5 is trained on MNIST with the original layer_sim's recipe (SGD, lr 0.1,
momentum 0.9, weight decay 1e-4, batch 128, the rate divided by 10 at 2/3 and 4/5 of training,
gradients clipped to norm 1) and pruned by Iterative Magnitude Pruning with learning-rate
rewinding (:func:`layer_sim.training.pruning.imp`). Every layer of each pruned network is compared
with the same layer of its own complete network, and, as the noise floor, every layer of each
complete network with the same layer of the complete network of another seed: a pruned layer
that is as similar to its origin as two independently trained networks are to each other has
changed as much as retraining from scratch would change it.

The study is a registered experiment (:data:`PRUNING_STUDY`, name ``"pruning-study"``, run by
:func:`~layer_sim.experiments.run_experiment`) in three stages of units:

1. the complete networks, one ``network.train`` unit per seed
   (:func:`~layer_sim.experiments.networks.network_unit`: the unit ``layer-sim train`` runs for
   the same network and seed, with the same checkpoint cache);
2. one ``pruning.imp`` unit per seed (its IMP chain; training is cached and resumable, see
   :mod:`layer_sim.training.pruning`) and the noise-floor comparisons, which need only stage 1;
3. the pruned-vs-complete comparisons, one ``pruning.compare`` unit per pruned network.

:func:`collect` reads the :class:`PruningStudyResult` back from the store; :func:`pruning_study`
does both.

Layouts (see :mod:`layer_sim.representations.layouts`): CKA and NBS compare the flattened maps
(one row per example, as the original library's linear kernels); the CCA family compares conv
layers with channels as neurons (one row per example and position), as the original library
did before SVCCA, because flattened maps have far more features than examples and every
canonical correlation would then be 1.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from layer_sim import measures
from layer_sim._options import Ascending, Choice, Int, Maybe, Real, check, strict_signature
from layer_sim.data.tasks import TaskSpec
from layer_sim.errors import ConfigError, DegenerateInputError
from layer_sim.experiments.driver import Experiment, collect_experiment, done_runs, register_experiment, run_experiment
from layer_sim.experiments.networks import load_network, network_unit
from layer_sim.models import LENET5_LAYER_TYPES, LeNet5Spec
from layer_sim.representations import OUTPUT, cca_rows_needed, extract, with_layout
from layer_sim.runs import Executor, Unit, UnitContext, UnitResult, unit_kind
from layer_sim.store import Store
from layer_sim.training.pruning import S1_PATTERNS, PruningSpec, imp
from layer_sim.training.recipe import S1_RECIPE, Recipe
from layer_sim.training.spec import NetworkSpec

__all__ = [
    "NAME",
    "IMP_KIND",
    "COMPARE_KIND",
    "MEASURES",
    "StudyMeasure",
    "PruningStudySpec",
    "study_recipe",
    "NetworkRow",
    "ParameterRow",
    "SimilarityRow",
    "PruningStudyResult",
    "plan",
    "imp_unit",
    "compare_unit",
    "collect",
    "PRUNING_STUDY",
    "pruning_study",
]

#: Registered name of the experiment (the store's ``experiments`` table, the report section).
NAME = "pruning-study"
#: Unit kinds: one seed's IMP chain; every layer of two networks under every index.
IMP_KIND, COMPARE_KIND = "pruning.imp", "pruning.compare"


@strict_signature
@dataclass(frozen=True)
class StudyMeasure:
    """An index of the study: registry name and parameters, display label, and which layout it reads."""

    name: str
    label: str
    params: dict = field(default_factory=dict)
    cca_family: bool = False  # conv layers in the CCA layout, and the rows check of cca_rows_needed


#: The indexes of the study, by key: the original library's (linear CKA and NBS on linear
#: kernels, mean CCA after an SVD reduction to 99 % of the variance) plus PWCCA. PWCCA is not
#: symmetric: its weights come from the reference (complete) network's layer.
MEASURES: dict[str, StudyMeasure] = {
    "linear_cka": StudyMeasure("linear_cka", "linear CKA"),
    "nbs": StudyMeasure("nbs", "NBS"),
    "svcca": StudyMeasure("svcca_rho", "mean CCA, SVD 99 %", {"variance": 0.99}, cca_family=True),
    "pwcca": StudyMeasure("pwcca", "PWCCA", cca_family=True),
}

#: Layouts the CCA family may use for conv layers (CKA and NBS always read the flattened maps).
CCA_LAYOUTS = ("channels", "spatial_mean", "flatten")


@strict_signature
def study_recipe(epochs: int) -> Recipe:
    """The original layer_sim's recipe (:data:`~layer_sim.training.recipe.S1_RECIPE`) over ``epochs`` epochs.

    15 epochs is the recipe itself (the rate divided by 10 after epochs 10 and 12). Fewer epochs
    keep its shape: the milestones are ``round(epochs * 10 / 15)`` and ``round(epochs * 12 / 15)``,
    those in ``[1, epochs - 1]`` and distinct; with none left the rate is constant.

    Examples
    --------
    >>> study_recipe(15) == S1_RECIPE, study_recipe(5).milestones, study_recipe(1).schedule
    (True, (3, 4), 'constant')
    """
    epochs = check("study_recipe", "epochs", Int(1), epochs)
    marks = tuple(sorted({m for m in (round(epochs * 10 / 15), round(epochs * 12 / 15)) if 1 <= m < epochs}))
    if not marks:
        return dataclasses.replace(S1_RECIPE, epochs=epochs, schedule="constant", milestones=())
    return dataclasses.replace(S1_RECIPE, epochs=epochs, milestones=marks)


@strict_signature
@dataclass(frozen=True)
class PruningStudySpec:
    """What the study runs. The defaults fit the time budget; ``full()`` is the original recipe.

    Attributes
    ----------
    seeds : tuple of int, default=(0, 1, 2)
        One complete network and one IMP chain per seed; the noise floor uses every pair.
    epochs : int, default=5
        Epochs of every training (the complete networks and each IMP retraining); see
        :func:`study_recipe`. 15 is the original recipe.
    iterations : int, default=2
        IMP iterations per seed.
    rate : float, default=0.5
        Share of the surviving prunable weights removed per iteration (the original demo's 0.5).
    patterns : tuple of str
        Which parameters are pruned (:data:`~layer_sim.training.pruning.S1_PATTERNS`).
    examples : int, default=2000
        MNIST test images the layers are compared on (the first ``examples`` of the test set).
    measures : tuple of str, default: every key of :data:`MEASURES`
        The indexes, by key of :data:`MEASURES` (linear CKA, NBS, mean CCA after SVD, PWCCA).
    cca_layout : {"channels", "spatial_mean", "flatten"}, default="channels"
        How conv layers become matrices for the CCA family.
    limit_train : int or None, default=None
        Train on the first ``limit_train`` MNIST training images only (quick runs and tests).

    Examples
    --------
    >>> spec = PruningStudySpec(seeds=(2, 0), iterations=3)
    >>> spec.seeds, spec.measures, PruningStudySpec.from_dict(spec.to_dict()) == spec
    ((0, 2), ('linear_cka', 'nbs', 'svcca', 'pwcca'), True)
    >>> [[u.kind for u in stage] for stage in plan(PruningStudySpec(seeds=(0, 1), iterations=1))]
    [['network.train', 'network.train'], ['pruning.imp', 'pruning.imp', 'pruning.compare'], ['pruning.compare', 'pruning.compare']]
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 5
    iterations: int = 2
    rate: float = 0.5
    patterns: tuple[str, ...] = S1_PATTERNS
    examples: int = 2000
    measures: tuple[str, ...] = tuple(MEASURES)
    cca_layout: str = "channels"
    limit_train: int | None = None

    def __post_init__(self) -> None:
        where = "PruningStudySpec"
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, (list, tuple)):
            raise ConfigError(f"{where}: seeds must be a sequence of distinct integers >= 0, got {self.seeds!r}")
        seeds = Ascending(Int(0)).check(f"{where}: seeds (sorted)", sorted(self.seeds))
        if len(seeds) < 2:
            raise ConfigError(f"{where}: seeds needs at least two seeds (the noise floor compares two complete networks), got {list(seeds)}")
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "epochs", check(where, "epochs", Int(1), self.epochs))
        object.__setattr__(self, "iterations", check(where, "iterations", Int(1), self.iterations))
        object.__setattr__(self, "rate", check(where, "rate", Real(0, 1, low_open=True, high_open=True), self.rate))
        object.__setattr__(self, "examples", check(where, "examples", Int(2, 10_000), self.examples))
        object.__setattr__(self, "cca_layout", Choice(*CCA_LAYOUTS).check(f"{where}: cca_layout", self.cca_layout))
        object.__setattr__(self, "limit_train", check(where, "limit_train", Maybe(Int(1)), self.limit_train))
        if isinstance(self.measures, (str, bytes)) or not isinstance(self.measures, (list, tuple)) or not self.measures:
            raise ConfigError(f"{where}: measures must be a non-empty sequence of keys of MEASURES, got {self.measures!r}")
        chosen = tuple(Choice(*MEASURES).check(f"{where}: measures", key) for key in self.measures)
        if len(set(chosen)) != len(chosen):
            raise ConfigError(f"{where}: measures must be distinct, got {list(chosen)}")
        object.__setattr__(self, "measures", chosen)
        object.__setattr__(self, "patterns", PruningSpec(self.rate, self.patterns).patterns)  # checked there

    @classmethod
    def full(cls, **changes) -> PruningStudySpec:
        """The original recipe: 15 epochs per training (rate ÷10 after epochs 10 and 12)."""
        return cls(**{"epochs": 15, **changes})

    @property
    def network(self) -> NetworkSpec:
        """LeNet-5 on MNIST (cross-entropy) with :func:`study_recipe` of ``epochs``."""
        return NetworkSpec(model=LeNet5Spec(), task=TaskSpec(limit_train=self.limit_train), recipe=study_recipe(self.epochs))

    @property
    def pruning(self) -> PruningSpec:
        return PruningSpec(self.rate, self.patterns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, tuples as lists."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PruningStudySpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class NetworkRow:
    """One network of the study: ``iteration`` 0 is a complete network.

    ``train_seconds`` is its training's wall time as recorded when it was trained; ``reused``
    says whether its unit found it in the checkpoint cache.
    """

    seed: int
    iteration: int
    sparsity: float
    test_accuracy: float
    pruned: int
    prunable: int
    train_seconds: float
    reused: bool

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ParameterRow:
    """How much of one prunable parameter tensor a network has pruned (global pruning spreads unevenly)."""

    seed: int
    iteration: int
    parameter: str
    size: int
    sparsity: float

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SimilarityRow:
    """One layer of one comparison under one index.

    ``comparison`` is ``"pruned"`` (iteration ``iteration`` of seed ``seed`` against the complete
    network of the same seed) or ``"noise_floor"`` (the complete network of ``other_seed``
    against that of ``seed``; ``iteration`` 0). ``rows`` and ``features`` say what the index saw
    after the layout (``features`` of the reference; the other network's are equal).
    """

    comparison: str
    seed: int
    other_seed: int
    iteration: int
    sparsity: float
    layer: str
    measure: str
    value: float
    layout: str
    rows: int
    features: int

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PruningStudyResult:
    """Everything the study computed, as :func:`collect` reads it from a store (data only; ``layer_sim.report.pruning`` writes it).

    ``networks``: per seed, the complete network then each IMP iteration; ``parameters``: per
    pruned network and prunable tensor; ``similarities``: in the order of :func:`plan`'s
    comparison units (noise floor first). ``unit_seconds``: wall time of each stage's units,
    summed as the store recorded them (several workers finish sooner).
    """

    spec: PruningStudySpec
    layers: tuple[str, ...]
    networks: tuple[NetworkRow, ...]
    parameters: tuple[ParameterRow, ...]
    similarities: tuple[SimilarityRow, ...]
    unit_seconds: Mapping[str, float]

    def noise_floor(self, layer: str, measure: str) -> list[float]:
        """The noise-floor values of ``layer`` under ``measure`` (one per pair of seeds)."""
        return [r.value for r in self.similarities
                if r.comparison == "noise_floor" and r.layer == layer and r.measure == measure]  # fmt: skip

    def pruned(self, layer: str, measure: str, iteration: int) -> list[float]:
        """The pruned-vs-complete values of ``layer`` at ``iteration`` (one per seed)."""
        return [r.value for r in self.similarities
                if r.comparison == "pruned" and r.layer == layer and r.measure == measure and r.iteration == iteration]  # fmt: skip


# ----------------------------------------------------------------------------- planning


@strict_signature
def plan(spec: PruningStudySpec) -> list[list[Unit]]:
    """The three stages: complete networks; IMP chains and noise floor; pruned comparisons.

    Stage 1: ``network.train`` per seed. Stage 2: ``pruning.imp`` per seed (it loads the complete
    network from the cache) and ``pruning.compare`` for every pair of seeds (complete against
    complete, the noise floor). Stage 3: ``pruning.compare`` for every seed and IMP iteration
    (pruned against its complete network). Unit specs hold only what changes a result; the
    checkpoint cache and the MNIST directory come from the sweep (``context.cache_dir``,
    ``context.data_dir``).
    """
    network, pruning = spec.network.to_dict(), spec.pruning.to_dict()
    compared = {"network": network, "pruning": pruning, "examples": spec.examples, "measures": list(spec.measures),
                "cca_layout": spec.cca_layout}  # fmt: skip

    def comparison(reference: int, seed: int, iteration: int) -> Unit:
        return Unit(COMPARE_KIND, {**compared, "reference": reference, "other": {"seed": seed, "iteration": iteration}})

    seeds = spec.seeds
    complete = [network_unit(spec.network, s) for s in seeds]
    chains = [Unit(IMP_KIND, {"network": network, "pruning": pruning, "seed": s, "iterations": spec.iterations})
              for s in seeds]  # fmt: skip
    floor = [comparison(a, b, 0) for k, a in enumerate(seeds) for b in seeds[k + 1 :]]
    pruned = [comparison(s, s, i) for s in seeds for i in range(1, spec.iterations + 1)]
    return [complete, chains + floor, pruned]


# ----------------------------------------------------------------------------- units of work


def _pruning(unit: dict) -> PruningSpec:
    return PruningSpec(unit["pruning"]["rate"], tuple(unit["pruning"]["patterns"]))


def _chain(unit: dict, seed: int, iterations: int, context: UnitContext):
    return imp(NetworkSpec.from_dict(unit["network"]), seed, iterations=iterations, pruning=_pruning(unit),
               cache_dir=context.cache_dir, data_dir=context.data_dir, device=context.device, progress=False)  # fmt: skip


@strict_signature
@unit_kind(IMP_KIND)
def imp_unit(unit: dict, context: UnitContext) -> UnitResult:
    """Unit ``pruning.imp``: one seed's IMP chain (trained, or loaded from the checkpoint cache).

    Histories ``networks`` (one :class:`NetworkRow` per pruned iteration; the complete network
    is stage 1's) and ``parameters`` (one :class:`ParameterRow` per pruned iteration and tensor);
    metrics ``prunable``, and ``test_accuracy/<i>`` and ``sparsity/<i>`` per iteration *i* >= 1.
    """
    chain = _chain(unit, unit["seed"], unit["iterations"], context)
    nets = [_network_row(unit["seed"], n) for n in chain[1:]]
    params = [ParameterRow(unit["seed"], n.iteration, name, m.numel(), 1 - float(m.double().mean())).record()
              for n in chain[1:] for name, m in n.masks.items()]  # fmt: skip
    metrics = {f"{k}/{r.iteration}": getattr(r, k) for r in nets for k in ("test_accuracy", "sparsity")}
    return UnitResult(metrics={"prunable": float(chain[0].meta["prunable"]), **metrics},
                      histories={"networks": [r.record() for r in nets], "parameters": params})  # fmt: skip


@strict_signature
@unit_kind(COMPARE_KIND)
def compare_unit(unit: dict, context: UnitContext) -> UnitResult:
    """Unit ``pruning.compare``: every layer of two networks under every index; history ``similarities``.

    The reference is the complete network of seed ``unit["reference"]``; the other is iteration
    ``unit["other"]["iteration"]`` of seed ``unit["other"]["seed"]`` (0: a complete network).
    Metrics ``<measure>/<layer>``.
    """
    rows = _compare(unit, context)
    return UnitResult(metrics={f"{r.measure}/{r.layer}": r.value for r in rows},
                      histories={"similarities": [r.record() for r in rows]})  # fmt: skip


def _network_row(seed: int, net) -> NetworkRow:
    meta = net.meta
    return NetworkRow(seed=seed, iteration=net.iteration, sparsity=float(meta["sparsity"]),
                      test_accuracy=float(meta["metrics"]["test_accuracy"]), pruned=int(meta.get("pruned", 0)),
                      prunable=int(meta["prunable"]), train_seconds=float(meta["metrics"]["train_seconds"]),
                      reused=bool(meta["reused"]))  # fmt: skip


def _probe(examples: int, data_dir):
    from layer_sim.data import load_mnist

    return load_mnist("test", data_dir)[0][:examples]


def _compare(unit: dict, context: UnitContext) -> list[SimilarityRow]:
    ref_seed, other = unit["reference"], unit["other"]
    network = NetworkSpec.from_dict(unit["network"])
    ref = load_network(network, ref_seed, context)
    target = _chain(unit, other["seed"], other["iteration"], context)[-1]
    sparsity = float(target.meta["sparsity"])
    x = _probe(unit["examples"], context.data_dir)
    layers = [*LENET5_LAYER_TYPES, OUTPUT]
    reps = [extract(m.model, x, layers=layers, device=context.device) for m in (ref, target)]
    comparison = "pruned" if other["iteration"] > 0 else "noise_floor"
    rows = []
    for key in unit["measures"]:
        m = MEASURES[key]
        layout = unit["cca_layout"] if m.cca_family else "flatten"
        a, b = (r if layout == "flatten" else with_layout(r, layout) for r in reps)
        index = measures.get(m.name, **m.params)
        for layer in a:
            xa, xb = a[layer], b[layer]
            pa, pb = index.prepare(xa), index.prepare(xb)
            if m.cca_family:
                _check_cca_rows(m, layer, layout, int(xa.shape[0]), pa.rank, pb.rank)
            value = float(index.score(pa, pb))
            rows.append(SimilarityRow(comparison, ref_seed, other["seed"], other["iteration"], sparsity, layer, key,
                                      value, layout, int(xa.shape[0]), int(xa.shape[1])))  # fmt: skip
    return rows


def _check_cca_rows(m: StudyMeasure, layer: str, layout: str, rows: int, p: int, q: int) -> None:
    """Refuse a CCA-family value that the shapes alone force towards 1 (``p``, ``q``: the ranks it compares)."""
    if rows < cca_rows_needed(p, q):
        raise DegenerateInputError(
            f"pruning study: {m.label} on layer {layer!r} with layout {layout!r} has {rows} rows for "
            f"{p} + {q} dimensions, so at least {p + q + 1 - rows} canonical correlations would be 1 "
            f"whatever the networks; it needs {p + q + 1} rows"
            + (": use cca_layout='channels' or more examples" if layout == "flatten" else ": use more examples")
        )


# ----------------------------------------------------------------------------- collecting

_CAST = {"int": int, "float": float, "str": str, "bool": bool}


def _rows(store: Store, record, name: str, cls) -> list:
    """The rows of history ``name`` of one run as ``cls`` (Python types restored)."""
    types = {f.name: _CAST[f.type] for f in dataclasses.fields(cls)}
    return [cls(**{k: types[k](v) for k, v in rec.items() if k in types})
            for rec in store.history(record.key, name).to_dict("records")]  # fmt: skip


@strict_signature
def collect(store: Store, spec: PruningStudySpec) -> PruningStudyResult:
    """The :class:`PruningStudyResult` of ``spec``, read from ``store`` (never recomputed).

    Raises
    ------
    IncompleteError
        Some unit of :func:`plan` is not done (the message says how many, and to rerun).
    """
    complete_units, stage2, pruned_units = plan(spec)
    k = len(spec.seeds)
    with store.snapshot():
        records = done_runs(store, complete_units + stage2 + pruned_units, what="pruning study")
        complete, chains, compared = records[:k], records[k : 2 * k], records[2 * k :]
        networks = []
        for seed, net, chain in zip(spec.seeds, complete, chains):
            networks.append(NetworkRow(seed, 0, 0.0, float(net.metrics["test_accuracy"]), 0, int(chain.metrics["prunable"]),
                                       float(net.metrics["train_seconds"]), bool(net.metrics["reused"])))  # fmt: skip
            networks += _rows(store, chain, "networks", NetworkRow)
        parameters = [row for chain in chains for row in _rows(store, chain, "parameters", ParameterRow)]
        similarities = [row for rec in compared for row in _rows(store, rec, "similarities", SimilarityRow)]
    stages = {"complete networks": complete, "IMP chains": chains, "comparisons": compared}
    return PruningStudyResult(spec, tuple(dict.fromkeys(r.layer for r in similarities)), tuple(networks),
                              tuple(parameters), tuple(similarities),
                              {name: sum(r.seconds or 0.0 for r in recs) for name, recs in stages.items()})  # fmt: skip


#: The pruning study as a registered experiment.
PRUNING_STUDY = register_experiment(Experiment(NAME, PruningStudySpec.from_dict, plan, collect))


@strict_signature
def pruning_study(
    spec: PruningStudySpec | None = None,
    *,
    store: Store | str | os.PathLike,
    executor: Executor | None = None,
    command: Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str | None = None,
    retries: int = 1,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> PruningStudyResult:
    """Run the study for ``spec`` (default :class:`PruningStudySpec`) through the sweep driver into ``store``; collect it.

    :func:`~layer_sim.experiments.run_experiment` runs the stages of :func:`plan` on
    ``executor`` (default: in this process; a pool trains the seeds side by side). Units already
    done in ``store`` are skipped, networks are cached in ``cache_dir`` and an interrupted
    training resumes from its last epoch, so rerunning after a crash or ``kill -9`` loses
    nothing. ``log`` gets the driver's lines, then one line per network.

    Parameters
    ----------
    spec : PruningStudySpec or None
        None: the defaults.
    store : Store or path-like
        Results store (created if missing); unit artefacts go to ``artefacts/`` beside it.
    executor : Executor or None
        Where units run (:func:`~layer_sim.runs.make_executor`); None: in this process.
    command, cache_dir, data_dir, retries, progress, log
        As in :func:`~layer_sim.experiments.run_experiment` (``cache_dir`` None:
        ``$LAYER_SIM_CACHE``, else ``~/.cache/layer_sim/checkpoints``).
    device : str or None
        Where to train, extract and compare (None: CPU).

    Returns
    -------
    PruningStudyResult

    Raises
    ------
    UnitsFailedError
        A stage had units that failed every attempt (the message gives the first error; the
        store keeps all); later stages are not run.
    """
    from layer_sim._device import resolve_device

    spec = PruningStudySpec() if spec is None else spec
    if not isinstance(spec, PruningStudySpec):
        raise ConfigError(f"pruning_study: spec must be a PruningStudySpec, got {type(spec).__name__}")
    device = resolve_device("pruning_study", device)
    run_experiment(PRUNING_STUDY, spec, store, executor, command=command, device=str(device or "cpu"),
                   data_dir=data_dir, cache_dir=cache_dir, retries=retries, progress=progress, log=log)  # fmt: skip
    result = collect_experiment(PRUNING_STUDY, spec, store)
    if log is not None:
        for r in result.networks:
            how = "reused" if r.reused else f"trained in {r.train_seconds:.0f} s"
            log(f"seed {r.seed} iteration {r.iteration}: sparsity {r.sparsity:.4f}, "
                f"test accuracy {100 * r.test_accuracy:.2f}% ({how})")  # fmt: skip
    return result
