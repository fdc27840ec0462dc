"""Representations of every layer of a network: a generator of batches, and ``extract`` collecting it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from layer_sim._device import resolve_device
from layer_sim._options import Flag, check, strict_signature
from layer_sim.data.tasks import Task
from layer_sim.errors import ConfigError, InputError, LayerSimError, UnknownNameError
from layer_sim.representations import objectives
from layer_sim.representations._hooks import Recorder, model_device, recording

__all__ = ["ACTIVATION_TYPES", "OUTPUT", "Representations", "iter_representations", "extract"]

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

    Every tensor is stored flattened per example; :attr:`shapes` keeps what each layer's output
    looked like per example before flattening (e.g. ``(6, 24, 24)`` for a convolutional map), so
    :meth:`unflattened` gives it back as ``(n, c, h, w)`` and
    :func:`~layer_sim.representations.layouts.with_layout` can turn conv maps into other
    ``(rows, features)`` matrices.

    Attributes
    ----------
    gradients : Representations or None
        When built with ``gradients=True``: for each layer the gradient of the per-example
        objective with respect to that layer's output, same names and shapes.
    layout : str
        How conv maps became matrices: ``"flatten"`` (as extracted: one row per example,
        ``c·h·w`` features), or what :func:`~layer_sim.representations.layouts.with_layout` applied.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], *, gradients: Representations | None = None,
                 shapes: Mapping[str, tuple[int, ...]] | None = None, layout: str = "flatten"):  # fmt: skip
        self._data: dict[str, torch.Tensor] = dict(tensors)
        self.gradients = gradients
        self.layout = layout
        given = dict(shapes or {})
        self._shapes = {k: tuple(given.get(k, tuple(v.shape[1:]))) for k, v in self._data.items()}
        for k, shape in self._shapes.items():
            t = self._data[k]
            if t.ndim != 2 or math.prod(shape) != t.shape[1]:
                raise InputError(
                    f"Representations: layer {k!r} is a tensor of shape {tuple(t.shape)}, not (n, prod{shape})"
                )

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

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-example shape of every layer's output before flattening, e.g. ``(6, 24, 24)`` or ``(120,)``."""
        return dict(self._shapes)

    def unflattened(self, name: str) -> torch.Tensor:
        """Layer ``name`` as the module returned it, ``(n, *shapes[name])`` (a view, no copy).

        Examples
        --------
        >>> r = Representations({"conv": torch.arange(24.0).reshape(2, 12)}, shapes={"conv": (3, 2, 2)})
        >>> r.unflattened("conv").shape, r.widths
        (torch.Size([2, 3, 2, 2]), {'conv': 12})
        """
        return self[name].reshape(self[name].shape[0], *self._shapes[name])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self._data.items())
        grads = ", with gradients" if self.gradients is not None else ""
        layout = "" if self.layout == "flatten" else f", layout={self.layout!r}"
        return f"Representations({shapes}{grads}{layout})"



# Exceptions a model's forward raises for input it cannot take (wrong shape or dtype).
_MODEL_INPUT_ERRORS = (RuntimeError, IndexError, TypeError, ValueError)


@strict_signature
def iter_representations(
    model: nn.Module,
    data,
    *,
    layers: Sequence[str | type[nn.Module]] | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    gradients: bool = False,
    objective=None,
) -> Iterator[Representations]:
    r"""Representations of chosen layers of ``model``, one :class:`Representations` per batch.

    Every chosen module gets a forward hook that *copies* its output (so later in-place
    operations such as ``ReLU(inplace=True)`` cannot change what was recorded) and flattens it
    per example to ``(batch, p)``. The model runs in eval mode, under ``torch.no_grad`` unless
    ``gradients``. While the generator is being consumed the model is hooked, in eval mode and on
    ``device``; when it is exhausted or closed (``break`` out of a ``for`` loop closes it, as does
    an exception in the forward pass) every hook is removed, every module's train/eval flag is
    restored and the model is moved back to its device. Arguments are checked when the
    generator is made, before any forward pass.

    Parameters
    ----------
    model : torch.nn.Module
        Any module whose forward takes one batch tensor and returns a tensor with the examples
        along dimension 0.
    data : tensor, (x, y) pair, Task, Dataset or DataLoader
        The examples. Tensors and pairs are cut into batches of ``batch_size`` in order; a
        :class:`~layer_sim.data.tasks.Task` means its ``test`` split (and its loss is the default
        ``objective``); a Dataset is wrapped in an unshuffled DataLoader; a DataLoader is used as
        is (its items may be ``x`` or ``(x, y, ...)``). ``y`` is only used for ``gradients``.
    layers : sequence of str or module types, default=None
        ``None`` selects every activation module (an instance of one of
        :data:`ACTIVATION_TYPES`; post-activation output) plus ``"output"``. Otherwise module
        names as in ``model.named_modules()``, ``"output"``, and/or module classes (every module of
        that class). Results are always in forward order, whatever the order requested.
    batch_size : int, default=1024
        Examples per forward pass (ignored for a DataLoader).
    device : str or torch.device, default=None
        Where to run; ``None`` keeps the model's device. Representations stay on this device.
    gradients : bool, default=False
        Also return :math:`g_i = \partial f_i / \partial h_i` for every chosen layer output
        :math:`h_i` of every example, where :math:`f_i` is example *i*'s ``objective`` value (one
        backward pass of :math:`\sum_i f_i` per batch), in ``.gradients``. Row *i* depends only on
        example *i* because examples do not interact in the forward pass: this is checked on the
        first batch of two examples or more, and a model that couples examples is refused.
    objective : "loss", "tang", Loss or callable ``(output, targets) -> (n,)``, default=None
        What to differentiate, one value per example (see
        :mod:`layer_sim.representations.objectives`), e.g. ``CrossEntropy()``, ``MSEOneHot()``,
        ``"tang"`` (Tang et al.'s label-free :class:`~layer_sim.representations.objectives.Tang`,
        beta 0.5) or ``"loss"`` (the task's loss; data must be a Task).
        ``None``: the loss of ``data`` when it is a Task; otherwise ``gradients=True`` needs an
        objective. There is deliberately no built-in default loss: the gradient of a loss the
        network was not trained with is a different quantity.

    Yields
    ------
    Representations
        Ordered mapping ``name -> (batch, p)`` tensor in the model's dtype, with ``.gradients``
        when asked.

    Raises
    ------
    UnknownNameError
        A requested layer name (or module type) does not exist; the message lists the names.
    ConfigError
        A ``device`` this machine does not have, ``gradients`` not a bool, ``gradients=True``
        without an objective, or an objective without ``gradients``.
    InputError
        Unusable ``data`` (no examples, NaN/Inf, targets that do not match x or the objective),
        data the model raises on in the first batch (the message names the module that raised),
        a chosen module never called, an output that is not a batch-first tensor, a model that
        couples examples when ``gradients``, or a batch whose calls differ from the first.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> [(list(r), r["1"].shape[0]) for r in iter_representations(net, torch.randn(10, 4), batch_size=4)]
    [(['1', 'output'], 4), (['1', 'output'], 4), (['1', 'output'], 2)]
    """
    plan = _plan(model, data, layers=layers, batch_size=batch_size, device=device, gradients=gradients,
                 objective=objective)  # fmt: skip
    return _run(plan)


@strict_signature
def extract(
    model: nn.Module,
    data,
    *,
    layers: Sequence[str | type[nn.Module]] | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    gradients: bool = False,
    objective=None,
) -> Representations:
    r"""Representations of chosen layers of ``model`` on all of ``data``, one ``(n, p)`` tensor per layer.

    The batches of :func:`iter_representations` (same arguments) concatenated along dimension 0,
    gradients included. For ``n`` beyond memory, consume :func:`iter_representations` instead
    (e.g. feeding :class:`~layer_sim.measures.StreamingLinearCKA` batch by batch).

    Returns
    -------
    Representations
        Ordered mapping ``name -> (n, p)`` tensor in the model's dtype, with ``.gradients`` when
        ``gradients=True``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from layer_sim.data.tasks import CrossEntropy
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> reps = extract(net, torch.randn(10, 4))
    >>> list(reps), reps["1"].shape
    (['1', 'output'], torch.Size([10, 3]))
    >>> g = extract(net, (torch.randn(10, 4), torch.zeros(10, dtype=torch.long)), gradients=True,
    ...             objective=CrossEntropy())
    >>> g.gradients["output"].shape
    torch.Size([10, 2])
    """
    keep: dict[str, list[torch.Tensor]] = {}
    keep_grad: dict[str, list[torch.Tensor]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for batch in iter_representations(model, data, layers=layers, batch_size=batch_size, device=device,
                                      gradients=gradients, objective=objective):  # fmt: skip
        shapes = batch.shapes
        for name, t in batch.items():
            keep.setdefault(name, []).append(t)
        if batch.gradients is not None:
            for name, g in batch.gradients.items():
                keep_grad.setdefault(name, []).append(g)
    grads = Representations({k: torch.cat(v) for k, v in keep_grad.items()}, shapes=shapes) if gradients else None
    return Representations({k: torch.cat(v) for k, v in keep.items()}, gradients=grads, shapes=shapes)


@dataclass(frozen=True)
class _Plan:
    """Checked arguments of one extraction."""

    model: nn.Module
    batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]
    checked_finite: bool  # x was checked for NaN/Inf as a whole (tensor data)
    chosen: list[tuple[str, nn.Module]]
    want_output: bool
    device: torch.device | None
    objective: object | None  # None: no gradients


def _plan(model, data, *, layers, batch_size, device, gradients, objective) -> _Plan:
    if not isinstance(model, nn.Module):
        raise InputError(f"extract: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"extract: batch_size must be a positive integer, got {batch_size!r}")
    check("extract", "gradients", Flag(), gradients)
    run_on = resolve_device("extract", device)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise InputError(
            "extract: the model's weights are on the meta device (shapes, no values); "
            "materialise them first, e.g. model.to_empty(device='cpu') then load_state_dict"
        )
    chosen, want_output = _select(model, layers)
    if not chosen and not want_output:
        raise InputError("extract: no layers selected; pass layer names, module types or None")
    task_loss = data.loss if isinstance(data, Task) else None
    batches, has_targets, checked = _batches(data, batch_size)
    if not gradients:
        if objective is not None:
            raise ConfigError("extract: objective= is only used with gradients=True")
        return _Plan(model, batches, checked, chosen, want_output, run_on, None)
    objective = task_loss if objective is None else objectives.resolve(objective, task_loss=task_loss, where="extract")
    if has_targets is False and (objective is None or objectives.needs_targets(objective)):
        raise InputError(
            "extract: gradients=True needs targets; pass data as an (x, y) pair, a Dataset or a "
            "DataLoader yielding (x, y) with objective= (e.g. CrossEntropy()), or a Task"
        )
    if objective is None:
        raise ConfigError(
            "extract: gradients=True needs objective= (the loss the network was trained with, e.g. "
            "CrossEntropy() or MSEOneHot(), or any (output, targets) -> (n,) callable), or data as a "
            "Task, whose loss is used"
        )
    objectives.as_objective(objective, where="extract")
    return _Plan(model, batches, checked, chosen, want_output, run_on, objective)


def _run(plan: _Plan) -> Iterator[Representations]:
    gradients = plan.objective is not None
    order: list[str] | None = None
    independent = False  # checked once, on the first batch with two examples or more
    with recording(plan.model, plan.chosen, device=plan.device) as rec:
        run_on = plan.device if plan.device is not None else model_device(plan.model)
        for b, (x, y) in enumerate(plan.batches):
            if not plan.checked_finite:
                _check_finite(x, f"batch {b} of data")
            if x.shape[0] == 0:
                continue
            x = x.to(run_on)
            first = order is None
            if gradients:
                if y is None and objectives.needs_targets(plan.objective):
                    raise InputError(f"extract: gradients=True needs targets, but batch {b} of data has none")
                y = None if y is None else y.to(run_on)
                with torch.enable_grad():
                    # A leaf that requires grad keeps the graph alive even if all weights are frozen.
                    leaf = x.detach().requires_grad_(True) if x.is_floating_point() else x
                    out = _forward(plan.model, leaf, rec, first=first)
                    values = objectives.evaluate(plan.objective, out, y, where="extract")
                    calls = rec.take()
                    live = [c.live for c in calls] + ([out] if plan.want_output else [])
                    if not independent and x.shape[0] > 1:
                        _check_independent(values, [leaf] if leaf.requires_grad else live)
                        independent = True
                    grads = torch.autograd.grad(values.sum(), live, allow_unused=True)
            else:
                with torch.no_grad():
                    out = _forward(plan.model, x, rec, first=first)
                calls = rec.take()
            names = _call_names([c.name for c in calls])
            tensors = [c.copy for c in calls]
            if plan.want_output:
                if not isinstance(out, torch.Tensor):
                    raise InputError(
                        f"extract: the model returned {type(out).__name__}, not a tensor; "
                        "drop 'output' from layers"
                    )
                names.append(OUTPUT)
                tensors.append(out.detach().clone())
            if order is None:
                order = names
                missing = [n for n, _ in plan.chosen if n not in order]
                if missing:
                    raise InputError(
                        f"extract: layer(s) {missing} were chosen but never called in the forward pass"
                    )
            elif names != order:
                raise InputError(
                    f"extract: batch {b} called layers {names}, but the first batch called {order}; "
                    "the forward pass must call the same modules for every batch"
                )
            flat, shapes = {}, {}
            for name, t in zip(names, tensors):
                if t.ndim == 0 or t.shape[0] != x.shape[0]:
                    raise InputError(
                        f"extract: output of {name!r} has shape {tuple(t.shape)}, but the batch has "
                        f"{x.shape[0]} examples along dimension 0"
                    )
                flat[name] = t.reshape(t.shape[0], -1)
                shapes[name] = tuple(t.shape[1:])
            flat_grads = None
            if gradients:
                flat_grads = Representations({
                    name: (torch.zeros_like(t) if g is None else g.detach()).reshape(t.shape[0], -1)
                    for name, t, g in zip(names, tensors, grads)
                }, shapes=shapes)  # fmt: skip
            yield Representations(flat, gradients=flat_grads, shapes=shapes)
    if order is None:
        raise InputError("extract: data contains no examples")


def _forward(model: nn.Module, x: torch.Tensor, rec: Recorder, *, first: bool):
    """``model(x)``; on the first batch a failure is reported as data the model cannot take.

    Later batches are not wrapped: once the model took the first batch, an exception is the
    model's own and keeps its type.
    """
    if not first:
        return model(x)
    with rec.tracing(model):
        try:
            return model(x)
        except LayerSimError:
            raise
        except _MODEL_INPUT_ERRORS as exc:
            where = rec.innermost
            raise InputError(
                f"extract: the model raised on the first batch of data (x of shape {tuple(x.shape)}, "
                f"{x.dtype}){'' if where is None else f' in module {where!r}'}: {type(exc).__name__}: "
                f"{exc}; check that data fits the model's input"
            ) from exc


def _check_independent(values: torch.Tensor, inputs: list[torch.Tensor]) -> None:
    """Refuse a forward pass in which example 0's objective depends on another example's rows."""
    grads = torch.autograd.grad(values[0], inputs, retain_graph=True, allow_unused=True)
    for g in grads:
        if g is not None and g.shape[0] == values.shape[0] and bool(g[1:].detach().ne(0).any()):
            raise InputError(
                "extract: the model couples examples: example 0's objective depends on other examples "
                "of its batch (e.g. a BatchNorm using batch statistics, or a normalisation over "
                "dimension 0), so per-example gradients are not defined; gradients=True needs a model "
                "whose eval-mode forward treats every example on its own"
            )


def _check_finite(x: torch.Tensor, what: str) -> None:
    """Refuse data without usable values: sparse or meta tensors (no dense values), NaN or Inf."""
    if x.layout != torch.strided:
        raise InputError(f"extract: {what} is a sparse tensor (layout {x.layout}); pass dense values (.to_dense())")
    if x.is_meta:
        raise InputError(f"extract: {what} is on the meta device, which holds shapes but no values")
    if (x.is_floating_point() or x.is_complex()) and not bool(torch.isfinite(x).all()):
        bad = torch.nonzero(~torch.isfinite(x).reshape(x.shape[0], -1).all(dim=1)).flatten()[:5].tolist()
        raise InputError(f"extract: {what} contains NaN or Inf (examples {bad}, counted from 0)")


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


def _batches(data, batch_size: int):
    """``(batches, has_targets, checked_finite)`` for any supported data form; batches are in order.

    ``has_targets`` is None when only iterating can tell (Dataset, DataLoader). Tensor data is
    checked as a whole here, before any forward pass.
    """
    if isinstance(data, Task):
        if data.test is None:
            raise InputError(f"extract: task {data.name!r} has no test split; pass task.train explicitly")
        data = data.test
    if isinstance(data, torch.Tensor):
        x, y = data, None
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        y = torch.as_tensor(y)
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise InputError(
                f"extract: x has {x.shape[0] if x.ndim else 0} examples but y has "
                f"{y.shape[0] if y.ndim else 0}; they must match"
            )
    elif isinstance(data, DataLoader):
        return (_split_item(item) for item in data), None, False
    elif isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        return (_split_item(item) for item in loader), None, False
    else:
        raise InputError(
            "extract: data must be a tensor, an (x, y) pair of tensors, a Task, a Dataset or a DataLoader, "
            f"got {type(data).__name__}"
        )
    if x.ndim == 0:
        raise InputError("extract: x must have the examples along dimension 0, got a 0-d tensor")
    if x.shape[0] == 0:
        raise InputError("extract: data contains no examples")
    _check_finite(x, "data")
    batches = [(x[s : s + batch_size], None if y is None else y[s : s + batch_size])
               for s in range(0, x.shape[0], batch_size)]  # fmt: skip
    return batches, y is not None, True


def _split_item(item) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(item, torch.Tensor):
        return item, None
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor):
        return item[0], (torch.as_tensor(item[1]) if len(item) > 1 else None)
    raise InputError(
        f"extract: a DataLoader batch must be a tensor or (x, y, ...), got {type(item).__name__}"
    )
