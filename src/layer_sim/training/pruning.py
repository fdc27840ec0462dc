r"""Global unstructured magnitude pruning, and Iterative Magnitude Pruning with learning-rate rewinding.

Masks are training state, so they live here and are applied with :mod:`torch.nn.utils.prune`:
a pruned tensor ``w`` becomes the parameter ``w_orig`` and the buffer ``w_mask``, and every
forward pass uses ``w = w_orig * w_mask``. A pruned entry is therefore exactly 0 in every forward
pass and its gradient is exactly 0, whatever the optimizer does to ``w_orig``; surviving entries
are multiplied by 1.0, which changes no bit, so training a pruned network follows the same
arithmetic as training with explicitly masked weights and gradients (tested). (``module.w`` itself
is recomputed by the hook at each forward pass, so right after an optimizer step it is one step
old: read ``w_orig * w_mask``, or use :func:`without_reparametrisation`.) The reparametrisation
added no measurable time per training step of LeNet-5 (see the README), so nothing of our own
replaces it.

Iterative Magnitude Pruning with learning-rate rewinding (Renda, Frankle & Carbin 2020), as the
original layer_sim's ``imp_lrr``: starting from the trained complete network, each iteration
removes the fraction ``rate`` of the *surviving* prunable entries with the smallest magnitude,
over all of them together (global), then retrains the surviving weights from their trained
values with the original recipe, learning-rate schedule included (the rate is "rewound", the
weights are not). After :math:`k` iterations the prunable sparsity is :math:`1 - (1 - r)^k`, up
to the rounding of each iteration's count to whole entries.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from layer_sim._io import atomic_write, content_key
from layer_sim._options import Int, Real, check, strict_signature
from layer_sim.errors import ConfigError, DataError, InputError, TrainingDivergedError, UnknownNameError
from layer_sim.training import resume
from layer_sim.training.cache import checkpoint_dir, train_or_load
from layer_sim.training.checkpoint import load_checkpoint, save_checkpoint
from layer_sim.training.loop import fit
from layer_sim.training.spec import NetworkSpec

__all__ = [
    "S1_PATTERNS",
    "PruningSpec",
    "PrunedNetwork",
    "prunable",
    "global_magnitude_prune",
    "masks",
    "apply_masks",
    "sparsity",
    "without_reparametrisation",
    "imp",
    "iteration_dir",
]

#: The original layer_sim's patterns for LeNet-5: both convolutions and the two hidden Linear
#: layers (weights and biases), not the readout ``classifier.4``.
S1_PATTERNS: tuple[str, ...] = ("features", r"classifier\.[02]\.")

_MASKS, _META = "mask.pt", "meta.json"


# ----------------------------------------------------------------------------- masks


def prunable(model: nn.Module, patterns=S1_PATTERNS) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, attribute)`` of every parameter whose name matches a pattern, in model order.

    Names are those of ``model.named_parameters()`` before any pruning (``features.0.weight``,
    also once it is reparametrised as ``features.0.weight_orig``), matched with :func:`re.match`
    (anchored at the start, as the original library does).

    Raises
    ------
    ConfigError
        ``patterns`` is not a non-empty sequence of strings, or one is not a regular expression.
    UnknownNameError
        A pattern matches no parameter; the message lists the parameter names.
    """
    patterns = _check_patterns("prunable", patterns)
    tensors = list(_named_tensors(model))
    out = [(name, module, attr) for name, module, attr in tensors if any(p.match(name) for p in patterns)]
    for p in patterns:
        if not any(p.match(name) for name, _, _ in tensors):
            raise UnknownNameError(
                f"prunable: pattern {p.pattern!r} matches no parameter; parameters: "
                f"{', '.join(name for name, _, _ in tensors)}"
            )
    return out


@strict_signature
def global_magnitude_prune(model: nn.Module, *, rate: float, patterns=S1_PATTERNS) -> dict[str, torch.Tensor]:
    r"""Prune, in place, the fraction ``rate`` of the surviving prunable entries of smallest magnitude.

    Over the parameters selected by :func:`prunable` together (global, unstructured), the
    :math:`k = \mathrm{round}(\text{rate} \times m)` surviving entries (:math:`m` of them) with the
    smallest :math:`|w|` get mask 0; entries pruned before stay pruned. This is
    ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``; ties at the threshold are
    broken by ``torch.topk``, so exactly :math:`k` entries go.

    Returns
    -------
    dict of str to torch.Tensor
        The masks after pruning (see :func:`masks`).

    Examples
    --------
    >>> net = nn.Linear(4, 2)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[1.0, -8.0, 3.0, 0.5], [-2.0, 7.0, 6.0, 4.0]]))
    >>> global_magnitude_prune(net, rate=0.5, patterns=["weight"])["weight"].int().tolist()
    [[0, 1, 0, 0], [0, 1, 1, 1]]
    >>> sparsity(net, patterns=["weight"]), net.weight.detach()[0].tolist()
    (0.5, [0.0, -8.0, 0.0, 0.0])
    """
    rate = check("global_magnitude_prune", "rate", Real(0, 1, low_open=True, high_open=True), rate)
    targets = prunable(model, patterns)
    torch_prune.global_unstructured([(module, attr) for _, module, attr in targets],
                                    pruning_method=torch_prune.L1Unstructured, amount=rate)  # fmt: skip
    return masks(model)


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The boolean mask (True = kept) of every pruned tensor of ``model``, by parameter name."""
    return {name: getattr(module, f"{attr}_mask").bool() for name, module, attr in _named_tensors(model)
            if _is_pruned(module, attr)}  # fmt: skip


def apply_masks(model: nn.Module, mask: dict[str, torch.Tensor]) -> None:
    """Prune ``model`` in place with given masks (e.g. read back from a checkpoint); True = kept.

    Raises
    ------
    UnknownNameError
        A mask names no parameter of ``model``.
    InputError
        A mask's shape differs from its parameter's.
    """
    by_name = {name: (module, attr) for name, module, attr in _named_tensors(model)}
    for name, m in mask.items():
        if name not in by_name:
            raise UnknownNameError(f"apply_masks: no parameter named {name!r}; parameters: {', '.join(by_name)}")
        module, attr = by_name[name]
        param = getattr(module, attr)
        if tuple(m.shape) != tuple(param.shape):
            raise InputError(f"apply_masks: mask {name!r} has shape {tuple(m.shape)}, the parameter {tuple(param.shape)}")
        torch_prune.custom_from_mask(module, attr, mask=m.to(device=param.device, dtype=param.dtype))


def sparsity(model: nn.Module, *, patterns=S1_PATTERNS) -> float:
    """Share of the entries of the prunable parameters (:func:`prunable`) that are pruned (mask 0)."""
    total = pruned = 0
    for _, module, attr in prunable(model, patterns):
        total += getattr(module, attr).numel()
        if _is_pruned(module, attr):
            pruned += int((getattr(module, f"{attr}_mask") == 0).sum())
    return pruned / total


def without_reparametrisation(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every mask folded into its weight (``w = w_orig * w_mask``), plain names again."""
    # A pruned module's weight attribute is computed (w_orig * w_mask) and, after a forward pass with
    # gradients, not a leaf, which deepcopy refuses; it is recomputed by remove() anyway.
    memo = {id(getattr(m, a)): getattr(m, a).detach().clone() for _, m, a in _named_tensors(model) if _is_pruned(m, a)}
    plain = copy.deepcopy(model, memo)
    for _, module, attr in list(_named_tensors(plain)):
        if _is_pruned(module, attr):
            torch_prune.remove(module, attr)
    return plain


def _is_pruned(module: nn.Module, attr: str) -> bool:
    return f"{attr}_orig" in module._parameters and hasattr(module, f"{attr}_mask")


def _named_tensors(model: nn.Module):
    """``(name, module, attribute)`` of each parameter under its unpruned name."""
    for prefix, module in model.named_modules():
        for pname in list(module._parameters):
            attr = pname.removesuffix("_orig")
            if not _is_pruned(module, attr):
                attr = pname
            yield (f"{prefix}.{attr}" if prefix else attr), module, attr


def _check_patterns(where: str, patterns) -> list[re.Pattern]:
    if isinstance(patterns, (str, bytes)) or not isinstance(patterns, (list, tuple)) or not patterns:
        raise ConfigError(f"{where}: patterns must be a non-empty list of regular expressions, got {patterns!r}")
    out = []
    for p in patterns:
        if not isinstance(p, str):
            raise ConfigError(f"{where}: patterns must be strings, got {p!r}")
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise ConfigError(f"{where}: pattern {p!r} is not a regular expression ({exc})") from None
    return out


# ----------------------------------------------------------------------------- IMP with LR rewinding


@strict_signature
@dataclass(frozen=True)
class PruningSpec:
    """How IMP prunes: the fraction ``rate`` of surviving prunable entries per iteration, and which parameters.

    Frozen and hashable; :meth:`key` names the directory of its iterations (the number of
    iterations is not part of it: iteration *i* does not depend on how many follow).

    Examples
    --------
    >>> PruningSpec(rate=0.5).to_dict()
    {'rate': 0.5, 'patterns': ['features', 'classifier\\\\.[02]\\\\.']}
    """

    rate: float = 0.2
    patterns: tuple[str, ...] = S1_PATTERNS

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", check("PruningSpec", "rate", Real(0, 1, low_open=True, high_open=True), self.rate))
        _check_patterns("PruningSpec", self.patterns)
        object.__setattr__(self, "patterns", tuple(self.patterns))

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "patterns": list(self.patterns)}

    def key(self) -> str:
        """``content_key("imp", 1, to_dict())``."""
        return content_key("imp", 1, self.to_dict())


class PrunedNetwork(NamedTuple):
    """One IMP iteration: ``model`` (masks folded in, eval mode), its ``masks`` and ``meta``.

    ``meta`` has ``iteration``, ``sparsity`` (share of prunable entries pruned),
    ``pruned``/``prunable`` counts, ``pruning`` (the :class:`PruningSpec`), ``shuffle_seed``,
    ``metrics`` (``test_accuracy``, ``train_seconds``, ``history``) and ``reused`` (read from disk
    rather than trained by this call); iteration 0 is the complete network, with no masks.
    """

    iteration: int
    model: nn.Module
    masks: dict[str, torch.Tensor]
    meta: dict[str, Any]


def iteration_dir(spec: NetworkSpec, seed: int, pruning: PruningSpec, iteration: int, *, cache_dir=None) -> Path:
    """``<network dir>/imp-<pruning.key()>/iteration-<i>``, beside the complete network's checkpoint."""
    return checkpoint_dir(spec, seed, cache_dir=cache_dir) / f"imp-{pruning.key()}" / f"iteration-{int(iteration)}"


@strict_signature
def imp(
    spec: NetworkSpec,
    seed: int,
    *,
    iterations: int,
    pruning: PruningSpec = PruningSpec(),
    cache_dir=None,
    data_dir=None,
    device=None,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> list[PrunedNetwork]:
    r"""Iterative Magnitude Pruning with learning-rate rewinding of the network ``(spec, seed)``.

    Iteration 0 is the complete network (:func:`~layer_sim.training.train_or_load`). Iteration
    :math:`i \ge 1` takes iteration :math:`i - 1`'s trained weights and masks, prunes the
    fraction ``pruning.rate`` of the surviving prunable entries (:func:`global_magnitude_prune`)
    and retrains with ``spec.recipe`` from the start of its schedule (:func:`fit`, shuffling seed
    ``seed + 1_000_000 * i`` so that no iteration repeats another's batch order). Pruned entries
    are exactly zero throughout.

    Each iteration is kept in :func:`iteration_dir` (``model.pt`` with the masks folded in,
    ``mask.pt``, and ``meta.json`` written last) and reused when present; its retraining writes
    epoch checkpoints there, so an interrupted run resumes mid-iteration.

    Parameters
    ----------
    spec : NetworkSpec
        The complete network and the recipe every iteration retrains with.
    seed : int >= 0
    iterations : int >= 0
        Pruning iterations after the complete network.
    pruning : PruningSpec
        Rate per iteration and the parameters to prune.
    cache_dir, data_dir, device, progress
        As for :func:`~layer_sim.training.train_or_load`.
    log : callable or None, default=None
        Called with one line per network as soon as it is trained or loaded.

    Returns
    -------
    list of PrunedNetwork
        ``iterations + 1`` entries, iteration 0 (complete) first.

    Raises
    ------
    DataError
        An iteration directory holds a damaged checkpoint or one of another network.
    TrainingDivergedError
        Retraining diverged; nothing is saved for that iteration.

    References
    ----------
    Renda, Frankle & Carbin (2020). Comparing rewinding and fine-tuning in neural network pruning. ICLR.
    Han, Pool, Tran & Dally (2015). Learning both weights and connections for efficient neural networks. NeurIPS.
    """
    iterations = check("imp", "iterations", Int(0), iterations)
    if not isinstance(pruning, PruningSpec):
        raise ConfigError(f"imp: pruning must be a PruningSpec, got {type(pruning).__name__}")
    complete = train_or_load(spec, seed, cache_dir=cache_dir, data_dir=data_dir, device=device, progress=progress)
    # A pattern that matches nothing fails here, before any pruning.
    n_prunable = sum(getattr(m, a).numel() for _, m, a in prunable(complete.model, pruning.patterns))
    out = [PrunedNetwork(0, complete.model, {}, {**complete.meta, "iteration": 0, "sparsity": 0.0, "pruned": 0,
                                                 "prunable": n_prunable})]  # fmt: skip
    say = log if log is not None else (lambda _line: None)
    say(_line(seed, out[0]))
    task = None
    for i in range(1, iterations + 1):
        path = iteration_dir(spec, seed, pruning, i, cache_dir=cache_dir)
        if (path / _META).is_file():
            out.append(_load_iteration(path, spec, seed, pruning, i, device, reused=True))
            say(_line(seed, out[-1]))
            continue
        if task is None:
            task = spec.build_task(data_dir=data_dir)
        model = copy.deepcopy(out[-1].model)
        apply_masks(model, out[-1].masks)
        global_magnitude_prune(model, rate=pruning.rate, patterns=pruning.patterns)
        shuffle_seed = seed + 1_000_000 * i
        try:
            result = fit(model, task, spec.recipe, seed=shuffle_seed, device=device, progress=progress, checkpoint=path)
        except TrainingDivergedError:
            resume.remove(path)
            raise
        kept = masks(model)
        n_prunable = sum(m.numel() for m in kept.values())
        n_pruned = sum(int((~m).sum()) for m in kept.values())
        meta = {
            "spec": spec.to_dict(), "key": spec.key(), "seed": seed, "iteration": i, "pruning": pruning.to_dict(),
            "shuffle_seed": shuffle_seed, "sparsity": sparsity(model, patterns=pruning.patterns),
            "pruned": n_pruned, "prunable": n_prunable,
            "metrics": {"test_accuracy": result.test_accuracy, "train_seconds": result.seconds,
                        "history": result.history},
        }  # fmt: skip
        _save_iteration(path, model, kept, meta)
        resume.remove(path)
        out.append(_load_iteration(path, spec, seed, pruning, i, device, reused=False))
        say(_line(seed, out[-1]))
    return out


def _line(seed: int, net: PrunedNetwork) -> str:
    m = net.meta
    how = "reused" if m.get("reused") else f"trained in {m['metrics']['train_seconds']:.0f} s"
    return (f"seed {seed} iteration {net.iteration}: sparsity {m['sparsity']:.4f}, "
            f"test accuracy {100 * m['metrics']['test_accuracy']:.2f}% ({how})")


def _save_iteration(path: Path, model: nn.Module, kept: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    (path / _META).unlink(missing_ok=True)
    cpu = {k: v.detach().cpu() for k, v in kept.items()}
    atomic_write(path / _MASKS, lambda fh: torch.save(cpu, fh))
    save_checkpoint(path, without_reparametrisation(model).cpu(), meta=meta)  # meta.json last


def _load_iteration(path: Path, spec, seed, pruning, i, device, *, reused: bool) -> PrunedNetwork:
    ckpt = load_checkpoint(path, map_location=device)
    meta = ckpt.meta
    if meta.get("key") != spec.key() or meta.get("seed") != seed or meta.get("iteration") != i \
            or meta.get("pruning") != pruning.to_dict():  # fmt: skip
        raise DataError(
            f"imp: {path / _META} describes key {meta.get('key')!r}, seed {meta.get('seed')!r}, iteration "
            f"{meta.get('iteration')!r}, pruning {meta.get('pruning')!r}, not this directory's; delete it to rerun"
        )
    try:
        kept = torch.load(path / _MASKS, map_location=device or "cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - as load_checkpoint
        raise DataError(f"imp: {path / _MASKS} is damaged or missing ({exc})") from None
    return PrunedNetwork(i, ckpt.model, kept, meta | {"reused": reused})

