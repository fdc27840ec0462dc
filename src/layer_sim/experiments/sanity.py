"""Kornblith et al. (2019) Table 2 "sanity check", reproduced with MLPs on MNIST.

N networks of one architecture are trained from seeds 0..N-1; each similarity index must
identify, for every layer of one network, the corresponding layer of another (see
:func:`layer_sim.analysis.identification.layer_identification`). A second setting compares networks of
*different* architectures layer by layer and reports where each layer's best match lies.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from layer_sim import settings
from layer_sim._device import resolve_device
from layer_sim._options import Int, check, strict_signature
from layer_sim.analysis import LayerIdentification, SimilarityMatrix, compare, layer_identification
from layer_sim.errors import ConfigError
from layer_sim.representations import extract

__all__ = [
    "Row",
    "TABLE2_ROWS",
    "ARCHITECTURE_MEASURES",
    "DEFAULT_ARCHITECTURES",
    "FULL_ARCHITECTURES",
    "DEFAULT_NETS",
    "DEFAULT_EXAMPLES",
    "FULL_NETS",
    "FULL_EXAMPLES",
    "RowResult",
    "ArchitectureComparison",
    "Timings",
    "SanityCheckResult",
    "sanity_check",
    "default_cache_dir",
]


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


@strict_signature
def default_cache_dir() -> Path:
    """``$LAYER_SIM_CACHE`` if set, else ``~/.cache/layer_sim/checkpoints``."""
    return settings.cache_dir()


@dataclass(frozen=True)
class RowResult:
    """A table row and its layer identification result."""

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
    """Wall-clock seconds of each stage of :func:`sanity_check`."""

    train_or_load: float
    extract: float
    identification: float
    architectures: float
    total: float


@dataclass(frozen=True)
class SanityCheckResult:
    """Everything :func:`sanity_check` computed (data only; ``layer_sim.report.sanity`` writes it)."""

    rows: tuple[RowResult, ...]
    layers: tuple[str, ...]
    widths: tuple[int, ...]
    test_accuracies: tuple[float, ...]
    examples: int
    architectures: tuple[ArchitectureComparison, ...]
    timings: Timings

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


@strict_signature
def sanity_check(
    *,
    nets: int | None = None,
    examples: int | None = None,
    full: bool = False,
    config=None,
    rows: Sequence[Row] = TABLE2_ROWS,
    architectures: Mapping[str, Sequence[int]] | None = None,
    cache_dir=None,
    data_dir=None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> SanityCheckResult:
    """Train or reuse ``nets`` MLPs and run layer identification for every index in ``rows``.

    Networks ``0..nets-1`` use ``config`` (default: :data:`layer_sim.training.DEFAULT_SPEC`) with
    seed *k*; checkpoints are reused from ``cache_dir`` when their spec key and seed match, and
    the missing ones are trained together by :func:`layer_sim.training.train_or_load_ensemble`.
    Representations (post-activation of every hidden layer; logits excluded from identification,
    as in the paper) are taken on a fixed random subset of ``examples`` MNIST test images
    (``torch.randperm(10000)`` with generator seed 0), more than any layer width so that CCA is
    not degenerate.

    Parameters
    ----------
    nets : int, default=None
        Number of networks (>= 2; >= 3 for a standard error). None: 5, or 10 with ``full``.
    examples : int, default=None
        Number of test examples. None: 2000, or 3000 with ``full``.
    full : bool, default=False
        Paper-sized run (10 networks, as in Table 2) and a second other architecture.
    config : NetworkSpec, default=None
        Architecture, task and training recipe of the main networks.
    rows : sequence of Row, default=TABLE2_ROWS
        Indexes to evaluate.
    architectures : mapping name -> widths, default=None
        Other architectures compared with network 0 (trained with ``config``'s recipe, seed 0).
        None: :data:`DEFAULT_ARCHITECTURES` (or :data:`FULL_ARCHITECTURES` with ``full``); ``{}``
        skips this setting.
    cache_dir : path, default=None
        Checkpoint cache; None: :func:`default_cache_dir`.
    data_dir : path, default=None
        MNIST directory (see :func:`layer_sim.data.load_mnist`).
    device : str or torch.device, default=None
        Where to train, extract and compare (None: CPU).
    progress : bool or None, default=None
        Progress bars; ``None``: only when stderr is a terminal.
    log : callable str -> Any, default=None
        Receives one line per stage (e.g. ``print``).

    Returns
    -------
    SanityCheckResult
    """
    from layer_sim.data import load_mnist
    from layer_sim.training.cache import train_or_load, train_or_load_ensemble
    from layer_sim.training.spec import DEFAULT_SPEC

    config = DEFAULT_SPEC if config is None else config
    nets = (FULL_NETS if full else DEFAULT_NETS) if nets is None else nets
    examples = (FULL_EXAMPLES if full else DEFAULT_EXAMPLES) if examples is None else examples
    if architectures is None:
        architectures = FULL_ARCHITECTURES if full else DEFAULT_ARCHITECTURES
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    device = resolve_device("sanity_check", device) or torch.device("cpu")
    say = log if log is not None else (lambda _msg: None)
    nets = check("sanity_check", "nets", Int(2, MAX_NETS), nets)
    widest = max(w for widths in (config.model.widths, *architectures.values()) for w in widths[1:])
    if isinstance(examples, bool) or not isinstance(examples, int) or examples <= widest:
        raise ConfigError(
            f"sanity_check: examples must be an integer larger than every layer width ({widest}) so "
            f"that CCA-based indexes are not degenerate, got {examples!r}"
        )

    t0 = time.perf_counter()
    test = load_mnist("test", data_dir)
    if examples > len(test[0]):
        raise ConfigError(f"sanity_check: examples={examples} exceeds the {len(test[0])} test images")
    idx = torch.randperm(len(test[0]), generator=torch.Generator().manual_seed(0))[:examples]
    probe = test[0][idx]

    def report(cfg, seed, ckpt):
        how = "reused" if ckpt.meta.get("reused") else "trained"
        acc = ckpt.meta["metrics"]["test_accuracy"]
        say(f"network {list(cfg.model.widths)} seed {seed}: {how}, test accuracy {100 * acc:.2f}%")
        return ckpt.model, acc

    # The missing seeds are trained together as one batched ensemble (same networks as one by
    # one, to floating-point rounding), which uses a CPU better than N small sequential fits.
    ckpts = train_or_load_ensemble(config, list(range(nets)), cache_dir=cache_dir, data_dir=data_dir,
                                   device=device, progress=progress)
    models, accs = zip(*(report(config, seed, ckpt) for seed, ckpt in enumerate(ckpts)))
    seconds_train = time.perf_counter() - t0

    t1 = time.perf_counter()
    reps = [extract(m, probe, device=device) for m in models]
    seconds_extract = time.perf_counter() - t1
    layers = tuple(k for k in reps[0] if k != "output")
    say(f"representations of {examples} test examples, layers {list(reps[0])}")

    results = []
    for row in rows:
        t = time.perf_counter()
        res = layer_identification(reps, row.measure, device=device, progress=progress, **row.params)
        results.append(RowResult(row, res, time.perf_counter() - t))
        rec = results[-1].record()  # print the rounded values the table shows
        se = "" if rec["stderr"] is None else f" ± {rec['stderr']:.1f}"
        say(f"{row.label}: {rec['accuracy']:.1f}%{se} ({results[-1].seconds:.1f} s)")

    t2 = time.perf_counter()
    comparisons = []
    for name, widths in architectures.items():
        cfg = config.replace(widths=tuple(widths))
        other, acc = report(cfg, 0, train_or_load(cfg, 0, cache_dir=cache_dir, data_dir=data_dir,
                                                  device=device, progress=progress))
        other_reps = extract(other, probe, device=device)
        mats = tuple(
            dataclasses.replace(
                compare(other_reps, reps[0], measure=r.measure, device=device, **r.params),
                row_label=name, col_label="reference",
            )
            for r in ARCHITECTURE_MEASURES
        )
        comparisons.append(ArchitectureComparison(name, tuple(widths), acc, ARCHITECTURE_MEASURES, mats))
    timings = Timings(train_or_load=seconds_train, extract=seconds_extract,
                      identification=sum(r.seconds for r in results), architectures=time.perf_counter() - t2,
                      total=time.perf_counter() - t0)  # fmt: skip
    return SanityCheckResult(
        tuple(results), layers, tuple(config.model.widths), tuple(accs), examples, tuple(comparisons), timings
    )
