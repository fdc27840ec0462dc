"""Units of work that train networks into the checkpoint cache (or reuse them): one network, or one ensemble.

- ``network.train``: one (NetworkSpec, seed), trained by :func:`~layer_sim.training.fit`
  (``layer-sim train``: one unit per seed, so seeds run in parallel on several workers).
- ``network.ensemble``: one NetworkSpec for several seeds, the missing ones trained together by
  :func:`~layer_sim.training.fit_ensemble` (the sanity check). On this project's 2-core machine
  the batched ensemble of 5 default MLPs trained in 23-25 s per epoch, against 34-45 s for five
  ``network.train`` units in one process and 58 s on a pool of 2 workers (measured under load,
  load average 6-9; the pool includes its start-up). Batching also keeps the networks those of
  earlier versions, which trained the sanity check's networks as an ensemble.

Experiments in later stages load the networks with :func:`load_network`.
"""

from __future__ import annotations

from pathlib import Path

from layer_sim.runs import Unit, UnitContext, UnitResult, unit_kind
from layer_sim.training.cache import checkpoint_dir, train_or_load, train_or_load_ensemble
from layer_sim.training.checkpoint import Checkpoint
from layer_sim.training.spec import NetworkSpec

__all__ = ["NETWORK_KIND", "ENSEMBLE_KIND", "network_unit", "ensemble_unit", "train_network", "train_ensemble",
           "load_network"]

#: Unit kinds: one trained network; several seeds of one network trained as a batched ensemble.
NETWORK_KIND, ENSEMBLE_KIND = "network.train", "network.ensemble"


def network_unit(spec: NetworkSpec, seed: int) -> Unit:
    """The unit training ``spec`` from ``seed``: spec ``{"network": spec.to_dict(), "seed": seed}``."""
    return Unit(NETWORK_KIND, {"network": spec.to_dict(), "seed": int(seed)})


def ensemble_unit(spec: NetworkSpec, seeds) -> Unit:
    """The unit training ``spec`` for every seed in ``seeds``: spec ``{"network": ..., "seeds": [...]}``."""
    return Unit(ENSEMBLE_KIND, {"network": spec.to_dict(), "seeds": [int(s) for s in seeds]})


def load_network(spec: NetworkSpec, seed: int, context: UnitContext) -> Checkpoint:
    """The network of ``(spec, seed)`` from the sweep's checkpoint cache, for a later stage's unit.

    Trained here if the cache lacks it (:func:`~layer_sim.training.train_or_load`): its training
    unit may have run against another cache (another ``--cache-dir`` on the same store), or the
    cache may have been cleared since; the same spec and seed give the same network either way.
    """
    return train_or_load(spec, seed, cache_dir=context.cache_dir, data_dir=context.data_dir,
                         device=context.device, progress=False)


@unit_kind(NETWORK_KIND)
def train_network(spec: dict, context: UnitContext) -> UnitResult:
    """Train (or reuse from ``context.cache_dir``) one network; its checkpoint files are the artefacts.

    Metrics: ``test_accuracy`` (fraction), ``train_seconds`` (of the training itself, recorded
    when it was trained) and ``reused`` (1 if the cache already held it). History ``train``: one
    row per epoch as :func:`~layer_sim.training.fit` recorded it.
    """
    network = NetworkSpec.from_dict(spec["network"])
    ckpt = load_network(network, spec["seed"], context)
    metrics = ckpt.meta["metrics"]
    where = Path(checkpoint_dir(network, spec["seed"], cache_dir=context.cache_dir))
    return UnitResult(
        metrics={"test_accuracy": metrics["test_accuracy"], "train_seconds": metrics["train_seconds"],
                 "reused": float(bool(ckpt.meta["reused"]))},
        histories={"train": list(metrics.get("history", []))},
        artefacts={"model": where / "model.pt", "meta": where / "meta.json"},
    )


@unit_kind(ENSEMBLE_KIND)
def train_ensemble(spec: dict, context: UnitContext) -> UnitResult:
    """Train the seeds missing from ``context.cache_dir`` together (:func:`~layer_sim.training.train_or_load_ensemble`).

    Metrics per seed *k*: ``test_accuracy/seed-k``, ``reused/seed-k`` (1 if the cache held it),
    ``train_seconds/seed-k`` (as recorded when it was trained: the ensemble's wall time);
    artefacts ``seed-k/model`` and ``seed-k/meta``.
    """
    network = NetworkSpec.from_dict(spec["network"])
    ckpts = train_or_load_ensemble(network, spec["seeds"], cache_dir=context.cache_dir, data_dir=context.data_dir,
                                   device=context.device, progress=False)
    metrics, artefacts = {}, {}
    for seed, ckpt in zip(spec["seeds"], ckpts):
        where = Path(checkpoint_dir(network, seed, cache_dir=context.cache_dir))
        metrics |= {f"test_accuracy/seed-{seed}": ckpt.meta["metrics"]["test_accuracy"],
                    f"train_seconds/seed-{seed}": ckpt.meta["metrics"]["train_seconds"],
                    f"reused/seed-{seed}": float(bool(ckpt.meta["reused"]))}
        artefacts |= {f"seed-{seed}/model": where / "model.pt", f"seed-{seed}/meta": where / "meta.json"}
    return UnitResult(metrics=metrics, artefacts=artefacts)
