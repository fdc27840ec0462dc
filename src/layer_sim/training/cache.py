"""The content-addressed checkpoint cache: a network is trained once per (spec, seed), then loaded.

Layout (see :mod:`layer_sim.training.checkpoint`): ``<cache_dir>/<spec.key()>/seed-<k>/``, the
same whichever trainer made the checkpoint. ``cache_dir`` defaults to ``$LAYER_SIM_CACHE``, else
``~/.cache/layer_sim/checkpoints`` (:func:`layer_sim.settings.cache_dir`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from layer_sim import settings
from layer_sim._io import writable_dir
from layer_sim._device import resolve_device
from layer_sim._options import strict_signature
from layer_sim.errors import ConfigError, DataError, TrainingDivergedError
from layer_sim.training import _steps, resume
from layer_sim.training.checkpoint import Checkpoint, load_checkpoint, read_meta, save_checkpoint
from layer_sim.training.ensemble import fit_ensemble
from layer_sim.training.loop import fit
from layer_sim.training.spec import DEFAULT_SPEC, KEY_VERSION, NetworkSpec
from layer_sim.training.state import FitResult

__all__ = ["checkpoint_dir", "train_or_load", "train_or_load_ensemble", "TRAINERS"]

#: How a cached network may have been trained (recorded as ``meta["trainer"]``): sequentially by
#: :func:`~layer_sim.training.fit`, or batched with other seeds by
#: :func:`~layer_sim.training.fit_ensemble` (equal to sequential training to rounding).
TRAINERS: tuple[str, ...] = ("fit", "fit_ensemble")


@strict_signature
def checkpoint_dir(spec: NetworkSpec, seed: int, *, cache_dir=None) -> Path:
    """``<cache_dir>/<spec.key()>/seed-<seed>``: where the cache keeps the network of ``(spec, seed)``."""
    return settings.cache_dir(cache_dir) / spec.key() / f"seed-{int(seed)}"


@strict_signature
def train_or_load(
    spec: NetworkSpec = DEFAULT_SPEC,
    seed: int = 0,
    *,
    cache_dir=None,
    data_dir=None,
    device=None,
    progress: bool | None = None,
) -> Checkpoint:
    """The network of ``(spec, seed)``: loaded from the cache if there, else trained by :func:`fit` and saved.

    Training builds ``spec.build_model(seed=seed)`` and fits it on ``spec.build_task(data_dir=...)``
    with ``spec.recipe`` and the same ``seed``, writing an epoch checkpoint into the network's
    directory after every epoch (``epoch.pt``, see :mod:`layer_sim.training.resume`): a run that
    was interrupted, even by ``kill -9``, continues from its last finished epoch when called
    again, and ends with the same weights. The epoch checkpoint is deleted once ``model.pt`` and
    ``meta.json`` are written. A run that diverges raises
    :class:`~layer_sim.errors.TrainingDivergedError` and saves nothing.

    Parameters
    ----------
    spec : NetworkSpec, default=DEFAULT_SPEC
    seed : int >= 0, default=0
    cache_dir : path-like or None, default=None
        Cache root (None: :func:`layer_sim.settings.cache_dir`).
    data_dir : path-like or None, default=None
        MNIST directory, read only if something must be trained.
    device : str, torch.device or None, default=None
        Where to train and where the returned model lives (None: CPU); checked before any work.
    progress : bool or None, default=None
        Progress bar while training; None = only when stderr is a terminal.

    Returns
    -------
    Checkpoint
        ``(model, meta)``, the model in eval mode exactly as stored; ``meta["metrics"]`` holds
        ``test_accuracy``, ``train_seconds`` and ``history``, ``meta["trainer"]`` one of
        :data:`TRAINERS`, and ``meta["reused"]`` says whether it came from disk.

    Raises
    ------
    DataError
        The checkpoint directory holds a damaged checkpoint or one of another spec/seed.
    """
    return _train_or_load("train_or_load", spec, [seed], trainer="fit", cache_dir=cache_dir,
                          data_dir=data_dir, device=device, progress=progress)[0]  # fmt: skip


@strict_signature
def train_or_load_ensemble(
    spec: NetworkSpec,
    seeds: Sequence[int],
    *,
    cache_dir=None,
    data_dir=None,
    device=None,
    progress: bool | None = None,
) -> list[Checkpoint]:
    """:func:`train_or_load` for several seeds, training the missing ones together with :func:`fit_ensemble`.

    Same cache, layout, metadata and reuse rules as :func:`train_or_load` (which later finds
    these checkpoints too); ``meta["trainer"]`` is ``"fit_ensemble"`` and ``train_seconds`` the
    wall time of the whole ensemble. Batched members equal sequentially trained networks to
    floating-point rounding, not bit for bit (see :func:`fit_ensemble`).

    Returns
    -------
    list of Checkpoint
        One per seed, in the order of ``seeds``.
    """
    return _train_or_load("train_or_load_ensemble", spec, seeds, trainer="fit_ensemble", cache_dir=cache_dir,
                          data_dir=data_dir, device=device, progress=progress)  # fmt: skip


def _train_or_load(where, spec, seeds, *, trainer, cache_dir, data_dir, device, progress) -> list[Checkpoint]:
    if not isinstance(spec, NetworkSpec):
        raise ConfigError(f"{where}: spec must be a NetworkSpec, got {type(spec).__name__}")
    seeds = _steps.check_seeds(where, seeds)
    resolve_device(where, device)
    paths = {s: checkpoint_dir(spec, s, cache_dir=cache_dir) for s in seeds}
    found = {s: _holds(paths[s], spec, s) for s in seeds}
    missing = [s for s in seeds if not found[s]]
    for s in missing:  # before training, not when its result is saved
        writable_dir(paths[s], what=f"{where}: checkpoint directory")
    if missing:
        task = spec.build_task(data_dir=data_dir)
        if trainer == "fit":
            for s in missing:  # each saved as soon as it is done; an interrupted one resumes from its last epoch
                model = spec.build_model(seed=s)
                try:
                    result = fit(model, task, spec.recipe, seed=s, device=device, progress=progress,
                                 checkpoint=paths[s])  # fmt: skip
                except TrainingDivergedError:
                    resume.remove(paths[s])  # retrying would only diverge again
                    raise
                _save(paths[s], model, spec=spec, seed=s, trainer=trainer, result=result)
                resume.remove(paths[s])
        else:
            models = [spec.build_model(seed=s) for s in missing]
            results = fit_ensemble(models, task, spec.recipe, seeds=missing, device=device, progress=progress)
            for s, model, result in zip(missing, models, results):
                _save(paths[s], model, spec=spec, seed=s, trainer=trainer, result=result)
    # What every caller gets is what is on disk, trained now or before.
    out = []
    for s in seeds:
        ckpt = load_checkpoint(paths[s], map_location=device)
        out.append(Checkpoint(ckpt.model, ckpt.meta | {"reused": found[s]}))
    return out


def _holds(path: Path, spec: NetworkSpec, seed: int) -> bool:
    """Whether ``path`` holds the finished checkpoint of ``(spec, seed)``; DataError if it holds another.

    Also a DataError: a ``meta.json`` without the metrics every caller reads (``test_accuracy``
    and ``train_seconds`` numbers), so a damaged file fails here, naming itself, not later as a
    KeyError in whatever reads the metrics.
    """
    if not (path / "meta.json").exists():
        return False
    meta = read_meta(path)
    if meta.get("key") != spec.key() or meta.get("seed") != seed:
        raise DataError(
            f"train_or_load: {path / 'meta.json'} names key {meta.get('key')!r}, seed {meta.get('seed')!r}, "
            f"but this directory is for key {spec.key()!r}, seed {seed}; delete the directory to retrain"
        )
    metrics = meta.get("metrics")
    if not (isinstance(metrics, dict) and all(_is_number(metrics.get(k)) for k in ("test_accuracy", "train_seconds"))):
        raise DataError(
            f"train_or_load: {path / 'meta.json'} has no numeric metrics.test_accuracy and metrics.train_seconds; "
            "delete the directory to retrain"
        )
    return True


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _save(path: Path, model, *, spec: NetworkSpec, seed: int, trainer: str, result: FitResult) -> None:
    meta = {
        "spec": spec.to_dict(),
        "key": spec.key(),
        "key_version": KEY_VERSION,
        "seed": seed,
        "trainer": trainer,
        "metrics": {"test_accuracy": result.test_accuracy, "train_seconds": result.seconds,
                    "history": result.history},  # fmt: skip
    }
    save_checkpoint(path, model, meta=meta)
