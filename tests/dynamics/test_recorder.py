"""AlignmentRecorder: its values against direct index calls and a NumPy transcription of S2's formula,
probes against the one-shot index, no effect on training, sampling, undefined values, errors."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from layer_sim.data import Task
from layer_sim.dynamics import BATCH, AlignmentRecorder, one_hot_targets, probe_sets
from layer_sim.errors import ConfigError, InputError, UnknownNameError
from layer_sim.measures import get, linear_cka
from layer_sim.models import MLP
from layer_sim.training import Recipe, evaluate, fit

RECIPE = Recipe(lr=0.1, readout_lr=0.05, momentum=0.0, weight_decay=0.0, batch_size=20, epochs=2,
                schedule="constant", warmup_epochs=0.0)  # fmt: skip


def _task(n=120, d=12, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (torch.randn(n, d, generator=g) + 1.5 * y[:, None].float() * torch.linspace(-1, 1, d)).to(dtype)
    return Task("blobs", (x, y), (x[:50], y[:50]), 2, "mse_one_hot")


def s2_kernel_calc(labels: np.ndarray, phi: np.ndarray) -> float:
    """S2's per-batch ``kernel_calc`` transcribed in float64 NumPy: double-centred Grams of the raw
    digit values and of the features, ⟨K1c, K2c⟩_F / (‖K1c‖_F ‖K2c‖_F), with H = I − 11ᵀ/m."""
    y = labels[None, :].astype(np.float64)
    K1 = y.T @ y
    K2 = phi.astype(np.float64) @ phi.astype(np.float64).T
    m = len(labels)
    H = np.eye(m) - np.ones((m, m)) / m
    K1c, K2c = H @ K1 @ H, H @ K2 @ H
    return float(np.trace(K2c @ K1c.T) / (np.linalg.norm(K1c) * np.linalg.norm(K2c)))


class _Capture:
    """After the recorder: the same quantities computed without hooks, by hand."""

    def __init__(self):
        self.rows = []

    def on_batch_end(self, state):
        with torch.no_grad():
            phi = torch.relu(state.model.fc1(state.inputs))
            out = state.model(state.inputs)
        onehot = nn.functional.one_hot(state.targets, 2).double()
        digits = np.where(state.targets.numpy() == 1, 7.0, 2.0)  # S2 used the raw digits, e.g. 2 and 7
        self.rows.append((state.step, float(linear_cka(phi, onehot)), float(linear_cka(out, onehot)),
                          s2_kernel_calc(digits, phi.numpy())))  # fmt: skip


def test_batch_values_equal_a_direct_index_call_and_s2s_formula_after_the_step():
    task = _task()
    rec, cap = AlignmentRecorder(), _Capture()
    fit(MLP((12, 64, 2), seed=0), task, RECIPE, seed=0, callbacks=[rec, cap])
    h = rec.history()
    assert list(h.columns) == ["step", "epoch", "layer", "split", "measure", "value"]
    batch = h[h.split == BATCH]
    assert set(batch.measure) == {"linear_cka"} and sorted(set(batch.layer)) == ["act1", "output"]
    hidden = batch[batch.layer == "act1"].set_index("step").value
    output = batch[batch.layer == "output"].set_index("step").value
    assert len(cap.rows) == 12 == len(hidden)  # 6 steps per epoch, 2 epochs
    for step, direct_hidden, direct_output, s2 in cap.rows:
        assert abs(hidden[step] - direct_hidden) <= 1e-12
        assert abs(output[step] - direct_output) <= 1e-12
        # Two classes: centred one-hot targets give S2's value on raw labels.
        assert abs(hidden[step] - s2) <= 1e-10
    assert (batch.epoch == (batch.step - 1) // 6 + 1).all()


def test_probes_equal_the_one_shot_index_on_the_whole_probe_and_its_accuracy():
    # float64 throughout: a float32 forward pass of 7 examples and of 50 round differently (1e-8).
    task = _task(dtype=torch.float64)
    probes = probe_sets(task)
    rec = AlignmentRecorder(probes=probes, probe_batch_size=7)  # several uneven batches per probe
    model = MLP((12, 64, 2), seed=1).double()
    fit(model, task, RECIPE, seed=0, callbacks=[rec])
    h = rec.history()
    last = h[h.epoch == 2]
    with torch.no_grad():
        for split, (x, y) in probes.items():
            target = nn.functional.one_hot(y, 2).double()
            expected = {"act1": linear_cka(torch.relu(model.fc1(x)), target), "output": linear_cka(model(x), target)}
            for layer, value in expected.items():
                got = last[(last.split == split) & (last.layer == layer)].value
                assert len(got) == 1 and abs(float(got.iloc[0]) - float(value)) <= 1e-10
    epochs = rec.epochs()
    assert list(epochs.epoch) == [1, 2]
    _, test_acc = evaluate(model, task.test, loss="mse_one_hot")
    assert epochs.test_probe_accuracy.iloc[-1] == test_acc
    # The batch column of an epoch is the mean of its batch values (S2's per-epoch quantity).
    batch = h[(h.split == BATCH) & (h.layer == "act1")]
    assert epochs["batch/act1"].tolist() == pytest.approx(batch.groupby("epoch").value.mean().tolist(), abs=1e-15)
    assert epochs.train_loss.notna().all() and "test/output" in epochs.columns


def test_recording_does_not_change_training():
    task = _task()
    plain, recorded = MLP((12, 64, 2), seed=3), MLP((12, 64, 2), seed=3)
    fit(plain, task, RECIPE, seed=5)
    fit(recorded, task, RECIPE, seed=5, callbacks=[AlignmentRecorder(probes=probe_sets(task))])
    for (name, a), (_, b) in zip(plain.state_dict().items(), recorded.state_dict().items()):
        assert torch.equal(a, b), name


def test_every_samples_steps_from_the_first_and_probe_every_samples_epochs():
    task = _task()
    rec = AlignmentRecorder(layers=["act1"], every=4, probes=probe_sets(task), probe_every=2)
    fit(MLP((12, 16, 2), seed=0), task, RECIPE.__class__(**{**RECIPE.to_dict(), "epochs": 3}), seed=0, callbacks=[rec])
    h = rec.history()
    assert sorted(set(h[h.split == BATCH].step)) == [1, 5, 9, 13, 17]
    assert sorted(set(h[h.split != BATCH].epoch)) == [2]
    assert set(h.layer) == {"act1"}


def test_any_registered_measure_is_used_as_given():
    task = _task(dtype=torch.float64)
    measure = get("linear_cka_debiased")  # not linear_cka: probes take the collect-then-score route
    rec, cap = AlignmentRecorder(layers=["act1"], measure=measure, probes=probe_sets(task)), []
    model = MLP((12, 32, 2), seed=0).double()

    class Capture:
        def on_batch_end(self, state):
            with torch.no_grad():
                cap.append(float(linear_cka(torch.relu(state.model.fc1(state.inputs)),
                                            one_hot_targets(state.targets, 2), debiased=True)))  # fmt: skip

    fit(model, task, RECIPE, seed=0, callbacks=[rec, Capture()])
    h = rec.history()
    assert set(h.measure) == {"linear_cka_debiased"}
    assert h[h.split == BATCH].value.tolist() == pytest.approx(cap, abs=1e-12)
    x, y = probe_sets(task)["test"]
    with torch.no_grad():
        expected = float(linear_cka(torch.relu(model.fc1(x)), one_hot_targets(y, 2), debiased=True))
    got = h[(h.split == "test") & (h.epoch == 2)].value
    assert abs(float(got.iloc[0]) - expected) <= 1e-12


def _state(model, x, y, step=1):
    with torch.no_grad():
        out = model(x)
    return SimpleNamespace(model=model, inputs=x, targets=y, outputs=out, step=step, epoch=1)


def test_undefined_values_are_counted_and_not_recorded():
    model = MLP((4, 8, 3), seed=0)
    x = torch.randn(10, 4)
    rec = AlignmentRecorder()
    rec.on_batch_end(_state(model, x, torch.zeros(10, dtype=torch.int64)))  # a batch of one class
    assert rec.undefined == {(BATCH, "act1"): 1, (BATCH, "output"): 1} and len(rec.history()) == 0
    seq = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        seq[0].bias.fill_(-100.0)  # every ReLU off: layer "1" is constant, layer "0" is not
    rec = AlignmentRecorder(layers=["0", "1"])
    rec.on_batch_end(_state(seq, x, torch.arange(10) % 3, step=2))
    assert rec.undefined == {(BATCH, "1"): 1}
    assert rec.history().layer.tolist() == ["0"]


def test_default_layers_are_the_hidden_representations_and_the_output():
    x, y = torch.randn(6, 4), torch.arange(6) % 2
    skip = MLP((4, 8, 8, 2), skip=True, seed=0)
    rec = AlignmentRecorder()
    rec.on_batch_end(_state(skip, x, y))
    assert rec.layers == ("act1", "res2", "output")
    seq = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    rec = AlignmentRecorder()
    rec.on_batch_end(_state(seq, x, y))
    assert rec.layers == ("1", "3", "output")
    assert sorted(set(rec.history().layer)) == ["1", "3", "output"]


def test_bad_options_are_refused_with_the_argument_named():
    with pytest.raises(ConfigError, match="AlignmentRecorder: every must be an integer >= 1, got 0"):
        AlignmentRecorder(every=0)
    with pytest.raises(UnknownNameError, match="unknown measure 'cosine'"):
        AlignmentRecorder(measure="cosine")
    with pytest.raises(ConfigError, match="layers must be a non-empty sequence of layer names"):
        AlignmentRecorder(layers="act1")
    with pytest.raises(ConfigError, match="probe names must be non-empty strings other than 'batch'"):
        AlignmentRecorder(probes={"batch": (torch.randn(4, 2), torch.arange(4) % 2)})
    with pytest.raises(InputError, match="probe 'test' needs int64 labels of shape"):
        AlignmentRecorder(probes={"test": (torch.randn(4, 2), torch.ones(4))})
    with pytest.raises(InputError, match="probe 'test' must be an"):
        AlignmentRecorder(probes={"test": torch.randn(4, 2)})
    with pytest.raises(ConfigError, match="probes must be a mapping"):
        AlignmentRecorder(probes=[(torch.randn(4, 2), torch.arange(4) % 2)])
    rec = AlignmentRecorder(layers=["fc9"])
    with pytest.raises(UnknownNameError, match="fc9"):
        rec.on_batch_end(_state(MLP((4, 8, 2), seed=0), torch.randn(6, 4), torch.arange(6) % 2))


def test_probe_sets_are_fixed_subsets():
    task = _task(n=100)
    a, b = probe_sets(task, size=30, seed=4), probe_sets(task, size=30, seed=4)
    assert torch.equal(a["train"][0], b["train"][0]) and len(a["train"][1]) == 30 and len(a["test"][1]) == 30
    whole = probe_sets(task)
    assert torch.equal(whole["train"][0], task.train[0]) and torch.equal(whole["test"][1], task.test[1])
    assert set(probe_sets(Task("t", task.train, None, 2, "mse_one_hot"))) == {"train"}
    with pytest.raises(ConfigError, match="probe_sets: size must be an integer >= 2, got 1"):
        probe_sets(task, size=1)
