"""Representations of every layer of a network: forward hooks, batch by batch, always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from layer_sim.errors import InputError, UnknownNameError

__all__ = ["ACTIVATION_TYPES", "OUTPUT", "Representations", "extract"]

#: Module types whose output counts as "the representation of a layer" when ``layers=None``.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.LogSigmoid,
    nn.Tanhshrink,
)

#: Name under which the model's own return value is stored.
OUTPUT = "output"

#: Separator for the second, third, ... call of one module in a forward pass: ``act``, ``act#2``.
_CALL_SEP = "#"


class Representations(Mapping):
    """Ordered mapping ``layer name -> (n, p) tensor`` of one network on one set of examples.

    Keys are in forward (execution) order. A module called ``k > 1`` times in one forward pass
    contributes ``name``, ``name#2``, ..., ``name#k``. The model's return value is ``"output"``.

    Attributes
    ----------
    gradients : Representations or None
        When built by ``extract(..., gradients=True)``: for each layer the gradient of the
        per-example loss with respect to that layer's output, same names and shapes.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], *, gradients: Representations | None = None):
        self._data: dict[str, torch.Tensor] = dict(tensors)
        self.gradients = gradients

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._data[name]
        except KeyError:
            raise UnknownNameError(
                f"no layer named {name!r}; available: {', '.join(self._data)}"
            ) from None

    # Mapping's mixins detect a missing key through KeyError; ours raises UnknownNameError
    # (with the available names), so membership and get() go to the dict directly.
    def __contains__(self, name) -> bool:
        return name in self._data

    def get(self, name, default=None):
        return self._data.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def names(self) -> tuple[str, ...]:
        """Layer names in forward order."""
        return tuple(self._data)

    @property
    def n(self) -> int:
        """Number of examples (rows of every tensor)."""
        return next(iter(self._data.values())).shape[0] if self._data else 0

    @property
    def widths(self) -> dict[str, int]:
        """Number of features of every layer."""
        return {k: v.shape[1] for k, v in self._data.items()}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self._data.items())
        grads = ", with gradients" if self.gradients is not None else ""
        return f"Representations({shapes}{grads})"


def extract(
    model: nn.Module,
    data,
    *,
    layers: Sequence[str | type[nn.Module]] | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    sink: Callable[[int, Representations], Any] | None = None,
    gradients: bool = False,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> Representations | None:
    r"""Representations of chosen layers of ``model`` on ``data``, one ``(n, p)`` tensor per layer.

    Every chosen module gets a forward hook that *copies* its output (so later in-place
    operations such as ``ReLU(inplace=True)`` cannot change what was recorded) and flattens it
    per example. The model runs in eval mode under ``torch.no_grad`` (unless ``gradients``);
    afterwards every module's train/eval flag is restored, the model is moved back to its
    device and every hook is removed, also when the forward pass raises.

    Parameters
    ----------
    model : torch.nn.Module
        Any module whose forward takes one batch tensor and returns a tensor with the examples
        along dimension 0.
    data : tensor, (x, y) pair, Dataset or DataLoader
        The examples. Tensors and pairs are cut into batches of ``batch_size`` in order; a
        Dataset is wrapped in an unshuffled DataLoader; a DataLoader is used as is (its items may
        be ``x`` or ``(x, y, ...)``). ``y`` is only used for ``gradients``.
    layers : sequence of str or module types, default=None
        ``None`` selects every activation module (an instance of one of
        :data:`ACTIVATION_TYPES`; post-activation output) plus ``"output"``. Otherwise module
        names as in ``model.named_modules()``, ``"output"``, and/or module classes (every module of
        that class). Results are always in forward order, whatever the order requested.
    batch_size : int, default=1024
        Examples per forward pass (ignored for a DataLoader).
    device : str or torch.device, default=None
        Where to run; ``None`` keeps the model's device. Representations stay on this device.
    sink : callable ``(batch_index, Representations) -> Any``, default=None
        If given, called once per batch with that batch's representations and nothing is
        accumulated (for ``n`` beyond memory); ``extract`` then returns ``None``.
    gradients : bool, default=False
        Also return :math:`g_i = \partial \ell(f(x_i), y_i) / \partial h_i` for every chosen layer
        output :math:`h_i` of every example (one backward pass per batch), in
        ``result.gradients``. Needs targets ``y`` in ``data``. Because examples do not interact
        in eval mode, row *i* depends only on example *i* (not on the batch size).
    loss_fn : callable ``(output, y) -> tensor``, default=None
        Per-example losses (a vector, summed over the batch) or their sum (a scalar). ``None``
        means ``cross_entropy(output, y, reduction="none")``.

    Returns
    -------
    Representations or None
        Ordered mapping ``name -> (n, p)`` tensor in the model's dtype; ``None`` with ``sink``.

    Raises
    ------
    UnknownNameError
        A requested layer name (or module type) does not exist; the message lists the names.
    InputError
        Unusable ``data``, a chosen module never called, an output that is not a batch-first
        tensor, ``gradients=True`` without targets, or a batch whose calls differ from the first.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from layer_sim import extract
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> reps = extract(net, torch.randn(10, 4))
    >>> list(reps), reps["1"].shape
    (['1', 'output'], torch.Size([10, 3]))
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"extract: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"extract: batch_size must be a positive integer, got {batch_size!r}")
    chosen, want_output = _select(model, layers)
    if not chosen and not want_output:
        raise InputError("extract: no layers selected; pass layer names, module types or None")
    if gradients and loss_fn is None:
        loss_fn = _per_example_cross_entropy

    param = next(model.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    run_on = torch.device(device) if device is not None else home
    modes = {m: m.training for m in model.modules()}

    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (name, copy, live output)

    def make_hook(name: str):
        def hook(module, inputs, out):
            if not isinstance(out, torch.Tensor):
                raise InputError(
                    f"extract: module {name!r} returned {type(out).__name__}, not a tensor; "
                    "choose a module that returns one tensor"
                )
            calls.append((name, out.detach().clone(), out))

        return hook

    handles = []
    keep: dict[str, list[torch.Tensor]] = {}
    keep_grad: dict[str, list[torch.Tensor]] = {}
    order: list[str] | None = None
    try:
        if run_on != home:
            model.to(run_on)
        model.eval()
        for name, module in chosen:
            handles.append(module.register_forward_hook(make_hook(name)))
        for b, (x, y) in enumerate(_batches(data, batch_size)):
            calls.clear()
            x = x.to(run_on)
            if gradients:
                if y is None:
                    raise InputError(
                        "extract: gradients=True needs targets; pass data as an (x, y) pair, "
                        "a Dataset or a DataLoader yielding (x, y)"
                    )
                with torch.enable_grad():
                    # A leaf that requires grad keeps the graph alive even if all weights are frozen.
                    out = model(x.detach().requires_grad_(True))
                    loss = loss_fn(out, y.to(run_on)).sum()
                    live = [c[2] for c in calls] + ([out] if want_output else [])
                    grads = torch.autograd.grad(loss, live, allow_unused=True)
            else:
                with torch.no_grad():
                    out = model(x)
            names = _call_names([c[0] for c in calls])
            tensors = [c[1] for c in calls]
            if want_output:
                if not isinstance(out, torch.Tensor):
                    raise InputError(
                        f"extract: the model returned {type(out).__name__}, not a tensor; "
                        "drop 'output' from layers"
                    )
                names.append(OUTPUT)
                tensors.append(out.detach().clone())
            if order is None:
                order = names
                missing = [n for n, _ in chosen if n not in order]
                if missing:
                    raise InputError(
                        f"extract: layer(s) {missing} were chosen but never called in the forward pass"
                    )
            elif names != order:
                raise InputError(
                    f"extract: batch {b} called layers {names}, but the first batch called {order}; "
                    "the forward pass must call the same modules for every batch"
                )
            flat = {}
            for name, t in zip(names, tensors):
                if t.ndim == 0 or t.shape[0] != x.shape[0]:
                    raise InputError(
                        f"extract: output of {name!r} has shape {tuple(t.shape)}, but the batch has "
                        f"{x.shape[0]} examples along dimension 0"
                    )
                flat[name] = t.reshape(t.shape[0], -1)
            flat_grads = None
            if gradients:
                flat_grads = {
                    name: (torch.zeros_like(t) if g is None else g.detach()).reshape(t.shape[0], -1)
                    for name, t, g in zip(names, tensors, grads)
                }
            if sink is not None:
                sink(b, Representations(flat, gradients=None if flat_grads is None else Representations(flat_grads)))
            else:
                for name in names:
                    keep.setdefault(name, []).append(flat[name])
                    if flat_grads is not None:
                        keep_grad.setdefault(name, []).append(flat_grads[name])
    finally:
        for h in handles:
            h.remove()
        calls.clear()
        for m, was_training in modes.items():
            m.train(was_training)
        if run_on != home:
            model.to(home)
    if order is None:
        raise InputError("extract: data contains no examples")
    if sink is not None:
        return None
    grads_out = Representations({k: torch.cat(keep_grad[k]) for k in order}) if gradients else None
    return Representations({k: torch.cat(keep[k]) for k in order}, gradients=grads_out)


def _per_example_cross_entropy(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(output, y, reduction="none")


def _select(model: nn.Module, layers) -> tuple[list[tuple[str, nn.Module]], bool]:
    """The (name, module) pairs to hook and whether the model output is wanted."""
    named = [(n, m) for n, m in model.named_modules() if n]
    if layers is None:
        return [(n, m) for n, m in named if isinstance(m, ACTIVATION_TYPES)], True
    if isinstance(layers, (str, type)):
        layers = [layers]
    by_name = dict(named)
    chosen: dict[str, nn.Module] = {}
    want_output = False
    for item in layers:
        if isinstance(item, type) and issubclass(item, nn.Module):
            hits = [(n, m) for n, m in named if isinstance(m, item)]
            if not hits:
                raise UnknownNameError(
                    f"extract: the model has no module of type {item.__name__}; module types present: "
                    f"{', '.join(sorted({type(m).__name__ for _, m in named}))}"
                )
            chosen.update(hits)
        elif item == OUTPUT:
            want_output = True
        elif isinstance(item, str) and item in by_name:
            chosen[item] = by_name[item]
        else:
            raise UnknownNameError(
                f"extract: unknown layer {item!r}; available: {', '.join([*by_name, OUTPUT])}"
            )
    # A module registered under two names would be hooked twice; keep its first name.
    seen: set[int] = set()
    unique = []
    for n, m in named:
        if n in chosen and id(m) not in seen:
            seen.add(id(m))
            unique.append((n, m))
    return unique, want_output


def _call_names(raw: list[str]) -> list[str]:
    """``['a', 'b', 'a']`` -> ``['a', 'b', 'a#2']``: the k-th call of one module gets ``#k``."""
    count: dict[str, int] = {}
    out = []
    for name in raw:
        count[name] = count.get(name, 0) + 1
        out.append(name if count[name] == 1 else f"{name}{_CALL_SEP}{count[name]}")
    return out


def _batches(data, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(x, y or None)`` batches from any supported data form, in order."""
    if isinstance(data, torch.Tensor):
        x, y = data, None
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        y = torch.as_tensor(y)
        if y.shape[0] != x.shape[0]:
            raise InputError(
                f"extract: x has {x.shape[0]} examples but y has {y.shape[0]}; they must match"
            )
    elif isinstance(data, DataLoader):
        yield from (_split_item(item) for item in data)
        return
    elif isinstance(data, Dataset):
        yield from (
            _split_item(item) for item in DataLoader(data, batch_size=batch_size, shuffle=False)
        )
        return
    else:
        raise InputError(
            "extract: data must be a tensor, an (x, y) pair of tensors, a Dataset or a DataLoader, "
            f"got {type(data).__name__}"
        )
    if x.ndim == 0:
        raise InputError("extract: x must have the examples along dimension 0, got a 0-d tensor")
    for start in range(0, x.shape[0], batch_size):
        yield x[start : start + batch_size], None if y is None else y[start : start + batch_size]


def _split_item(item) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(item, torch.Tensor):
        return item, None
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor):
        return item[0], (torch.as_tensor(item[1]) if len(item) > 1 else None)
    raise InputError(
        f"extract: a DataLoader batch must be a tensor or (x, y, ...), got {type(item).__name__}"
    )
