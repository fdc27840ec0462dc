r"""The alignment recorder: kernel–target alignment of chosen layers during training, as a trainer callback.

The alignment of a layer with the targets is a similarity index between the layer's features
:math:`\Phi` (n × p) and the one-hot targets :math:`Y` (n × C) of the same examples; by default
linear CKA,

.. math::

    \mathrm{CKA}(\Phi, Y) = \frac{\lVert Y_c^\top \Phi_c \rVert_F^2}
    {\lVert \Phi_c^\top \Phi_c \rVert_F \, \lVert Y_c^\top Y_c \rVert_F}
    = \frac{\langle H K H, H L H \rangle_F}{\lVert H K H \rVert_F \, \lVert H L H \rVert_F},

with :math:`K = \Phi\Phi^\top`, :math:`L = YY^\top`, :math:`H = I - \tfrac{1}{n}\mathbf{1}\mathbf{1}^\top`
and :math:`X_c = HX` (Cortes, Mohri & Rostamizadeh 2012; Kornblith et al. 2019). The index centres
the targets itself. For two classes the centred one-hot kernel is a positive multiple of the
centred kernel of any two distinct scalar labels (:math:`Y_c = (y_c, -y_c)` up to scale), so the
value equals S2's per-batch ``kernel_calc`` on raw digit values (``shared/reference/seed-systems.md``);
for more classes only the one-hot form is meaningful.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from layer_sim._options import Int, Maybe, check_options, strict_signature
from layer_sim.errors import ConfigError, DegenerateInputError, InputError
from layer_sim.measures import Measure, StreamingLinearCKA, get
from layer_sim.representations import OUTPUT, extract, iter_representations

__all__ = ["AlignmentRecorder", "BATCH", "one_hot_targets", "probe_sets"]

#: The ``split`` of per-batch values (probe sets are named by the caller, e.g. ``"train"``, ``"test"``).
BATCH = "batch"

_DECLARED = {"every": Int(1), "probe_every": Int(1), "probe_batch_size": Int(1)}


@strict_signature
def one_hot_targets(labels: torch.Tensor, num_classes: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The one-hot targets ``Y`` (n × ``num_classes``) of integer ``labels``, on the labels' device.

    Examples
    --------
    >>> one_hot_targets(torch.tensor([0, 2, 1]), 3)
    tensor([[1., 0., 0.],
            [0., 0., 1.],
            [0., 1., 0.]], dtype=torch.float64)
    """
    return nn.functional.one_hot(labels, num_classes).to(dtype)


@strict_signature
def probe_sets(task, *, size: int | None = None, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fixed probe sets of a task: ``{"train": ..., "test": ...}``, each an ``(inputs, labels)`` pair.

    Each split is used whole when ``size`` is None or at least its length; otherwise a fixed
    random subset of ``size`` examples (``torch.randperm`` with a generator seeded ``seed``, the
    same for both splits), so that every epoch, run and seed of a study is probed on the same
    examples. A task without a test split gives only ``"train"``.

    Examples
    --------
    >>> from layer_sim.data import Task
    >>> x, y = torch.rand(10, 3), torch.arange(10) % 2
    >>> probes = probe_sets(Task("toy", (x, y), (x[:4], y[:4]), 2, "mse_one_hot"), size=6)
    >>> {name: len(labels) for name, (_, labels) in probes.items()}
    {'train': 6, 'test': 4}
    """
    opts = check_options("probe_sets", {"size": Maybe(Int(2)), "seed": Int(0)}, {"size": size, "seed": seed})
    size, seed = opts["size"], opts["seed"]
    out = {}
    for name, data in (("train", task.train), ("test", task.test)):
        if data is None:
            continue
        x, y = data
        if size is not None and size < len(y):
            idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:size]
            x, y = x[idx], y[idx]
        out[name] = (x, y)
    return out


@strict_signature
class AlignmentRecorder:
    r"""Trainer callback recording the alignment of layers with the targets during training.

    After an optimiser step (every ``every``-th step, from the first), the features of that
    step's batch are recomputed with the updated weights (one extra forward pass of the batch, in
    eval mode, without gradients: S2's protocol) and, for every recorded layer, the index
    ``measure(features, Y)`` with the batch's one-hot targets ``Y`` is stored with split
    :data:`BATCH`. At the end of every ``probe_every``-th epoch the same index is computed on each
    probe set, all of it at once (exactly, not a mean over batches), together with the probe's
    accuracy (``argmax`` of the model output = label).

    Parameters
    ----------
    layers : sequence of str or None, default=None
        Module names as in ``model.named_modules()``, and/or ``"output"``. None: every hidden
        representation and the output; for an :class:`~layer_sim.models.MLP` its
        ``layer_names`` (``act<k>``, or ``res<k>`` after a skip connection), for any other model
        every activation module (see :func:`~layer_sim.representations.iter_representations`).
    measure : str or Measure, default="linear_cka"
        Any registered measure (``layer_sim.measures.available()``) or a ``Measure`` with its
        parameters bound (``measures.get("rbf_cka", sigma=0.4)``); called as
        ``measure(features, Y)``.
    probes : mapping name -> (inputs, labels), or None, default=None
        Fixed probe sets, e.g. :func:`probe_sets` of the task (``"train"`` and ``"test"``:
        CKA(Train) and CKA(Test)). None: no probes. A name may not be ``"batch"``.
    every : int >= 1, default=1
        Record the batch value after steps 1, 1 + every, 1 + 2·every, ...
    probe_every : int >= 1, default=1
        Probe at the end of epochs probe_every, 2·probe_every, ...; :meth:`record_probes` probes
        at any other time (e.g. after the last epoch).
    probe_batch_size : int >= 1, default=1000
        Examples per forward pass over a probe set.

    Attributes
    ----------
    undefined : Counter
        ``(split, layer) -> count`` of values the index leaves undefined (a batch of one class,
        or a layer with constant features: :class:`~layer_sim.errors.DegenerateInputError`);
        those values are not recorded, and means over an epoch are over the defined ones.
    seconds, probe_seconds : float
        Wall time spent on batch values and on probes.

    Notes
    -----
    Cost per recorded step: one forward pass of the batch plus the index. For linear CKA the
    index takes the cheaper route per representation, the n × n Gram matrix when the layer is
    wider than the batch (p ≥ n) and the p × p covariance otherwise, in float64. Probes with
    linear CKA are accumulated batch by batch (:class:`~layer_sim.measures.StreamingLinearCKA`),
    so a probe set of any size needs memory independent of its length; other measures hold the
    probe's features in memory. RBF CKA with its median bandwidth is undefined on the targets of
    two classes (over half of the pairs of one-hot rows coincide, so the median distance is 0).

    References
    ----------
    C. Cortes, M. Mohri, A. Rostamizadeh. Algorithms for learning kernels based on centered
    alignment. JMLR 13, 2012. S. Kornblith et al. Similarity of neural network representations
    revisited. ICML 2019.

    Examples
    --------
    >>> from layer_sim.data import Task
    >>> from layer_sim.models import MLP
    >>> from layer_sim.training import Recipe, fit
    >>> x = torch.rand(64, 8); y = (x[:, 0] > 0.5).long()
    >>> task = Task("toy", (x, y), (x, y), 2, "mse_one_hot")
    >>> rec = AlignmentRecorder(probes=probe_sets(task))
    >>> _ = fit(MLP((8, 16, 2), seed=0), task, Recipe(epochs=2, batch_size=16), seed=0, callbacks=[rec])
    >>> h = rec.history()
    >>> list(h.columns)
    ['step', 'epoch', 'layer', 'split', 'measure', 'value']
    >>> sorted(set(h.split)), sorted(set(h.layer)), len(h[h.split == "batch"])  # 2 layers x 8 steps
    (['batch', 'test', 'train'], ['act1', 'output'], 16)
    """

    def __init__(
        self,
        *,
        layers: Sequence[str] | None = None,
        measure: str | Measure = "linear_cka",
        probes: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
        every: int = 1,
        probe_every: int = 1,
        probe_batch_size: int = 1000,
    ) -> None:
        where = "AlignmentRecorder"
        opts = check_options(where, _DECLARED, {"every": every, "probe_every": probe_every,
                                                "probe_batch_size": probe_batch_size})  # fmt: skip
        self.every, self.probe_every, self.probe_batch_size = opts["every"], opts["probe_every"], opts["probe_batch_size"]
        self.measure = get(measure)
        if layers is not None:
            if isinstance(layers, str) or not all(isinstance(n, str) for n in layers) or not layers:
                raise ConfigError(f"{where}: layers must be a non-empty sequence of layer names, got {layers!r}")
            layers = tuple(layers)
        self.layers: tuple[str, ...] | None = layers
        self.probes = _check_probes(where, probes)
        self.undefined: Counter = Counter()
        self.seconds = 0.0
        self.probe_seconds = 0.0
        self._rows: list[tuple[int, int, str, str, float]] = []  # step, epoch, layer, split, value
        self._epochs: dict[int, dict] = {}

    # ------------------------------------------------------------------ callback hooks

    def on_batch_end(self, state) -> None:
        """Record the batch values after step ``state.step`` (if it is one of every ``every``)."""
        if (state.step - 1) % self.every:
            return
        t0 = time.perf_counter()
        names = self._names(state.model, state.inputs)
        reps = extract(state.model, state.inputs, layers=list(names), batch_size=len(state.inputs))
        targets = one_hot_targets(state.targets, state.outputs.shape[-1], dtype=_float(reps[names[0]]))
        for name in names:
            self._store(state.step, state.epoch, name, BATCH, self._index(reps[name], targets))
        self.seconds += time.perf_counter() - t0

    def on_epoch_end(self, state) -> None:
        """Keep the epoch's metrics; probe if this is one of every ``probe_every`` epochs."""
        self._epochs.setdefault(state.epoch, {"epoch": state.epoch, "step": state.step}).update(state.metrics or {})
        if self.probes and state.epoch % self.probe_every == 0:
            self.record_probes(state.model, epoch=state.epoch, step=state.step)

    # ------------------------------------------------------------------ probes

    def record_probes(self, model: nn.Module, *, epoch: int, step: int) -> None:
        """Compute the index of every recorded layer on every probe set now, and each probe's accuracy.

        Stored under ``epoch`` and ``step``; the accuracy goes into that epoch's row of
        :meth:`epochs` as ``<probe>_probe_accuracy``.
        """
        t0 = time.perf_counter()
        names = self._names(model, next(iter(self.probes.values()))[0])
        row = self._epochs.setdefault(epoch, {"epoch": epoch, "step": step})
        for probe, (x, y) in self.probes.items():
            values, correct = self._probe(model, names, x, y)
            for name in names:
                self._store(step, epoch, name, probe, values[name])
            row[f"{probe}_probe_accuracy"] = correct / len(y)
        self.probe_seconds += time.perf_counter() - t0

    def _probe(self, model, names, x, y) -> tuple[dict[str, float | None], int]:
        wanted = list(dict.fromkeys([*names, OUTPUT]))
        streaming = self.measure.name == "linear_cka"
        accumulators = {name: StreamingLinearCKA() for name in names} if streaming else None
        collected: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        correct, start = 0, 0
        num_classes = None
        for reps in iter_representations(model, x, layers=wanted, batch_size=self.probe_batch_size):
            labels = y[start : start + reps.n].to(reps[OUTPUT].device)
            start += reps.n
            num_classes = reps[OUTPUT].shape[-1]
            correct += int((reps[OUTPUT].argmax(dim=-1) == labels).sum())
            targets = one_hot_targets(labels, num_classes, dtype=_float(reps[names[0]]))
            for name in names:
                if streaming:
                    accumulators[name].update(reps[name], targets)
                else:
                    collected[name].append(reps[name])
        values = {}
        for name in names:
            if streaming:
                values[name] = _defined(lambda acc=accumulators[name]: acc.value())
            else:
                feats = torch.cat(collected[name])
                targets = one_hot_targets(y.to(feats.device), num_classes, dtype=_float(feats))
                values[name] = self._index(feats, targets)
        return values, correct

    # ------------------------------------------------------------------ results

    def history(self):
        """Every recorded value as a DataFrame ``step, epoch, layer, split, measure, value`` (long format).

        ``split`` is ``"batch"`` for batch values, else the probe's name; ``step`` is the number
        of optimiser steps taken when the value was computed.
        """
        import pandas as pd

        frame = pd.DataFrame(self._rows, columns=["step", "epoch", "layer", "split", "value"])
        frame.insert(4, "measure", self.measure.name)
        return frame

    def epochs(self):
        """One row per epoch: the trainer's metrics, each probe's accuracy, and the epoch's index values.

        The trainer's metrics are the epoch's row of ``FitResult.history`` (``train_loss``,
        ``train_accuracy``, ``test_loss``, ``test_accuracy``, ...). Index values are in columns
        ``"<split>/<layer>"``: for ``batch`` the mean over the epoch's recorded batches (S2's
        per-epoch quantity), for a probe its value at the end of the epoch (empty when not probed).
        """
        import pandas as pd

        frame = pd.DataFrame(sorted(self._epochs.values(), key=lambda r: r["epoch"]))
        values = self.history()
        if len(values):
            wide = values.groupby(["epoch", "split", "layer"], sort=False)["value"].mean().unstack(["split", "layer"])
            wide.columns = [f"{split}/{layer}" for split, layer in wide.columns]
            wide = wide.reset_index()
            frame = wide if frame.empty else frame.merge(wide, on="epoch", how="outer")
        return frame.sort_values("epoch", ignore_index=True) if len(frame) else frame

    # ------------------------------------------------------------------ helpers

    def _names(self, model: nn.Module, inputs: torch.Tensor) -> tuple[str, ...]:
        """The recorded layers, resolved on first use (the default needs the model)."""
        if self.layers is None:
            hidden = getattr(model, "layer_names", None)
            if isinstance(hidden, tuple) and hidden and all(isinstance(n, str) for n in hidden):
                self.layers = (*hidden, OUTPUT)
            else:  # every activation module and the output, as iter_representations picks them
                self.layers = extract(model, inputs[:1], batch_size=1).names
        return self.layers

    def _index(self, features: torch.Tensor, targets: torch.Tensor) -> float | None:
        return _defined(lambda: self.measure(features, targets))

    def _store(self, step: int, epoch: int, layer: str, split: str, value: float | None) -> None:
        if value is None:
            self.undefined[(split, layer)] += 1
        else:
            self._rows.append((step, epoch, layer, split, value))


def _defined(compute) -> float | None:
    """``float(compute())``, or None when the index is undefined for these inputs."""
    try:
        value = float(compute())
    except DegenerateInputError:
        return None
    if not math.isfinite(value):  # the measures never return NaN; a guard, not a code path
        raise InputError(f"AlignmentRecorder: the index returned {value}")
    return value


def _float(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.is_floating_point() else torch.float64


def _check_probes(where: str, probes) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    if probes is None:
        return {}
    if not isinstance(probes, Mapping):
        raise ConfigError(f"{where}: probes must be a mapping name -> (inputs, labels), got {type(probes).__name__}")
    out = {}
    for name, data in probes.items():
        if not isinstance(name, str) or not name or name == BATCH:
            raise ConfigError(f"{where}: probe names must be non-empty strings other than {BATCH!r}, got {name!r}")
        if not (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)):
            raise InputError(f"{where}: probe {name!r} must be an (inputs, labels) pair of tensors")
        x, y = data
        if y.dtype != torch.int64 or y.ndim != 1 or len(x) != len(y) or len(y) < 2:
            raise InputError(
                f"{where}: probe {name!r} needs int64 labels of shape (n,) with n >= 2 and as many inputs, got "
                f"labels {y.dtype} {tuple(y.shape)} and inputs {tuple(x.shape)}"
            )
        out[name] = (x, y)
    return out
