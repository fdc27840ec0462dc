r"""Why our Table 2 differs from Kornblith et al.'s (2019): layer widths, examples per feature, CNN layouts.

The sanity check (:mod:`~layer_sim.experiments.sanity`) on 4 × 256 MLPs finds CCA identifying
~99 % of layers where the paper's Tiny-10 CNNs on CIFAR-10 give 1.4 %. Three factors differ, and
this study varies each one with everything else held fixed, running Kornblith et al.'s layer
identification (:func:`~layer_sim.analysis.layer_identification`, jackknife SE over networks)
for every index of Table 2:

1. **widths** (part ``"widths"``): MLPs whose hidden layers have equal widths (the sanity check's
   784-256-256-256-256-10), unequal widths (784-512-256-128-64-10) and randomly drawn widths
   (:func:`draw_widths`), on the sanity check's probe of ``examples`` test images;
2. **examples per feature** (part ``"examples"``): the equal- and unequal-width networks on
   ``n = ceil(r · p)`` test images for each ratio ``r`` in ``ratios``, ``p`` the widest hidden
   layer (n is capped at the 10,000 MNIST test images: ``r = 20`` with ``p = 512`` gives
   10,000, i.e. ``r`` = 19.5, and the cell says so);
3. **CNN layouts** (part ``"cnn"``): LeNet-5 and Tiny-10 trained on MNIST, their conv maps
   turned into matrices by :func:`identification_layout` as ``"flatten"`` (n rows, c·h·w
   features), ``"channels"`` (n·g² rows, c features: channels as neurons on a common g × g grid)
   or ``"spatial_mean"`` (n rows, c features).

Probes are nested: the probe of n examples is the first n of ``torch.randperm(10000)`` with
generator seed 0 (:func:`~layer_sim.experiments.sanity.probe_images`), as in the sanity check, so
the equal-width cells at n = 2000 are the sanity check's own identifications.

The study is an :class:`~layer_sim.experiments.Experiment` (``"table2-study"``): stage 1 trains or
loads the networks (one ``network.ensemble`` unit per MLP family, one ``network.train`` unit per
CNN and seed), stage 2 runs one ``table2.identify`` unit per cell; :func:`collect` reads the
:class:`Table2StudyResult` back from the store. RBF CKA keeps an n × n Gram per layer and costs
O(rows²) per pair, so its cells are planned only up to ``rbf_max_rows`` matrix rows; on flattened
conv maps wider than ``flatten_max_features`` only the Gram-route indexes (:data:`GRAM_MEASURES`,
O(rows²·p)) are planned, the feature-space ones (CCA family, regression, Procrustes: O(rows·p²) or
a p × p SVD) are not. PWCCA is not planned where the shapes force two or more (not all)
canonical correlations of a pair of layers to 1: its weights are then not defined
(:func:`~layer_sim.measures.pwcca` raises). The others are listed in
``Table2StudyResult.not_computed`` with the reason.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from layer_sim._options import Ascending, Choice, Int, Maybe, Real, check, strict_signature
from layer_sim.analysis import LayerIdentification
from layer_sim.data.tasks import TaskSpec
from layer_sim.errors import ConfigError, InputError
from layer_sim.experiments.driver import Experiment, collect_experiment, done_runs, register_experiment, run_experiment
from layer_sim.experiments.networks import ensemble_unit, load_network, network_unit
from layer_sim.experiments.pruning import study_recipe
from layer_sim.experiments.sanity import (
    PROBE_SEED,
    PROBE_SPLIT,
    TABLE2_ROWS,
    Row,
    load_identification,
    probe_images,
    save_identification,
)
from layer_sim.models import MODEL_SPECS
from layer_sim.representations import LAYOUTS, OUTPUT, Representations, conv_layout
from layer_sim.runs import Executor, Unit, UnitContext, UnitResult, unit_kind
from layer_sim.store import Store
from layer_sim.training.spec import DEFAULT_SPEC, NetworkSpec

__all__ = [
    "NAME",
    "IDENTIFY_KIND",
    "PARTS",
    "UNEQUAL_WIDTHS",
    "RATIOS",
    "FULL_RATIOS",
    "CNNS",
    "TEST_IMAGES",
    "GRAM_MEASURES",
    "draw_widths",
    "identification_layout",
    "forced_share",
    "conv_layers",
    "Family",
    "Table2StudySpec",
    "FamilyResult",
    "Cell",
    "Table2StudyResult",
    "plan",
    "collect",
    "TABLE2_STUDY",
    "run_table2_study",
]

#: Registered name of the experiment (the store's ``experiments`` table, the report section).
NAME = "table2-study"
#: Unit kind of stage 2: one layer identification of one index on one family, probe size and layout.
IDENTIFY_KIND = "table2.identify"
#: The study's parts, in report order.
PARTS = ("widths", "examples", "cnn")
#: The unequal-width MLP of the issue: each hidden layer half as wide as the one before.
UNEQUAL_WIDTHS: tuple[int, ...] = (784, 512, 256, 128, 64, 10)
#: n / p of the examples part (default and ``full``).
RATIOS: tuple[float, ...] = (1.1, 1.5, 2.0, 4.0, 8.0, 20.0)
FULL_RATIOS: tuple[float, ...] = (1.1, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0)
#: CNNs of the cnn part (model kinds of :data:`layer_sim.models.MODEL_SPECS`).
CNNS: tuple[str, ...] = ("LeNet5", "Tiny10")
#: Images in the MNIST test split: the probe can hold no more.
TEST_IMAGES = 10_000
#: Indexes whose cost on n rows of p > n features goes through the n × n Gram (cheap when flattened maps are wide).
GRAM_MEASURES = frozenset({"linear_cka", "linear_cka_debiased", "linear_hsic", "rbf_cka"})

_RATIO = Real(1.0, None, low_open=True)


# ----------------------------------------------------------------------------- pure helpers


@strict_signature
def draw_widths(seed: int, *, depth: int = 4, low: int = 32, high: int = 512, inputs: int = 784,
                classes: int = 10) -> tuple[int, ...]:
    r"""An MLP's widths with ``depth`` hidden layers drawn log-uniformly from ``[low, high]``.

    :math:`w_k = \mathrm{round}(\exp(u_k))`, :math:`u_k \sim U(\log \text{low}, \log \text{high})`
    i.i.d., drawn by ``numpy.random.default_rng(seed).uniform`` in one call of ``depth`` values
    (unsorted: a wide layer may follow a narrow one). Log-uniform so that narrow and wide layers
    are equally likely on a ratio scale, as the equal/unequal contrast is about ratios of widths.

    Returns
    -------
    tuple of int
        ``(inputs, w_1, ..., w_depth, classes)``.

    Examples
    --------
    >>> draw_widths(0)
    (784, 187, 68, 36, 34, 10)
    >>> draw_widths(0) == draw_widths(0), all(32 <= w <= 512 for w in draw_widths(7)[1:-1])
    (True, True)
    """
    seed = check("draw_widths", "seed", Int(0), seed)
    depth = check("draw_widths", "depth", Int(1), depth)
    low = check("draw_widths", "low", Int(1), low)
    high = check("draw_widths", "high", Int(low), high)
    u = np.random.default_rng(seed).uniform(math.log(low), math.log(high), size=depth)
    hidden = tuple(min(high, max(low, int(round(math.exp(v))))) for v in u)
    return (int(inputs), *hidden, int(classes))


@strict_signature
def identification_layout(reps: Representations, layout: str) -> Representations:
    r"""Every layer of ``reps`` as a matrix in ``layout``, so that any two layers can be compared.

    - ``"flatten"``: as extracted, ``(n, c·h·w)``;
    - ``"spatial_mean"``: each channel averaged over positions, ``(n, c)``
      (:func:`~layer_sim.representations.with_layout`);
    - ``"channels"``: every conv map average-pooled (``adaptive_avg_pool2d``) to the grid of the
      smallest map, ``g_h × g_w``, then channels as neurons: ``(n·g_h·g_w, c)``, rows ordered by
      example, then position. Layer identification compares every layer with every other, and
      CCA needs paired rows: the library's own ``"channels"`` layout keeps all ``h·w`` positions,
      so two layers of different sizes have different rows and cannot be compared. On the common
      grid, row (example, position) of every layer describes the same image region. Every layer
      must be a conv map (a dense layer has no positions to pair).

    Raises
    ------
    UnknownNameError
        An unknown ``layout``.
    InputError
        ``"channels"`` with a layer that is not a conv map.

    Examples
    --------
    >>> import torch
    >>> r = Representations({"a": torch.rand(3, 2 * 4 * 4), "b": torch.rand(3, 5 * 2 * 2)},
    ...                     shapes={"a": (2, 4, 4), "b": (5, 2, 2)})
    >>> identification_layout(r, "channels")
    Representations(a: (12, 2), b: (12, 5), layout='channels')
    """
    import torch

    layout = Choice(*LAYOUTS).check("identification_layout: layout", layout)
    if layout == "flatten":
        return reps
    if layout == "spatial_mean":
        from layer_sim.representations import with_layout

        return with_layout(reps, "spatial_mean")
    dense = [name for name, shape in reps.shapes.items() if len(shape) != 3]
    if dense:
        raise InputError(f"identification_layout: layout 'channels' needs conv maps (c, h, w) only; layers {dense} "
                         f"have shapes {[reps.shapes[d] for d in dense]}")
    grid = (min(s[1] for s in reps.shapes.values()), min(s[2] for s in reps.shapes.values()))
    tensors = {name: conv_layout(torch.nn.functional.adaptive_avg_pool2d(reps.unflattened(name), grid), "channels")
               for name in reps}
    return Representations(tensors, layout="channels")


@strict_signature
def forced_share(widths: Sequence[int], rows: int) -> float:
    r"""Share of canonical correlations that the shapes alone force to 1, averaged over every pair of layers.

    Centred, ``rows`` rows span at most ``rows - 1`` dimensions; generic layers of ``p_i`` and
    ``p_j`` features have ranks :math:`r = \min(p, \text{rows} - 1)`, and two column spaces of
    those dimensions share at least :math:`\max(0, r_i + r_j - (\text{rows} - 1))` dimensions,
    each a canonical correlation of exactly 1 whatever the data (see
    :func:`~layer_sim.representations.cca_rows_needed`). The value is the mean over all ordered
    pairs :math:`(i, j)` of that count divided by the :math:`\min(r_i, r_j)` correlations CCA
    averages: 0 when every pair has enough rows, 1 when every correlation is forced (e.g.
    :math:`p \ge \text{rows} - 1` for every layer). A property of the shapes only (dead units
    lower the real ranks).

    Examples
    --------
    >>> forced_share([256, 256, 256], 2000)
    0.0
    >>> forced_share([3456, 864], 2000)   # every pair with the 3456-wide layer is all ones; (864, 864) none
    0.75
    >>> forced_share([150, 100], 201)     # (a, a): 100 of 150 forced, (a, b) and (b, a): 50 of 100, (b, b): 0
    0.41666666666666663
    """
    rows = check("forced_share", "rows", Int(2), rows)
    ranks = [min(check("forced_share", "widths", Int(1), p), rows - 1) for p in widths]
    if not ranks:
        raise ConfigError("forced_share: widths must name at least one layer")
    shares = [forced / min(a, b) for forced, a, b in _pair_ties(ranks, rows)]
    return math.fsum(shares) / len(shares)


def _pair_ties(ranks: Sequence[int], rows: int) -> list[tuple[int, int, int]]:
    """``(forced, r_i, r_j)`` for every ordered pair of layers of ranks ``r``: correlations the shapes force to 1 on ``rows`` rows."""
    return [(max(0, a + b - (rows - 1)), a, b) for a in ranks for b in ranks]


@strict_signature
def conv_layers(network: NetworkSpec) -> dict[str, tuple[int, int, int]]:
    """The conv-map layers of ``network``'s model and their shapes: ``layer_names`` of per-example shape (c, h, w), h·w > 1.

    Read from one forward pass of an untrained model on two blank images. A global average pool
    (Tiny-10's ``pool``, (64, 1, 1)) is left out: it is the spatial mean of the map before it, so
    under ``"spatial_mean"`` the two would be the same matrix.

    Examples
    --------
    >>> from layer_sim.models import LeNet5Spec
    >>> conv_layers(NetworkSpec(model=LeNet5Spec()))
    {'features.1': (6, 24, 24), 'features.2': (6, 12, 12), 'features.4': (16, 8, 8), 'features.5': (16, 4, 4)}
    """
    import torch

    from layer_sim.representations import extract

    model = network.build_model(seed=0)
    names = getattr(model, "layer_names", None)
    if not names:
        raise ConfigError(f"table2 study: model {network.model.kind} has no layer_names to take conv maps from")
    shapes = extract(model, torch.zeros(2, 1, 28, 28), layers=list(names)).shapes
    return {name: tuple(s) for name, s in shapes.items() if len(s) == 3 and s[1] * s[2] > 1}


# ----------------------------------------------------------------------------- the spec


@strict_signature
@dataclass(frozen=True)
class Family:
    """Networks of one architecture compared with each other: ``name`` (``"equal"``, ``"random-0"``, ``"Tiny10"``, ...)."""

    name: str
    network: NetworkSpec

    @property
    def is_mlp(self) -> bool:
        return self.network.model.kind == "MLP"


@strict_signature
@dataclass(frozen=True)
class Table2StudySpec:
    """What the study runs; :meth:`make` fills the defaults (or those of ``full``).

    Attributes
    ----------
    mlp : NetworkSpec, default=DEFAULT_SPEC
        The equal-width MLP (the sanity check's); the other MLPs replace its widths only.
    unequal : tuple of int, default=UNEQUAL_WIDTHS
    width_draws : tuple of int, default=(0,)
        Seeds of :func:`draw_widths` (as many hidden layers as ``mlp``, widths in ``random_range``).
    random_range : (int, int), default=(32, 512)
    nets : int >= 3, default=5
        Networks per family, seeds ``0..nets-1`` (at least 3 for a jackknife SE).
    examples : int, default=2000
        Probe size of the widths and cnn parts.
    ratios : tuple of float > 1
        n / p of the examples part (strictly increasing).
    rbf_max_rows : int or None, default=2048
        RBF CKA cells with more matrix rows are not planned; None plans them all.
    flatten_max_features : int or None, default=2048
        Flattened CNN cells whose widest layer has more features are planned for
        :data:`GRAM_MEASURES` only; None plans them all. The default leaves out LeNet-5's
        flattened feature-space cells (relu1 has 3,456 features): on this project's 2-core
        machine they took 420 s of the 527 s its 13 flattened cells took (idle, 2026-12-02),
        for correlations that relu1's 3,456 features on 2,000 rows force to 1 anyway.
    cnns : tuple of str, default=("LeNet5",)
        Model kinds of the cnn part, from :data:`CNNS` (``()`` skips it). Tiny-10 is in ``full``
        only: on this project's idle 2-core machine (2026-12-02) it added 21 min 43 s to the
        13-minute default run, 932 s of it the Gram-route cells of its flattened maps (up to
        12,544 features), 188 s its five trainings.
    cnn_epochs : int, default=2
        Epochs of :func:`~layer_sim.experiments.pruning.study_recipe` (the original layer_sim's
        LeNet-5 recipe, shortened) for every CNN.
    cnn_limit_train : int or None, default=20000
        Train the CNNs on the first ``cnn_limit_train`` MNIST training images only (None: all 60,000);
        2 epochs on 20,000 images give LeNet-5 95.0-96.1 % and Tiny-10 98.7 % test accuracy.
    rows : tuple of Row, default=TABLE2_ROWS
        The indexes.
    """

    mlp: NetworkSpec = DEFAULT_SPEC
    unequal: tuple[int, ...] = UNEQUAL_WIDTHS
    width_draws: tuple[int, ...] = (0,)
    random_range: tuple[int, int] = (32, 512)
    nets: int = 5
    examples: int = 2000
    ratios: tuple[float, ...] = RATIOS
    rbf_max_rows: int | None = 2048
    flatten_max_features: int | None = 2048
    cnns: tuple[str, ...] = ("LeNet5",)
    cnn_epochs: int = 2
    cnn_limit_train: int | None = 20_000
    rows: tuple[Row, ...] = TABLE2_ROWS

    def __post_init__(self) -> None:
        where = "Table2StudySpec"
        if not isinstance(self.mlp, NetworkSpec) or self.mlp.model.kind != "MLP":
            raise ConfigError(f"{where}: mlp must be a NetworkSpec of an MLP, got {self.mlp!r}")
        widths = self.mlp.model.widths
        unequal = tuple(check(where, "unequal", Int(1), w) for w in self.unequal)
        if len(unequal) < 3 or (unequal[0], unequal[-1]) != (widths[0], widths[-1]):
            raise ConfigError(f"{where}: unequal must keep the input and output widths {widths[0]}, {widths[-1]} of "
                              f"mlp and have a hidden layer, got {list(self.unequal)}")
        object.__setattr__(self, "unequal", unequal)
        object.__setattr__(self, "width_draws", Ascending(Int(0)).check(f"{where}: width_draws (sorted)",
                                                                       sorted(self.width_draws)))
        if isinstance(self.random_range, (str, bytes)) or len(tuple(self.random_range)) != 2:
            raise ConfigError(f"{where}: random_range must be two integers (low, high), got {self.random_range!r}")
        low, high = tuple(self.random_range)
        low = check(where, "random_range[0]", Int(1), low)
        object.__setattr__(self, "random_range", (low, check(where, "random_range[1]", Int(low), high)))
        object.__setattr__(self, "nets", check(where, "nets", Int(3), self.nets))
        object.__setattr__(self, "examples", check(where, "examples", Int(2, TEST_IMAGES), self.examples))
        object.__setattr__(self, "ratios", Ascending(_RATIO).check(f"{where}: ratios", self.ratios))
        object.__setattr__(self, "rbf_max_rows", check(where, "rbf_max_rows", Maybe(Int(4)), self.rbf_max_rows))
        object.__setattr__(self, "flatten_max_features",
                           check(where, "flatten_max_features", Maybe(Int(1)), self.flatten_max_features))
        cnns = tuple(self.cnns)
        for kind in cnns:
            Choice(*CNNS).check(f"{where}: cnns", kind)
        if len(set(cnns)) != len(cnns):
            raise ConfigError(f"{where}: cnns must be distinct, got {list(cnns)}")
        object.__setattr__(self, "cnns", cnns)
        object.__setattr__(self, "cnn_epochs", check(where, "cnn_epochs", Int(1), self.cnn_epochs))
        object.__setattr__(self, "cnn_limit_train", check(where, "cnn_limit_train", Maybe(Int(1)), self.cnn_limit_train))
        rows = tuple(self.rows)
        if not rows or not all(isinstance(r, Row) for r in rows):
            raise ConfigError(f"{where}: rows must be a non-empty sequence of Row, got {self.rows!r}")
        object.__setattr__(self, "rows", rows)
        for name, p in (("equal", max(widths[1:-1])), ("unequal", max(unequal[1:-1]))):
            if self.examples <= p:
                raise ConfigError(f"{where}: examples must exceed the widest hidden layer of the {name} MLP ({p}) "
                                  f"for the widths part, got {self.examples}")

    @classmethod
    def make(cls, *, full: bool = False, **changes) -> Table2StudySpec:
        """The defaults, or with ``full``: 10 networks, three width draws, :data:`FULL_RATIOS`, RBF CKA up to 10,000 rows, every flattened cell, LeNet-5 and Tiny-10 trained 5 epochs on all 60,000 images.

        ``changes`` override single fields (None leaves the default).
        """
        base = dict(nets=10, width_draws=(0, 1, 2), ratios=FULL_RATIOS, rbf_max_rows=TEST_IMAGES,
                    flatten_max_features=None, cnns=CNNS, cnn_epochs=5, cnn_limit_train=None) if full else {}
        return cls(**{**base, **{k: v for k, v in changes.items() if v is not None}})

    # ------------------------------------------------------------------ what it compares

    def mlp_families(self) -> tuple[Family, ...]:
        """``equal``, ``unequal`` and one ``random-<seed>`` per width draw."""
        widths = self.mlp.model.widths
        low, high = self.random_range
        draws = [Family(f"random-{s}", self.mlp.replace(widths=draw_widths(s, depth=len(widths) - 2, low=low, high=high,
                                                                           inputs=widths[0], classes=widths[-1])))
                 for s in self.width_draws]
        return (Family("equal", self.mlp), Family("unequal", self.mlp.replace(widths=self.unequal)), *draws)

    def cnn_families(self) -> tuple[Family, ...]:
        """One family per CNN kind, trained with ``study_recipe(cnn_epochs)``."""
        task = TaskSpec(limit_train=self.cnn_limit_train)
        return tuple(Family(kind, NetworkSpec(model=MODEL_SPECS[kind](), task=task, recipe=study_recipe(self.cnn_epochs)))
                     for kind in self.cnns)

    def families(self) -> tuple[Family, ...]:
        return self.mlp_families() + self.cnn_families()

    def examples_for(self, family: Family, ratio: float) -> int:
        """``min(ceil(ratio · p), TEST_IMAGES)`` with ``p`` the widest hidden layer of ``family``."""
        p = max(family.network.model.widths[1:-1])
        return min(math.ceil(ratio * p - 1e-9), TEST_IMAGES)

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; :meth:`from_dict` inverts it."""
        return {"mlp": self.mlp.to_dict(), "unequal": list(self.unequal), "width_draws": list(self.width_draws),
                "random_range": list(self.random_range), "nets": self.nets, "examples": self.examples,
                "ratios": list(self.ratios), "rbf_max_rows": self.rbf_max_rows,
                "flatten_max_features": self.flatten_max_features, "cnns": list(self.cnns),
                "cnn_epochs": self.cnn_epochs, "cnn_limit_train": self.cnn_limit_train,
                "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Table2StudySpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "mlp": NetworkSpec.from_dict(d["mlp"]), "unequal": tuple(d["unequal"]),
                      "width_draws": tuple(d["width_draws"]), "random_range": tuple(d["random_range"]),
                      "ratios": tuple(d["ratios"]), "cnns": tuple(d["cnns"]),
                      "rows": tuple(Row.from_dict(r) for r in d["rows"])})


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FamilyResult:
    """The networks of one family: architecture and test accuracy per seed."""

    name: str
    kind: str
    widths: tuple[int, ...] | None
    test_accuracies: tuple[float, ...]

    def record(self) -> dict[str, Any]:
        accs = [100 * a for a in self.test_accuracies]
        return {"family": self.name, "model": self.kind,
                "widths": "-".join(map(str, self.widths)) if self.widths else "",
                "networks": len(accs), "test_accuracy_mean": math.fsum(accs) / len(accs), "test_accuracy_min": min(accs)}


@strict_signature
@dataclass(frozen=True)
class Cell:
    """One layer identification: one index on one family, probe size and layout.

    ``rows`` and ``features`` (per layer) are the shapes the index saw after the layout;
    ``ratio`` is the requested n / p of the examples part (None elsewhere); ``forced`` is
    :func:`forced_share` of those shapes.
    """

    part: str
    family: str
    row: Row
    examples: int
    layout: str
    rows: int
    features: Mapping[str, int]
    ratio: float | None
    forced: float
    identification: LayerIdentification = field(repr=False)
    seconds: float

    @property
    def widest(self) -> int:
        return max(self.features.values())

    @property
    def chance(self) -> float:
        """Accuracy of a uniform random guess: one over the number of layers."""
        return 1 / len(self.identification.layers)

    def record(self) -> dict[str, Any]:
        """Flat JSON: part, family, index, layout, n, rows, widest p, rows / p, accuracy, SE and chance (%), forced share."""
        ident = self.identification
        return {"part": self.part, "family": self.family, "index": self.row.label, "measure": self.row.slug,
                "layout": self.layout, "examples": self.examples, "rows": self.rows, "widest": self.widest,
                "ratio": self.ratio, "rows_per_feature": self.rows / self.widest,
                "accuracy": 100 * ident.accuracy, "stderr": None if ident.stderr is None else 100 * ident.stderr,
                "chance": 100 * self.chance, "forced_share": self.forced, "paper": self.row.paper,
                "seconds": self.seconds}


@dataclass(frozen=True)
class Table2StudyResult:
    """Everything the study computed (data only; ``layer_sim.report.table2_study`` writes it).

    ``not_computed`` lists the planned-out cells: ``{"part", "family", "index", "layout",
    "examples", "rows", "reason"}``.
    """

    spec: Table2StudySpec
    families: tuple[FamilyResult, ...]
    cells: tuple[Cell, ...]
    not_computed: tuple[Mapping[str, Any], ...]
    seconds: Mapping[str, float]

    def family(self, name: str) -> FamilyResult:
        return next(f for f in self.families if f.name == name)

    def part(self, part: str) -> list[Cell]:
        """The cells of one part, in plan order."""
        return [c for c in self.cells if c.part == part]

    def records(self) -> list[dict]:
        return [c.record() for c in self.cells]


# ----------------------------------------------------------------------------- planning


def _cell_spec(family: Family, seeds: list[int], examples: int, row: Row, layout: str,
               layers: list[str] | None) -> dict:
    return {"network": family.network.to_dict(), "seeds": seeds,
            "probe": {"split": PROBE_SPLIT, "seed": PROBE_SEED, "examples": examples},
            "measure": row.measure, "params": dict(row.params), "layout": layout, "layers": layers}


def _rows_of(examples: int, layout: str, shapes: Mapping[str, tuple[int, int, int]] | None) -> int:
    if layout != "channels":
        return examples
    return examples * min(s[1] for s in shapes.values()) * min(s[2] for s in shapes.values())


def _forced_ties(features: Sequence[int], rows: int) -> int:
    """Most canonical correlations the shapes force to 1 in a pair of layers where some are left free (0: none).

    PWCCA is not defined when two or more, but not all, are forced (see :func:`~layer_sim.measures.pwcca`);
    nominal widths bound the real ranks from above, so a cell planned on them never raises.
    """
    ties = _pair_ties([min(p, rows - 1) for p in features], rows)
    return max((forced for forced, a, b in ties if forced < min(a, b)), default=0)


def _skip_reason(spec: Table2StudySpec, row: Row, layout: str, rows: int, features: Sequence[int]) -> str | None:
    """Why a cell is not planned (None: it is)."""
    widest = max(features)
    if row.measure == "rbf_cka" and spec.rbf_max_rows is not None and rows > spec.rbf_max_rows:
        return f"RBF CKA on {rows} rows > rbf_max_rows={spec.rbf_max_rows}"
    if (layout == "flatten" and spec.flatten_max_features is not None and widest > spec.flatten_max_features
            and row.measure not in GRAM_MEASURES):
        return (f"{row.measure} on flattened maps of {widest} features > flatten_max_features="
                f"{spec.flatten_max_features} (feature-space cost)")
    if row.measure == "pwcca" and (ties := _forced_ties(features, rows)) >= 2:
        return (f"PWCCA not defined: {rows} rows force up to {ties} canonical correlations to 1, whose variates "
                f"(hence the weights) are not unique")
    return None


def _cells(spec: Table2StudySpec):
    """``(part, family, row, examples, layout, ratio, unit spec or None, rows, reason)`` for every cell, in report order."""
    seeds = list(range(spec.nets))
    mlps = spec.mlp_families()
    out = []

    def add(part, family, row, examples, layout, ratio, layers, shapes):
        rows = _rows_of(examples, layout, shapes)
        if shapes is None:
            features = family.network.model.widths[1:-1]
        else:
            features = [math.prod(s) if layout == "flatten" else s[0] for s in shapes.values()]
        reason = _skip_reason(spec, row, layout, rows, features)
        unit = _cell_spec(family, seeds, examples, row, layout, layers) if reason is None else None
        out.append((part, family, row, examples, layout, ratio, unit, rows, reason))

    for family in mlps:
        for row in spec.rows:
            add("widths", family, row, spec.examples, "flatten", None, None, None)
    for family in mlps[:2]:
        for ratio in spec.ratios:
            for row in spec.rows:
                add("examples", family, row, spec.examples_for(family, ratio), "flatten", ratio, None, None)
    for family in spec.cnn_families():
        shapes = conv_layers(family.network)
        for layout in LAYOUTS:
            for row in spec.rows:
                add("cnn", family, row, spec.examples, layout, None, list(shapes), shapes)
    return out


@strict_signature
def plan(spec: Table2StudySpec) -> list[list[Unit]]:
    """Stage 1: the networks (an ensemble unit per MLP family, one unit per CNN and seed); stage 2: one unit per planned cell.

    Cells that share a unit (the equal-width MLP at the same n in two parts) run once. Stage 2
    runs the widths part, the CNN part's channels and spatial-mean cells, the examples part by
    increasing n, then the flattened CNN cells (p > n: slow, and every canonical correlation is
    forced to 1): an interrupted run has the cheap, informative cells first (report order is
    :func:`_cells`'s).
    """
    seeds = list(range(spec.nets))
    train = [ensemble_unit(f.network, seeds) for f in spec.mlp_families()]
    train += [network_unit(f.network, s) for f in spec.cnn_families() for s in seeds]
    units = {}
    def order(cell):
        part, layout, examples = cell[0], cell[4], cell[3]
        rank = {"widths": 0, "cnn": 1, "examples": 2}[part] if not (part == "cnn" and layout == "flatten") else 3
        return rank, examples if part == "examples" else 0

    cells = sorted(_cells(spec), key=order)  # stable
    for _part, _family, _row, _examples, _layout, _ratio, unit, _rows, _reason in cells:
        if unit is not None:
            u = Unit(IDENTIFY_KIND, unit)
            units.setdefault(u.key, u)
    return [train, list(units.values())]


# ----------------------------------------------------------------------------- the unit


@unit_kind(IDENTIFY_KIND)
def identify_cell(spec: dict, context: UnitContext) -> UnitResult:
    """One layer identification over the family's networks, in a layout; the whole result in ``identification.npz``.

    Metrics: ``accuracy``, ``stderr``, ``per_layer/<layer>``, ``rows`` (matrix rows after the
    layout), ``features/<layer>``, ``forced_share``, ``extract_seconds``, ``identification_seconds``.
    """
    from layer_sim.analysis import layer_identification
    from layer_sim.representations import extract

    network = NetworkSpec.from_dict(spec["network"])
    probe = probe_images(spec["probe"], context.data_dir)
    models = [load_network(network, s, context).model for s in spec["seeds"]]
    t0 = time.perf_counter()
    reps = [identification_layout(extract(m, probe, layers=spec["layers"], device=context.device), spec["layout"])
            for m in models]
    t1 = time.perf_counter()
    res = layer_identification(reps, spec["measure"], exclude=[OUTPUT], device=context.device, progress=False,
                               **spec["params"])
    t2 = time.perf_counter()
    save_identification(res, context.output_dir / "identification.npz")
    features = {name: int(reps[0][name].shape[1]) for name in res.layers}
    rows = int(reps[0][res.layers[0]].shape[0])
    metrics = {"accuracy": res.accuracy, "rows": rows, "forced_share": forced_share(list(features.values()), rows),
               "extract_seconds": t1 - t0, "identification_seconds": t2 - t1,
               **{f"per_layer/{k}": v for k, v in res.per_layer.items()},
               **{f"features/{k}": v for k, v in features.items()}}
    if res.stderr is not None:
        metrics["stderr"] = res.stderr
    return UnitResult(metrics=metrics, artefacts={"identification": "identification.npz"})


# ----------------------------------------------------------------------------- collecting


def _test_accuracies(record, seeds) -> tuple[float, ...]:
    return tuple(record.metrics[f"test_accuracy/seed-{s}"] for s in seeds)


@strict_signature
def collect(store: Store, spec: Table2StudySpec) -> Table2StudyResult:
    """The :class:`Table2StudyResult` of ``spec``, read from ``store`` and the artefact files it names.

    Raises
    ------
    IncompleteError
        Some unit of :func:`plan` is not done.
    DataError
        An artefact file is missing or damaged.
    """
    train_units, cell_units = plan(spec)
    records = done_runs(store, train_units + cell_units, what="table2 study")
    by_key = {u.key: r for u, r in zip(train_units + cell_units, records)}
    seeds = list(range(spec.nets))
    families = [FamilyResult(f.name, "MLP", tuple(f.network.model.widths), _test_accuracies(by_key[u.key], seeds))
                for f, u in zip(spec.mlp_families(), train_units)]
    cnn_runs = iter(train_units[len(families):])
    for f in spec.cnn_families():
        accs = tuple(by_key[next(cnn_runs).key].metrics["test_accuracy"] for _ in seeds)
        families.append(FamilyResult(f.name, f.network.model.kind, None, accs))
    cells, skipped, seconds = [], [], dict.fromkeys(PARTS, 0.0)
    loaded: dict[str, LayerIdentification] = {}
    counted: set[str] = set()
    for part, family, row, examples, layout, ratio, unit, rows, reason in _cells(spec):
        if unit is None:
            skipped.append({"part": part, "family": family.name, "index": row.label, "layout": layout,
                            "examples": examples, "rows": rows, "reason": reason})
            continue
        key = Unit(IDENTIFY_KIND, unit).key
        rec = by_key[key]
        if key not in loaded:
            loaded[key] = load_identification(rec.artefacts["identification"])
        if key not in counted:  # a unit shared by two parts counts once, in the first
            seconds[part] += rec.seconds or 0.0
            counted.add(key)
        ident = loaded[key]
        features = {k: int(rec.metrics[f"features/{k}"]) for k in ident.layers}
        cells.append(Cell(part, family.name, row, examples, layout, int(rec.metrics["rows"]), features, ratio,
                          rec.metrics["forced_share"], ident, rec.metrics["identification_seconds"]))
    seconds["training"] = sum(by_key[u.key].seconds or 0.0 for u in train_units)
    return Table2StudyResult(spec, tuple(families), tuple(cells), tuple(skipped), seconds)


#: The study as a registered experiment.
TABLE2_STUDY = register_experiment(Experiment(NAME, Table2StudySpec.from_dict, plan, collect))


@strict_signature
def run_table2_study(
    spec: Table2StudySpec | None = None,
    *,
    store: Store | str | os.PathLike,
    executor: Executor | None = None,
    command: Sequence[str] | None = None,
    cache_dir=None,
    data_dir=None,
    device: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> Table2StudyResult:
    """Run the study of ``spec`` (default :meth:`Table2StudySpec.make`) through the sweep driver into ``store``; collect it.

    Units already done in ``store`` are skipped, networks are reused from ``cache_dir`` (the
    equal-width MLPs are the sanity check's), so a rerun after an interruption does only what is
    left, and a second run computes nothing.

    Parameters
    ----------
    spec : Table2StudySpec or None
    store : Store or path-like
        Results store (created if missing).
    executor : Executor or None
        Where units run (:func:`layer_sim.runs.make_executor`); None: in this process.
    command, cache_dir, data_dir, device, progress, log
        As in :func:`~layer_sim.experiments.sanity.sanity_check`.

    Returns
    -------
    Table2StudyResult
    """
    from layer_sim._device import resolve_device

    spec = Table2StudySpec.make() if spec is None else spec
    if not isinstance(spec, Table2StudySpec):
        raise ConfigError(f"run_table2_study: spec must be a Table2StudySpec, got {type(spec).__name__}")
    device = resolve_device("run_table2_study", device)
    run_experiment(TABLE2_STUDY, spec, store, executor, command=command, device=str(device or "cpu"),
                   data_dir=data_dir, cache_dir=cache_dir, progress=progress, log=log)
    return collect_experiment(TABLE2_STUDY, spec, store)
