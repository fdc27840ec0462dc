"""Kornblith et al. (2019) Table 2 "sanity check", reproduced with MLPs on MNIST.

N networks of one architecture are trained from seeds 0..N-1; each similarity index must
identify, for every layer of one network, the corresponding layer of another (see
:func:`layer_sim.analysis.identification.layer_identification`). A second setting compares networks of
*different* architectures layer by layer and reports where each layer's best match lies.

The experiment is planned as units of work (:func:`plan`) in two stages: the networks to train
(``network.ensemble``: the N networks, trained together as a batched ensemble, which is faster on
a CPU than N units, see :mod:`layer_sim.experiments.networks`; ``network.train``: one network per
other architecture), then one unit per index
(``sanity.identify``: a layer identification over the N networks) and one per other architecture
(``sanity.architecture``: its comparison with network 0). :func:`collect` builds the
:class:`SanityCheckResult` from a results store; :func:`sanity_check` does both.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layer_sim import settings
from layer_sim._options import Int, check, strict_signature
from layer_sim.analysis import LayerIdentification, SimilarityMatrix
from layer_sim.errors import ConfigError, DataError
from layer_sim.experiments.driver import Experiment, collect_experiment, done_runs, register_experiment, run_experiment
from layer_sim.experiments.networks import ensemble_unit, load_network, network_unit
from layer_sim.runs import Executor, Unit, UnitContext, UnitResult, unit_kind
from layer_sim.store import Store
from layer_sim.training.spec import DEFAULT_SPEC, NetworkSpec

__all__ = [
    "NAME",
    "IDENTIFY_KIND",
    "ARCHITECTURE_KIND",
    "Row",
    "TABLE2_ROWS",
    "ARCHITECTURE_MEASURES",
    "DEFAULT_ARCHITECTURES",
    "FULL_ARCHITECTURES",
    "DEFAULT_NETS",
    "DEFAULT_EXAMPLES",
    "FULL_NETS",
    "FULL_EXAMPLES",
    "SanityCheckSpec",
    "RowResult",
    "ArchitectureComparison",
    "Timings",
    "SanityCheckResult",
    "plan",
    "collect",
    "SANITY_CHECK",
    "sanity_check",
    "default_cache_dir",
    "probe_images",
    "save_identification",
    "load_identification",
]

#: Registered name of the experiment (the store's ``experiments`` table, the report section).
NAME = "sanity-check"
#: Unit kinds of stage 2: one layer identification; one other-architecture comparison.
IDENTIFY_KIND, ARCHITECTURE_KIND = "sanity.identify", "sanity.architecture"
#: The probe images: the first ``examples`` of ``torch.randperm`` over this split, generator seed 0.
PROBE_SPLIT, PROBE_SEED = "test", 0


@dataclass(frozen=True)
class Row:
    """One row of the table: a display label, a registry measure with parameters, the paper's value."""

    label: str
    measure: str
    params: Mapping[str, Any] = field(default_factory=dict)
    paper: float | None = None

    @property
    def slug(self) -> str:
        """File-name form, e.g. ``rbf_cka_sigma0.4``."""
        return self.measure + "".join(f"_{k}{v}" for k, v in self.params.items())

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "measure": self.measure, "params": dict(self.params), "paper": self.paper}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Row:
        return cls(d["label"], d["measure"], dict(d.get("params", {})), d.get("paper"))


#: The rows of Kornblith et al. (2019), Table 2 (Tiny-10 on CIFAR-10, 10 networks, logits
#: excluded; accuracy in %), plus two indexes the paper does not list.
TABLE2_ROWS: tuple[Row, ...] = (
    Row("CCA (ρ̄)", "cca_rho", {}, 1.4),
    Row("CCA (R²_CCA)", "cca_r2", {}, 10.6),
    Row("SVCCA (ρ̄)", "svcca_rho", {}, 9.9),
    Row("SVCCA (R²_CCA)", "svcca_r2", {}, 15.1),
    Row("PWCCA", "pwcca", {}, 11.1),
    Row("Linear Reg.", "linear_regression", {}, 45.4),
    Row("Linear HSIC", "linear_hsic", {}, 22.2),
    Row("CKA (Linear)", "linear_cka", {}, 99.3),
    Row("CKA (RBF 0.2)", "rbf_cka", {"sigma": 0.2}, 80.6),
    Row("CKA (RBF 0.4)", "rbf_cka", {"sigma": 0.4}, 99.1),
    Row("CKA (RBF 0.8)", "rbf_cka", {"sigma": 0.8}, 99.3),
    Row("CKA (Linear, debiased)", "linear_cka_debiased", {}, None),
    Row("Procrustes", "procrustes", {}, None),
)

#: Indexes used for the different-architectures comparison (the homework asks for CKA and SVCCA).
ARCHITECTURE_MEASURES: tuple[Row, ...] = (
    Row("CKA (Linear)", "linear_cka"),
    Row("SVCCA (ρ̄)", "svcca_rho"),
)

#: Networks compared with network 0 of the main architecture: name -> widths.
DEFAULT_ARCHITECTURES: dict[str, tuple[int, ...]] = {"deep-narrow": (784, 128, 128, 128, 128, 128, 128, 10)}
FULL_ARCHITECTURES: dict[str, tuple[int, ...]] = {
    **DEFAULT_ARCHITECTURES,
    "shallow-wide": (784, 512, 512, 10),
}

DEFAULT_NETS, DEFAULT_EXAMPLES = 5, 2000
FULL_NETS, FULL_EXAMPLES = 10, 3000
#: More networks than any such study trains: a larger --nets is a typo, refused before any work.
MAX_NETS = 1000
#: More networks than any such study trains: a larger --nets is a typo, refused before any work.
MAX_NETS = 1000


@strict_signature
def default_cache_dir() -> Path:
    """``$LAYER_SIM_CACHE`` if set, else ``~/.cache/layer_sim/checkpoints``."""
    return settings.cache_dir()


@strict_signature
@dataclass(frozen=True)
class SanityCheckSpec:
    """What a sanity check computes: the networks, the probe size, the indexes, the other architectures.

    :meth:`make` fills the defaults (and those of ``full``); the constructor checks every field.
    ``architectures`` holds ``(name, widths)`` pairs, each compared with network 0 and trained
    with ``network``'s task and recipe, seed 0.

    Raises
    ------
    ConfigError
        ``nets`` < 2, no rows, two architectures with one name, or ``examples`` not larger than
        every layer width (CCA-based indexes would be degenerate).

    Examples
    --------
    >>> spec = SanityCheckSpec.make(nets=3, examples=300, architectures={})
    >>> spec.nets, spec.examples, len(spec.rows), SanityCheckSpec.from_dict(spec.to_dict()) == spec
    (3, 300, 13, True)
    >>> [len(stage) for stage in plan(spec)]  # an ensemble of 3 networks, then 13 identifications
    [1, 13]
    """

    network: NetworkSpec = DEFAULT_SPEC
    nets: int = DEFAULT_NETS
    examples: int = DEFAULT_EXAMPLES
    rows: tuple[Row, ...] = TABLE2_ROWS
    architectures: tuple[tuple[str, tuple[int, ...]], ...] = tuple(DEFAULT_ARCHITECTURES.items())

    def __post_init__(self) -> None:
        if not isinstance(self.network, NetworkSpec):
            raise ConfigError(f"sanity_check: network must be a NetworkSpec, got {type(self.network).__name__}")
        check("sanity_check", "nets", Int(2, MAX_NETS), self.nets)
        rows = tuple(self.rows)
        if not rows or not all(isinstance(r, Row) for r in rows):
            raise ConfigError(f"sanity_check: rows must be a non-empty sequence of Row, got {self.rows!r}")
        archs = tuple((str(name), tuple(int(w) for w in widths)) for name, widths in self.architectures)
        if len({name for name, _ in archs}) != len(archs):
            raise ConfigError(f"sanity_check: architecture names must be distinct, got {[n for n, _ in archs]}")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "architectures", archs)
        widest = max(w for widths in (self.network.model.widths, *(w for _, w in archs)) for w in widths[1:])
        if isinstance(self.examples, bool) or not isinstance(self.examples, int) or self.examples <= widest:
            raise ConfigError(
                f"sanity_check: examples must be an integer larger than every layer width ({widest}) so "
                f"that CCA-based indexes are not degenerate, got {self.examples!r}"
            )

    @classmethod
    def make(cls, *, nets: int | None = None, examples: int | None = None, full: bool = False,
             network: NetworkSpec | None = None, rows: Sequence[Row] = TABLE2_ROWS,
             architectures: Mapping[str, Sequence[int]] | None = None) -> SanityCheckSpec:
        """The spec with defaults: 5 networks and 2000 examples, or 10 and 3000 with ``full``.

        ``architectures`` None: :data:`DEFAULT_ARCHITECTURES` (:data:`FULL_ARCHITECTURES` with
        ``full``); ``{}`` skips the different-architectures setting.
        """
        if architectures is None:
            architectures = FULL_ARCHITECTURES if full else DEFAULT_ARCHITECTURES
        return cls(
            network=DEFAULT_SPEC if network is None else network,
            nets=(FULL_NETS if full else DEFAULT_NETS) if nets is None else nets,
            examples=(FULL_EXAMPLES if full else DEFAULT_EXAMPLES) if examples is None else examples,
            rows=tuple(rows),
            architectures=tuple((name, tuple(w)) for name, w in architectures.items()),
        )

    def other(self, widths: Sequence[int]) -> NetworkSpec:
        """The network of another architecture: ``network`` with its widths replaced."""
        return self.network.replace(widths=tuple(widths))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``network`` (``NetworkSpec.to_dict``), ``nets``, ``examples``, ``rows``, ``architectures``."""
        return {"network": self.network.to_dict(), "nets": self.nets, "examples": self.examples,
                "rows": [r.to_dict() for r in self.rows],
                "architectures": [{"name": n, "widths": list(w)} for n, w in self.architectures]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SanityCheckSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(network=NetworkSpec.from_dict(d["network"]), nets=d["nets"], examples=d["examples"],
                   rows=tuple(Row.from_dict(r) for r in d["rows"]),
                   architectures=tuple((a["name"], tuple(a["widths"])) for a in d["architectures"]))


@dataclass(frozen=True)
class RowResult:
    """A table row and its layer identification result (``seconds``: of the identification proper)."""

    row: Row
    identification: LayerIdentification
    seconds: float

    def record(self) -> dict:
        """``{"measure", "accuracy" (%), "stderr" (% points or None), "paper" (% or None)}``."""
        se = self.identification.stderr
        return {
            "measure": self.row.label,
            "accuracy": round(100 * self.identification.accuracy, 4),
            "stderr": None if se is None else round(100 * se, 4),
            "paper": self.row.paper,
        }


@dataclass(frozen=True)
class ArchitectureComparison:
    """Network 0 of the main architecture (columns) against one other architecture (rows).

    ``matrices[k]`` is the comparison under ``measures[k]``.
    """

    name: str
    widths: tuple[int, ...]
    test_accuracy: float
    measures: tuple[Row, ...]
    matrices: tuple[SimilarityMatrix, ...]

    def best_matches(self) -> list[dict]:
        """For every layer of this architecture, the most similar reference layer per measure."""
        best = [m.best_match() for m in self.matrices]
        return [{"layer": r, **{row.label: b[r] for row, b in zip(self.measures, best)}}
                for r in self.matrices[0].rows]


@dataclass(frozen=True)
class Timings:
    """Seconds of work per part of the sanity check, summed over its units as the store recorded them.

    Several workers finish sooner than ``total``; each sweep's wall time is in the store's
    ``sweeps`` table.
    """

    train_or_load: float  # the network units
    extract: float  # representations, inside the identification units
    identification: float  # the layer identifications proper
    architectures: float  # the architecture units
    total: float  # every unit of the experiment


@dataclass(frozen=True)
class SanityCheckResult:
    """Everything the sanity check computed (data only; ``layer_sim.report.sanity`` writes it).

    ``reused[k]``: whether network *k* came from the checkpoint cache when its unit ran.
    """

    rows: tuple[RowResult, ...]
    layers: tuple[str, ...]
    widths: tuple[int, ...]
    test_accuracies: tuple[float, ...]
    examples: int
    architectures: tuple[ArchitectureComparison, ...]
    timings: Timings
    reused: tuple[bool, ...] = ()

    @property
    def nets(self) -> int:
        return len(self.test_accuracies)

    def records(self) -> list[dict]:
        """The table as a list of ``{"measure", "accuracy", "stderr", "paper"}`` (percent)."""
        return [r.record() for r in self.rows]

    def to_frame(self):
        """The table as a :class:`pandas.DataFrame` indexed by measure."""
        import pandas as pd

        return pd.DataFrame(self.records()).set_index("measure")


# ---------------------------------------------------------------------------- planning


@strict_signature
def plan(spec: SanityCheckSpec) -> list[list[Unit]]:
    """Stage 1: the networks (an ensemble unit, one unit per other architecture); stage 2: one unit per index and other architecture.

    Unit specs hold only what changes the result: network specs, seeds, the probe (split, seed,
    size), the measure and its parameters. Labels and paper values stay in the experiment's spec.
    """
    seeds = list(range(spec.nets))
    probe = {"split": PROBE_SPLIT, "seed": PROBE_SEED, "examples": spec.examples}
    train = [ensemble_unit(spec.network, seeds)]
    train += [network_unit(spec.other(widths), 0) for _, widths in spec.architectures]
    compared = [
        Unit(IDENTIFY_KIND, {"network": spec.network.to_dict(), "seeds": seeds, "probe": probe,
                             "measure": row.measure, "params": dict(row.params), "exclude": ["output"]})
        for row in spec.rows
    ]
    compared += [
        Unit(ARCHITECTURE_KIND, {"reference": spec.network.to_dict(), "other": spec.other(widths).to_dict(),
                                 "probe": probe,
                                 "measures": [{"measure": r.measure, "params": dict(r.params)}
                                              for r in ARCHITECTURE_MEASURES]})
        for _, widths in spec.architectures
    ]
    return [train, compared]


# ---------------------------------------------------------------------------- the units


@strict_signature
def probe_images(probe: Mapping[str, Any], data_dir=None):
    """The probe images ``{"split", "seed", "examples"}``: the first ``examples`` of ``torch.randperm`` over the split.

    The permutation is drawn by a generator seeded with ``seed``, so the probe of ``n`` examples
    is the first ``n`` of the probe of any larger size (nested subsets, the same in every unit).
    """
    import torch

    from layer_sim.data import load_mnist

    images = load_mnist(probe["split"], data_dir)[0]
    if probe["examples"] > len(images):
        raise ConfigError(f"sanity_check: examples={probe['examples']} exceeds the {len(images)} {probe['split']} images")
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(probe["seed"]))[: probe["examples"]]
    return images[idx]


def _meta_array(meta: dict) -> np.ndarray:
    # JSON in a 0-d string array: np.load reads it back without pickle, floats exactly (repr round trip).
    return np.array(json.dumps(meta, allow_nan=False))


@strict_signature
def save_identification(res: LayerIdentification, path: Path) -> Path:
    """Write ``res`` whole to the ``.npz`` file ``path`` (no pickle); :func:`load_identification` reads it back."""
    meta = {"measure": res.measure, "params": dict(res.params), "layers": list(res.layers),
            "accuracy": res.accuracy, "per_layer": res.per_layer, "stderr": res.stderr}
    np.savez(path, meta=_meta_array(meta), scores=res.scores, predictions=res.predictions, confusion=res.confusion,
             jackknife=res.jackknife)
    return Path(path)


@unit_kind(IDENTIFY_KIND)
def identify_unit(spec: dict, context: UnitContext) -> UnitResult:
    """One index's layer identification over the trained networks; the whole result in ``identification.npz``.

    Metrics: ``accuracy``, ``stderr`` (with >= 3 networks), ``per_layer/<layer>``,
    ``extract_seconds`` and ``identification_seconds``.
    """
    from layer_sim.analysis import layer_identification
    from layer_sim.representations import extract

    network = NetworkSpec.from_dict(spec["network"])
    probe = probe_images(spec["probe"], context.data_dir)
    models = [load_network(network, s, context).model for s in spec["seeds"]]
    t0 = time.perf_counter()
    reps = [extract(m, probe, device=context.device) for m in models]
    t1 = time.perf_counter()
    res = layer_identification(reps, spec["measure"], exclude=spec["exclude"], device=context.device,
                               progress=False, **spec["params"])
    t2 = time.perf_counter()
    save_identification(res, context.output_dir / "identification.npz")
    metrics = {"accuracy": res.accuracy, "extract_seconds": t1 - t0, "identification_seconds": t2 - t1,
               **{f"per_layer/{k}": v for k, v in res.per_layer.items()}}
    if res.stderr is not None:
        metrics["stderr"] = res.stderr
    return UnitResult(metrics=metrics, artefacts={"identification": "identification.npz"})


@unit_kind(ARCHITECTURE_KIND)
def architecture_unit(spec: dict, context: UnitContext) -> UnitResult:
    """Every layer of another architecture's network 0 (rows) against reference network 0 (columns).

    One matrix per measure, saved in ``matrices.npz``.
    """
    from layer_sim.analysis import compare
    from layer_sim.representations import extract

    probe = probe_images(spec["probe"], context.data_dir)
    reps = [extract(load_network(NetworkSpec.from_dict(spec[k]), 0, context).model, probe, device=context.device)
            for k in ("other", "reference")]
    mats = [compare(*reps, measure=m["measure"], device=context.device, **m["params"]) for m in spec["measures"]]
    meta = {"rows": list(mats[0].rows), "cols": list(mats[0].cols),
            "measures": [{"measure": m.measure, "params": dict(m.params)} for m in mats]}
    np.savez(context.output_dir / "matrices.npz", meta=_meta_array(meta),
             **{f"values{k}": m.values for k, m in enumerate(mats)})
    return UnitResult(artefacts={"matrices": "matrices.npz"})


# ---------------------------------------------------------------------------- collecting


def _npz(path: Path, what: str) -> tuple[dict, Any]:
    try:
        data = np.load(path, allow_pickle=False)
        return json.loads(str(data["meta"])), data
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"sanity_check: the {what} file {path} cannot be read ({exc}); delete that run from the "
                        "store (or the store) and rerun to recompute it") from None


@strict_signature
def load_identification(path: Path) -> LayerIdentification:
    """The :class:`LayerIdentification` that :func:`save_identification` wrote to ``path``; DataError if unreadable."""
    meta, data = _npz(path, "identification")
    return LayerIdentification(meta["measure"], meta["params"], tuple(meta["layers"]), data["scores"],
                               data["predictions"], meta["accuracy"], meta["per_layer"], data["confusion"],
                               data["jackknife"], meta["stderr"])


@strict_signature
def collect(store: Store, spec: SanityCheckSpec) -> SanityCheckResult:
    """The :class:`SanityCheckResult` of ``spec``, read from ``store`` and the artefact files it names.

    Raises
    ------
    IncompleteError
        Some unit of :func:`plan` is not done (the message says how many, and to rerun).
    DataError
        An artefact file is missing or damaged.
    """
    train_units, compare_units = plan(spec)
    records = done_runs(store, train_units + compare_units, what="sanity check")
    train, compared = records[: len(train_units)], records[len(train_units):]
    ensemble, others = train[0], train[1:]
    idents, archs = compared[: len(spec.rows)], compared[len(spec.rows):]
    rows = tuple(RowResult(row, load_identification(rec.artefacts["identification"]), rec.metrics["identification_seconds"])
                 for row, rec in zip(spec.rows, idents))
    comparisons = []
    for (name, widths), trained, rec in zip(spec.architectures, others, archs):
        meta, data = _npz(rec.artefacts["matrices"], "architecture comparison")
        mats = tuple(SimilarityMatrix(data[f"values{k}"], meta["rows"], meta["cols"], m["measure"], m["params"],
                                      row_label=name, col_label="reference")
                     for k, m in enumerate(meta["measures"]))
        comparisons.append(ArchitectureComparison(name, widths, trained.metrics["test_accuracy"],
                                                  ARCHITECTURE_MEASURES, mats))
    timings = Timings(train_or_load=sum(r.seconds or 0.0 for r in train),
                      extract=sum(r.metrics["extract_seconds"] for r in idents),
                      identification=sum(r.seconds for r in rows),
                      architectures=sum(r.seconds or 0.0 for r in archs),
                      total=sum(r.seconds or 0.0 for r in records))
    seeds = range(spec.nets)
    return SanityCheckResult(rows, rows[0].identification.layers, tuple(spec.network.model.widths),
                             tuple(ensemble.metrics[f"test_accuracy/seed-{s}"] for s in seeds), spec.examples,
                             tuple(comparisons), timings, tuple(bool(ensemble.metrics[f"reused/seed-{s}"]) for s in seeds))


#: The sanity check as a registered experiment.
SANITY_CHECK = register_experiment(Experiment(NAME, SanityCheckSpec.from_dict, plan, collect))


@strict_signature
def sanity_check(
    *,
    store: Store | str | os.PathLike,
    nets: int | None = None,
    examples: int | None = None,
    full: bool = False,
    config: NetworkSpec | None = None,
    rows: Sequence[Row] = TABLE2_ROWS,
    architectures: Mapping[str, Sequence[int]] | None = None,
    executor: Executor | None = None,
    command: Sequence[str] | None = None,
    cache_dir=None,
    data_dir=None,
    device: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> SanityCheckResult:
    """Run the sanity check through the sweep driver into ``store`` and collect its result.

    Networks ``0..nets-1`` use ``config`` (default: :data:`layer_sim.training.DEFAULT_SPEC`) with
    seed *k*; checkpoints are reused from ``cache_dir`` when their spec key and seed match, and
    the missing ones are trained together by :func:`layer_sim.training.train_or_load_ensemble`
    (one ``network.ensemble`` unit). Representations (post-activation of every hidden layer; logits
    excluded from identification, as in the paper) are taken on a fixed random subset of
    ``examples`` MNIST test images (``torch.randperm(10000)`` with generator seed 0), more than any
    layer width so that CCA is not degenerate. Units already done in ``store`` are skipped, so a
    rerun after an interruption does only what is left.

    Parameters
    ----------
    store : Store or path-like
        Results store (created if missing); unit artefacts go to ``artefacts/`` beside it.
    nets : int, default=None
        Number of networks (>= 2; >= 3 for a standard error). None: 5, or 10 with ``full``.
    examples : int, default=None
        Number of test examples. None: 2000, or 3000 with ``full``.
    full : bool, default=False
        Paper-sized run (10 networks, as in Table 2) and a second other architecture.
    config : NetworkSpec, default=None
        Architecture, task and training recipe of the main networks.
    rows : sequence of Row, default=TABLE2_ROWS
        Indexes to evaluate (at least one).
    architectures : mapping name -> widths, default=None
        Other architectures compared with network 0 (trained with ``config``'s recipe, seed 0).
        None: :data:`DEFAULT_ARCHITECTURES` (or :data:`FULL_ARCHITECTURES` with ``full``); ``{}``
        skips this setting.
    executor : Executor or None, default=None
        Where units run (:func:`layer_sim.runs.make_executor`); None: in this process.
    command : sequence of str or None, default=None
        Command line recorded with each sweep (None: ``sys.argv``).
    cache_dir : path, default=None
        Checkpoint cache; None: :func:`default_cache_dir`.
    data_dir : path, default=None
        MNIST directory (see :func:`layer_sim.data.load_mnist`).
    device : str, default=None
        Where to train, extract and compare (None: CPU).
    progress : bool or None, default=None
        Progress bar of each sweep; ``None``: only when stderr is a terminal.
    log : callable str -> Any, default=None
        Receives one line per stage and per sweep (e.g. ``print``).

    Returns
    -------
    SanityCheckResult
    """
    from layer_sim._device import resolve_device

    spec = SanityCheckSpec.make(nets=nets, examples=examples, full=full, network=config, rows=rows,
                                architectures=architectures)
    device = resolve_device("sanity_check", device)
    run_experiment(SANITY_CHECK, spec, store, executor, command=command, device=str(device or "cpu"),
                   data_dir=data_dir, cache_dir=cache_dir, progress=progress, log=log)
    return collect_experiment(SANITY_CHECK, spec, store)
