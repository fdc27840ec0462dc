r"""Are the layers of a pruned network still similar to the complete network's? (The original layer_sim's study.)

For each seed, LeNet-5 is trained on MNIST with the original layer_sim's recipe (SGD, lr 0.1,
momentum 0.9, weight decay 1e-4, batch 128, the rate divided by 10 at 2/3 and 4/5 of training,
gradients clipped to norm 1) and pruned by Iterative Magnitude Pruning with learning-rate
rewinding (:func:`layer_sim.training.pruning.imp`). Every layer of each pruned network is compared
with the same layer of its own complete network, and, as the noise floor, every layer of each
complete network with the same layer of the complete network of another seed: a pruned layer
that is as similar to its origin as two independently trained networks are to each other has
changed as much as retraining from scratch would change it.

The study is planned as units of work (:func:`plan`, kinds ``pruning.imp`` and
``pruning.compare``): one IMP chain per seed (training is cached and resumable, see
:mod:`layer_sim.training.pruning`), then one comparison per pair of networks. :func:`pruning_study`
runs them with :func:`~layer_sim.runs.run_sweep` into a results store and reads a
:class:`PruningStudyResult` back from it.

Layouts (see :mod:`layer_sim.representations.layouts`): CKA and NBS compare the flattened maps
(one row per example, as the original library's linear kernels); the CCA family compares conv
layers with channels as neurons (one row per example and position), as the original library
did before SVCCA, because flattened maps have far more features than examples and every
canonical correlation would then be 1.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


from layer_sim import measures, settings
from layer_sim._options import Ascending, Choice, Int, Maybe, Real, check
from layer_sim.data.tasks import TaskSpec
from layer_sim.errors import ConfigError, DegenerateInputError, LayerSimError
from layer_sim.models import LENET5_LAYER_TYPES, LeNet5Spec
from layer_sim.representations import OUTPUT, cca_rows_needed, extract, with_layout
from layer_sim.runs import Unit, UnitContext, UnitResult, unit_kind
from layer_sim.training.pruning import S1_PATTERNS, PruningSpec, imp
from layer_sim.training.recipe import S1_RECIPE, Recipe
from layer_sim.training.spec import NetworkSpec

__all__ = [
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
    "pruning_study",
]


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
    measures : tuple of str
        Keys of :data:`MEASURES`; None-like default: every one the registry provides
        (:func:`default_measures`).
    cca_layout : {"channels", "spatial_mean", "flatten"}, default="channels"
        How conv layers become matrices for the CCA family.
    limit_train : int or None, default=None
        Train on the first ``limit_train`` MNIST training images only (quick runs and tests).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 5
    iterations: int = 2
    rate: float = 0.5
    patterns: tuple[str, ...] = S1_PATTERNS
    examples: int = 2000
    measures: tuple[str, ...] = ()
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
        chosen = tuple(self.measures) or default_measures()
        for key in chosen:
            Choice(*MEASURES).check(f"{where}: measures", key)
            if MEASURES[key].name not in measures.available():
                raise ConfigError(f"{where}: measure {key!r} ({MEASURES[key].name}) is not in this build's registry")
        object.__setattr__(self, "measures", chosen)
        PruningSpec(self.rate, self.patterns)  # checks the patterns

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
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}


def default_measures() -> tuple[str, ...]:
    """Every key of :data:`MEASURES` whose index this build registers (NBS may be missing)."""
    return tuple(k for k, m in MEASURES.items() if m.name in measures.available())


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class NetworkRow:
    """One network of the study: ``iteration`` 0 is a complete network."""

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
    """Everything :func:`pruning_study` computed (data only; ``layer_sim.report.pruning`` writes it)."""

    spec: PruningStudySpec
    layers: tuple[str, ...]
    networks: tuple[NetworkRow, ...]
    parameters: tuple[ParameterRow, ...]
    similarities: tuple[SimilarityRow, ...]
    seconds: float
    cpu_seconds: float
    missing_measures: tuple[str, ...]

    def noise_floor(self, layer: str, measure: str) -> list[float]:
        """The noise-floor values of ``layer`` under ``measure`` (one per pair of seeds)."""
        return [r.value for r in self.similarities
                if r.comparison == "noise_floor" and r.layer == layer and r.measure == measure]  # fmt: skip

    def pruned(self, layer: str, measure: str, iteration: int) -> list[float]:
        """The pruned-vs-complete values of ``layer`` at ``iteration`` (one per seed)."""
        return [r.value for r in self.similarities
                if r.comparison == "pruned" and r.layer == layer and r.measure == measure and r.iteration == iteration]  # fmt: skip


# ----------------------------------------------------------------------------- units of work


def plan(spec: PruningStudySpec, *, cache_dir=None, data_dir=None) -> list[Unit]:
    """The study's units of work, in an order that satisfies their dependencies.

    ``"pruning.imp"`` (one per seed) trains or loads the complete network and its IMP chain;
    ``"pruning.compare"`` (one per pair of networks) compares every layer under every index and
    only loads networks, so it runs after the chains (:func:`pruning_study` runs the two kinds as
    two sweeps). The checkpoint cache and the MNIST directory are part of each unit's spec,
    resolved to absolute paths, so that every worker process uses the same ones.
    """
    common = {"network": spec.network.to_dict(), "pruning": spec.pruning.to_dict(), "examples": spec.examples,
              "measures": list(spec.measures), "cca_layout": spec.cca_layout,
              "cache_dir": str(settings.cache_dir(cache_dir).resolve()),
              "data_dir": str(settings.data_dir(data_dir).resolve())}  # fmt: skip
    units = [Unit("pruning.imp", {**common, "seed": s, "iterations": spec.iterations}) for s in spec.seeds]
    for s in spec.seeds:
        for i in range(1, spec.iterations + 1):
            units.append(Unit("pruning.compare", {**common, "reference": s, "other": {"seed": s, "iteration": i}}))
    for a_i, a in enumerate(spec.seeds):
        for b in spec.seeds[a_i + 1 :]:
            units.append(Unit("pruning.compare", {**common, "reference": a, "other": {"seed": b, "iteration": 0}}))
    return units


def _specs(unit: dict) -> tuple[NetworkSpec, PruningSpec, dict]:
    network = NetworkSpec.from_dict(unit["network"])
    pruning = PruningSpec(unit["pruning"]["rate"], tuple(unit["pruning"]["patterns"]))
    return network, pruning, {"cache_dir": unit["cache_dir"], "data_dir": unit["data_dir"]}


@unit_kind("pruning.imp")
def imp_unit(unit: dict, context: UnitContext) -> UnitResult:
    """Unit ``pruning.imp``: the complete network of a seed and its IMP chain (trained or loaded).

    Histories ``networks`` (one :class:`NetworkRow` per iteration) and ``parameters`` (one
    :class:`ParameterRow` per pruned iteration and tensor); metrics ``test_accuracy/<i>`` and
    ``sparsity/<i>``.
    """
    network, pruning, where = _specs(unit)
    chain = imp(network, unit["seed"], iterations=unit["iterations"], pruning=pruning, device=context.device,
                progress=False, **where)  # fmt: skip
    nets = [_network_row(unit["seed"], n) for n in chain]
    params = [ParameterRow(unit["seed"], n.iteration, name, m.numel(), 1 - float(m.double().mean())).record()
              for n in chain for name, m in n.masks.items()]  # fmt: skip
    metrics = {f"{k}/{r.iteration}": getattr(r, k) for r in nets for k in ("test_accuracy", "sparsity")}
    return UnitResult(metrics=metrics, histories={"networks": [r.record() for r in nets], "parameters": params})


@unit_kind("pruning.compare")
def compare_unit(unit: dict, context: UnitContext) -> UnitResult:
    """Unit ``pruning.compare``: every layer of two networks under every index; history ``similarities``."""
    network, pruning, where = _specs(unit)
    rows = _compare(network, pruning, unit, {**where, "device": context.device, "progress": False})
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


def _chain(network, pruning, seed, iterations, where):
    return imp(network, seed, iterations=iterations, pruning=pruning, **where)


def _compare(network: NetworkSpec, pruning: PruningSpec, unit: dict, where: dict) -> list[SimilarityRow]:
    ref_seed, other = unit["reference"], unit["other"]
    ref = _chain(network, pruning, ref_seed, 0, where)[0]
    target = _chain(network, pruning, other["seed"], other["iteration"], where)[-1]
    x = _probe(unit["examples"], where["data_dir"])
    layers = [*LENET5_LAYER_TYPES, OUTPUT]
    reps = [extract(m.model, x, layers=layers, device=where["device"]) for m in (ref, target)]
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
            rows.append(SimilarityRow(comparison, ref_seed, other["seed"], other["iteration"],
                                      float(target.meta["sparsity"]), layer, key, value, layout,
                                      int(xa.shape[0]), int(xa.shape[1])))  # fmt: skip
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


def pruning_study(
    spec: PruningStudySpec | None = None,
    *,
    store,
    executor=None,
    cache_dir=None,
    data_dir=None,
    device=None,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> PruningStudyResult:
    """Run the units of :func:`plan` for ``spec`` (default :class:`PruningStudySpec`) into ``store``; collect the result.

    Two sweeps of :func:`~layer_sim.runs.run_sweep`: the IMP chains (one unit per seed), then the
    comparisons, each on ``executor`` (default: in this process; a pool trains the seeds' chains
    side by side). Units already done in ``store`` (a path or an open writable
    :class:`~layer_sim.store.Store`) are skipped, networks are cached in ``cache_dir`` and an
    interrupted training resumes from its last epoch, so rerunning after a crash or ``kill -9``
    loses nothing. The result is read back from the store. ``seconds`` and ``cpu_seconds`` are
    this call's wall-clock and process CPU time (pool workers' time is in the store's ``seconds``).

    Raises
    ------
    LayerSimError
        A unit failed every attempt; the message gives the first error, the store keeps all.
    """
    from layer_sim.runs import run_sweep

    spec = PruningStudySpec() if spec is None else spec
    if not isinstance(spec, PruningStudySpec):
        raise ConfigError(f"pruning_study: spec must be a PruningStudySpec, got {type(spec).__name__}")
    say = log if log is not None else (lambda _msg: None)
    missing = tuple(k for k in MEASURES if k not in spec.measures)
    device = "cpu" if device is None else str(device)
    t0, c0 = time.perf_counter(), time.process_time()
    units = plan(spec, cache_dir=cache_dir, data_dir=data_dir)
    chains = [u for u in units if u.kind == "pruning.imp"]
    pairs = [u for u in units if u.kind == "pruning.compare"]
    for stage, batch in (("IMP chains", chains), ("comparisons", pairs)):
        summary = run_sweep(batch, store, executor, device=device, progress=progress, log=say)
        if summary.failed or summary.not_run:
            key, error = next(iter(summary.failures.items()), ("?", "interrupted"))
            raise LayerSimError(f"pruning_study: {summary.failed + summary.not_run} of the {stage} did not finish "
                                f"(unit {key[:12]}: {error}); the store keeps every error")  # fmt: skip
        if stage == "IMP chains":
            for r in _read(store, chains, "networks", NetworkRow):
                how = "reused" if r.reused else f"trained in {r.train_seconds:.0f} s"
                say(f"seed {r.seed} iteration {r.iteration}: sparsity {r.sparsity:.4f}, "
                    f"test accuracy {100 * r.test_accuracy:.2f}% ({how})")  # fmt: skip
    networks = _read(store, chains, "networks", NetworkRow)
    parameters = _read(store, chains, "parameters", ParameterRow)
    similarities = _read(store, pairs, "similarities", SimilarityRow)
    layers = tuple(dict.fromkeys(r.layer for r in similarities))
    return PruningStudyResult(spec, layers, tuple(networks), tuple(parameters), tuple(similarities),
                              time.perf_counter() - t0, time.process_time() - c0, missing)  # fmt: skip


_CAST = {"int": int, "float": float, "str": str, "bool": bool}


def _read(store, units: list[Unit], name: str, cls) -> list:
    """The rows of history ``name`` of each unit, in the units' order, as ``cls`` (Python types restored)."""
    from layer_sim.store import Store

    types = {f.name: _CAST[f.type] for f in dataclasses.fields(cls)}
    out = []
    opened = store if isinstance(store, Store) else Store(store)
    try:
        for u in units:
            for rec in opened.history(u.key, name).to_dict("records"):
                out.append(cls(**{k: types[k](v) for k, v in rec.items() if k in types}))
    finally:
        if opened is not store:
            opened.close()
    return out
