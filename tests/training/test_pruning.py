"""Pruning: global magnitude masks against a NumPy reference, zeros that survive training, IMP with LR rewinding."""


import numpy as np
import pytest
import torch

from layer_sim.data import TASKS, Task
from layer_sim.errors import ConfigError, InputError, UnknownNameError
from layer_sim.models import MLP, LeNet5, LeNet5Spec
from layer_sim.training import NetworkSpec, Recipe, fit
from layer_sim.training import pruning as pruning_mod
from layer_sim.training.pruning import (
    S1_PATTERNS,
    PruningSpec,
    apply_masks,
    global_magnitude_prune,
    imp,
    iteration_dir,
    masks,
    prunable,
    sparsity,
    without_reparametrisation,
)


def _effective(model):
    """The weights the next forward pass uses, by unpruned name: ``w_orig * w_mask`` where pruned.

    (Not ``module.weight``: torch's pruning hook recomputes that attribute at each forward pass,
    so after an optimizer step it is one step old.)
    """
    out = {}
    for name, module, attr in pruning_mod._named_tensors(model):
        if pruning_mod._is_pruned(module, attr):
            out[name] = (getattr(module, f"{attr}_orig") * getattr(module, f"{attr}_mask")).detach()
        else:
            out[name] = getattr(module, attr).detach().clone()
    return out


def _reference_masks(weights: dict, kept: dict, rate: float) -> dict:
    """NumPy: among the kept entries of all tensors together, drop the round(rate * m) smallest |w|."""
    names = list(weights)
    w = np.concatenate([np.abs(weights[n].numpy()).ravel() for n in names])
    keep = np.concatenate([kept[n].numpy().ravel() for n in names]).astype(bool)
    alive = np.flatnonzero(keep)
    k = int(round(rate * alive.size))
    drop = alive[np.argsort(w[alive], kind="stable")[:k]]
    keep[drop] = False
    out, start = {}, 0
    for n in names:
        size = weights[n].numel()
        out[n] = torch.from_numpy(keep[start : start + size].reshape(weights[n].shape))
        start += size
    return out


def test_global_masks_equal_a_numpy_reference_over_two_iterations():
    net = LeNet5(seed=0)  # continuous random weights: no ties
    names = [n for n, _, _ in prunable(net, S1_PATTERNS)]
    kept = {n: torch.ones_like(w, dtype=torch.bool) for n, w in _effective(net).items() if n in names}
    for rate in (0.3, 0.45):
        before = {n: w for n, w in _effective(net).items() if n in names}
        want = _reference_masks(before, kept, rate)
        got = global_magnitude_prune(net, rate=rate, patterns=S1_PATTERNS)
        assert got.keys() == want.keys()
        for n in names:
            assert torch.equal(got[n], want[n]), n
        kept = got
    # The readout was never touched.
    assert "classifier.4.weight" not in got and not hasattr(net.classifier[4], "weight_mask")


def test_two_iterations_at_rate_one_half_leave_a_quarter_of_the_prunable_weights():
    net = LeNet5(seed=1)
    n_prunable = sum(getattr(m, a).numel() for _, m, a in prunable(net))
    assert n_prunable == 150 + 6 + 2400 + 16 + 30720 + 120 + 10080 + 84  # conv, conv, fc, fc (weights + biases)
    global_magnitude_prune(net, rate=0.5)
    assert sparsity(net) == 0.5
    global_magnitude_prune(net, rate=0.5)
    assert sparsity(net) == 0.75  # 43576 = 4 * 10894: no rounding
    zeros = sum(int((w == 0).sum()) for n, w in _effective(net).items() if n in masks(net))
    assert zeros == 0.75 * n_prunable


def test_pruned_weights_stay_exactly_zero_and_the_rest_trains_as_with_explicit_masks():
    """Reference: the plain network, its pruned weights zeroed before training and again after every step.

    Forward passes then see the same weights, the surviving entries get the same gradients and
    updates, so they must agree bit for bit (no clipping: its norm would include the zeroed
    entries' gradients in the reference only).
    """
    g = torch.Generator().manual_seed(0)
    x = torch.rand(120, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (120,), generator=g)
    task = Task("toy", (x, y), None, 10, "cross_entropy")
    recipe = Recipe(lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=32, epochs=2, warmup_epochs=0.0)

    pruned = LeNet5(seed=2)
    kept = global_magnitude_prune(pruned, rate=0.6)
    reference = LeNet5(seed=2)
    params = dict(reference.named_parameters())

    class Rezero:
        def on_batch_end(self, state):
            with torch.no_grad():
                for n, m in kept.items():
                    params[n].mul_(m)

    Rezero().on_batch_end(None)
    fit(pruned, task, recipe, seed=4, progress=False)
    fit(reference, task, recipe, seed=4, callbacks=[Rezero()], progress=False)
    eff = _effective(pruned)
    for n, m in kept.items():
        assert torch.equal(eff[n][~m], torch.zeros(int((~m).sum()))), n  # exactly zero
        assert not torch.equal(eff[n][m], LeNet5(seed=2).get_parameter(n).detach()[m]), n  # survivors trained
    for n, p in params.items():
        assert torch.equal(eff[n], p.detach()), n
    plain = without_reparametrisation(pruned)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in LeNet5().named_parameters()]
    assert all(torch.equal(plain.get_parameter(n).detach(), eff[n]) for n in eff)
    assert sparsity(pruned) == pytest.approx(0.6, abs=1 / 43576)


def test_masks_round_trip_onto_a_fresh_network():
    net = MLP((20, 16, 16, 3), seed=0)
    kept = global_magnitude_prune(net, rate=0.4, patterns=[r"fc\d\.weight"])
    assert set(kept) == {"fc1.weight", "fc2.weight"}
    other = without_reparametrisation(net)
    apply_masks(other, kept)
    assert masks(other).keys() == kept.keys() and all(torch.equal(masks(other)[k], kept[k]) for k in kept)
    x = torch.randn(5, 20)
    torch.testing.assert_close(other(x), net(x), rtol=0, atol=0)


def test_bad_arguments_are_named():
    net = LeNet5(seed=0)
    with pytest.raises(UnknownNameError, match=r"pattern 'conv' matches no parameter; parameters: features.0.weight"):
        prunable(net, ["conv"])
    with pytest.raises(ConfigError, match=r"pattern '\(' is not a regular expression"):
        prunable(net, ["("])
    with pytest.raises(ConfigError, match="patterns must be a non-empty list"):
        prunable(net, "features")
    with pytest.raises(ConfigError, match=r"global_magnitude_prune: rate must be a finite number in \(0, 1\), got 1.0"):
        global_magnitude_prune(net, rate=1.0)
    with pytest.raises(UnknownNameError, match="apply_masks: no parameter named 'fc9.weight'"):
        apply_masks(net, {"fc9.weight": torch.ones(3)})
    with pytest.raises(InputError, match=r"apply_masks: mask 'features.0.bias' has shape \(3,\), the parameter \(6,\)"):
        apply_masks(net, {"features.0.bias": torch.ones(3)})
    with pytest.raises(ConfigError, match=r"PruningSpec: rate must be a finite number in \(0, 1\)"):
        PruningSpec(rate=0)


# ----------------------------------------------------------------------------- IMP


@pytest.fixture
def toy28(monkeypatch):
    """A registered 28 x 28 task (so NetworkSpecs can name it) that LeNet-5 learns in a few epochs."""

    def toy_task(*, data_dir=None, limit_train=None, loss="cross_entropy"):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(300, 1, 28, 28, generator=g)
        y = (x[:, 0, 8:20, 8:20].mean((1, 2)) > x[:, 0].mean((1, 2))).long() + 2 * (x[:, 0, :14].mean((1, 2)) > 0.5).long()
        return Task("toy28", (x[:240], y[:240]), (x[240:], y[240:]), 4, loss)

    monkeypatch.setitem(TASKS, "toy28", toy_task)
    return NetworkSpec(model=LeNet5Spec(num_classes=4)).replace(
        name="toy28", lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=40, epochs=3, schedule="step",
        milestones=(2,), warmup_epochs=0.0, clip_norm=1.0)  # fmt: skip


def test_imp_prunes_half_of_the_survivors_per_iteration_and_rewinds_the_schedule(tmp_path, toy28, monkeypatch):
    nets = imp(toy28, 0, iterations=2, pruning=PruningSpec(rate=0.5), cache_dir=tmp_path, progress=False)
    assert [n.iteration for n in nets] == [0, 1, 2]
    assert [n.meta["sparsity"] for n in nets] == [0.0, 0.5, 0.75]
    assert nets[2].meta["pruned"] == 0.75 * nets[2].meta["prunable"]
    for a, b in ((nets[1], nets[2]),):  # pruned once, pruned for ever
        assert all(not (b.masks[k] & ~a.masks[k]).any() for k in a.masks)
    for net in nets[1:]:
        eff = dict(net.model.named_parameters())
        assert all(bool((eff[k].detach()[~m] == 0).all()) for k, m in net.masks.items())
        # Learning-rate rewinding: every iteration retrains with the full original schedule.
        assert [r["lr"] for r in net.meta["metrics"]["history"]] == [r["lr"] for r in nets[0].meta["metrics"]["history"]]
    assert [r["lr"] for r in nets[0].meta["metrics"]["history"]] == pytest.approx([0.05, 0.005, 0.005])
    path = iteration_dir(toy28, 0, PruningSpec(rate=0.5), 2, cache_dir=tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["mask.pt", "meta.json", "model.pt"]

    # Reused, not retrained; and iteration i does not depend on how many follow.
    monkeypatch.setattr(pruning_mod, "fit", lambda *a, **k: pytest.fail("should have reused the iterations"))
    again = imp(toy28, 0, iterations=1, pruning=PruningSpec(rate=0.5), cache_dir=tmp_path, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(again[1].model.state_dict().values(), nets[1].model.state_dict().values()))


def test_imp_interrupted_mid_iteration_resumes_to_the_same_network(tmp_path, toy28, monkeypatch):
    spec = PruningSpec(rate=0.3, patterns=(r"features\.\d\.weight", r"classifier\.0\.weight"))
    whole = imp(toy28, 1, iterations=2, pruning=spec, cache_dir=tmp_path / "whole", progress=False)

    real_fit = pruning_mod.fit

    class Crash(Exception):
        pass

    class CrashInEpoch2:
        def on_batch_end(self, state):
            if state.epoch == 2:
                raise Crash

    def crashing_fit(model, task, recipe, *, seed, **kw):
        callbacks = [CrashInEpoch2()] if seed == 1 + 2_000_000 else []  # iteration 2 only
        return real_fit(model, task, recipe, seed=seed, callbacks=callbacks, **kw)

    monkeypatch.setattr(pruning_mod, "fit", crashing_fit)
    with pytest.raises(Crash):
        imp(toy28, 1, iterations=2, pruning=spec, cache_dir=tmp_path / "cut", progress=False)
    cut_dir = iteration_dir(toy28, 1, spec, 2, cache_dir=tmp_path / "cut")
    assert [p.name for p in cut_dir.iterdir()] == ["epoch.pt"]
    monkeypatch.setattr(pruning_mod, "fit", real_fit)
    resumed = imp(toy28, 1, iterations=2, pruning=spec, cache_dir=tmp_path / "cut", progress=False)
    for a, b in zip(resumed, whole):
        assert a.meta["sparsity"] == b.meta["sparsity"]
        assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert resumed[2].meta["sparsity"] == pytest.approx(1 - 0.7**2, abs=2 / resumed[2].meta["prunable"])
