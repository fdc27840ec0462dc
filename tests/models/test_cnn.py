"""LeNet-5: the original layer_sim's shapes and hooks, a hand-written forward pass, naming, seeding, specs."""

import re

import pytest
import torch
from torch.nn import functional as F

from layer_sim.data import Task
from layer_sim.errors import ConfigError, InputError, UnknownNameError
from layer_sim.models import LENET5_LAYER_TYPES, MODEL_SPECS, LeNet5, LeNet5Spec
from layer_sim.training import NetworkSpec, Recipe, fit, load_checkpoint, save_checkpoint

# The original library's tests (tests/test_networks.py): 7 hooked outputs, these shapes.
S1_SHAPES = {
    "features.1": (6, 24, 24),
    "features.2": (6, 12, 12),
    "features.4": (16, 8, 8),
    "features.5": (16, 4, 4),
    "classifier.1": (120,),
    "classifier.3": (84,),
}


def _hooked(net, x):
    seen = {}
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o))
               for n, m in net.named_modules() if isinstance(m, LENET5_LAYER_TYPES)]  # fmt: skip
    try:
        out = net(x)
    finally:
        for h in handles:
            h.remove()
    return seen, out


def _by_hand(net, x):
    """The forward pass from the weights with functional ops only (no modules, no hooks)."""
    c1, c2 = net.features[0], net.features[3]
    fc1, fc2, fc3 = net.classifier[0], net.classifier[2], net.classifier[4]
    a1 = F.conv2d(x, c1.weight, c1.bias).clamp_min(0)
    p1 = F.avg_pool2d(a1, 2)
    a2 = F.conv2d(p1, c2.weight, c2.bias).clamp_min(0)
    p2 = F.avg_pool2d(a2, 2)
    h1 = (p2.reshape(len(x), -1) @ fc1.weight.T + fc1.bias).clamp_min(0)
    h2 = (h1 @ fc2.weight.T + fc2.bias).clamp_min(0)
    return {"features.1": a1, "features.2": p1, "features.4": a2, "features.5": p2,
            "classifier.1": h1, "classifier.3": h2}, h2 @ fc3.weight.T + fc3.bias  # fmt: skip


def test_shapes_and_hooks_are_the_original_librarys():
    net = LeNet5(10, seed=0).eval()
    assert net.classifier[-1].out_features == 10 and net.readout is net.classifier[-1]
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    seen, out = _hooked(net, x)
    assert out.shape == (2, 10)
    assert net.layer_names == tuple(S1_SHAPES)
    assert {n: tuple(t.shape[1:]) for n, t in seen.items()} == S1_SHAPES
    # Flattened between features and classifier: 16 * 4 * 4 = 256 inputs to the first Linear.
    assert net.classifier[0].in_features == 256


def test_every_layer_equals_a_hand_written_forward_pass():
    net = LeNet5(seed=3).eval()
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    seen, out = _hooked(net, x)
    want, logits = _by_hand(net, x)
    for name, ref in want.items():
        torch.testing.assert_close(seen[name], ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, logits, rtol=1e-5, atol=1e-6)


def test_the_original_pruning_patterns_select_convolutions_and_hidden_linears_only():
    names = [n for n, _ in LeNet5(seed=0).named_parameters()]
    hit = [n for n in names if any(re.match(p, n) for p in ["features", r"classifier\.[02]\."])]
    assert hit == ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
                   "classifier.0.weight", "classifier.0.bias", "classifier.2.weight", "classifier.2.bias"]  # fmt: skip
    assert set(names) - set(hit) == {"classifier.4.weight", "classifier.4.bias"}


def test_seed_is_reproducible_leaves_the_global_rng_alone_and_follows_pytorch_bounds():
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    a = LeNet5(seed=5)
    assert torch.equal(torch.rand(3), before)
    b, c = LeNet5(seed=5), LeNet5(seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    fan_in = {"features.0": 25, "features.3": 150, "classifier.0": 256, "classifier.2": 120, "classifier.4": 84}
    big = LeNet5(seed=1)
    for name, f in fan_in.items():
        layer = big.get_submodule(name)
        for p in (layer.weight, layer.bias):
            assert p.abs().max() <= f**-0.5
        if layer.weight.numel() >= 2000:  # U(-b, b) has std b / sqrt(3); within 10% for >= 2000 draws
            assert abs(layer.weight.std().item() - f**-0.5 / 3**0.5) < 0.1 * f**-0.5


def test_wrong_inputs_and_configs_are_named():
    with pytest.raises(InputError, match=r"LeNet5: expected images of shape \(n, 1, 28, 28\), got shape \(3, 784\)"):
        LeNet5(seed=0)(torch.zeros(3, 784))
    with pytest.raises(ConfigError, match="LeNet5: num_classes must be an integer >= 2, got 1"):
        LeNet5(1)
    with pytest.raises(ConfigError, match="LeNet5Spec: num_classes must be an integer >= 2"):
        LeNet5Spec(num_classes=True)
    with pytest.raises(UnknownNameError, match=r"LeNet5Spec.from_dict: unknown field\(s\) \['widths'\]"):
        LeNet5Spec.from_dict({"kind": "LeNet5", "widths": [1, 2]})


def test_spec_names_it_in_network_keys_and_checkpoints(tmp_path):
    assert MODEL_SPECS["LeNet5"] is LeNet5Spec
    spec = NetworkSpec(model=LeNet5Spec())
    assert spec.key_fields()["model"] == {"kind": "LeNet5", "num_classes": 10}
    assert spec.key() != NetworkSpec().key() != NetworkSpec(model=LeNet5Spec(3)).key()
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    net = spec.build_model(seed=2)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), LeNet5(seed=2).parameters()))
    save_checkpoint(tmp_path, net, meta={"seed": 2})
    back, meta = load_checkpoint(tmp_path)
    assert type(back) is LeNet5 and meta["model_class"] == "LeNet5" and meta["model_config"] == {"num_classes": 10}
    assert all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), back.state_dict().values()))


def test_it_learns_mnist_from_3000_examples():
    from layer_sim.data import mnist_task

    t = mnist_task(limit_train=3000)
    task = Task("mnist", t.train, (t.test[0][:2000], t.test[1][:2000]), 10, "cross_entropy")
    recipe = Recipe(lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=32, epochs=3, warmup_epochs=0.5)
    result = fit(LeNet5(seed=0), task, recipe, seed=0, progress=False)
    assert result.test_accuracy > 0.9  # chance is 10 %; held-out images

# ----------------------------------------------------------------------------- Tiny-10


def test_tiny10_blocks_have_the_documented_shapes_and_equal_a_functional_forward_pass():
    from layer_sim.models import Tiny10, Tiny10Spec

    net = Tiny10(seed=1)
    # Non-trivial BatchNorm statistics, so that eval mode really uses them.
    with torch.no_grad():
        for k in range(1, 9):
            bn = getattr(net, f"block{k}").bn
            bn.running_mean.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(k))
            bn.running_var.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(10 + k))
            bn.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(20 + k))
    net.eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    seen = {}
    handles = [net.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o))
               for n in net.layer_names]  # fmt: skip
    try:
        out = net(x)
    finally:
        for h in handles:
            h.remove()
    h, want = x, {}
    for k in range(1, 9):
        b = getattr(net, f"block{k}")
        h = F.conv2d(h, b.conv.weight, None, stride=b.conv.stride, padding=b.conv.padding)
        h = (h - b.bn.running_mean[:, None, None]) / torch.sqrt(b.bn.running_var[:, None, None] + b.bn.eps)
        h = (h * b.bn.weight[:, None, None] + b.bn.bias[:, None, None]).clamp_min(0)
        want[f"block{k}.relu"] = h
    want["pool"] = h.mean(dim=(2, 3), keepdim=True)
    widths = [28, 28, 14, 14, 14, 7, 5, 5]
    channels = [16, 16, 32, 32, 32, 64, 64, 64]
    assert [tuple(seen[f"block{k}.relu"].shape[1:]) for k in range(1, 9)] == [(c, w, w) for c, w in zip(channels, widths)]
    for name, ref in want.items():
        torch.testing.assert_close(seen[name], ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, want["pool"].flatten(1) @ net.logits.weight.T + net.logits.bias, rtol=1e-5, atol=1e-6)
    assert net.readout is net.logits and Tiny10Spec.from_dict(Tiny10Spec(3).to_dict()).build(seed=0).num_classes == 3
    assert all(getattr(net, f"block{k}").conv.bias is None for k in range(1, 9))


def test_tiny10_trains_and_round_trips_through_a_checkpoint(tmp_path):
    from layer_sim.models import Tiny10, Tiny10Spec

    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 28, 28, generator=g)
    y = (x[:, 0, :14].mean((1, 2)) > x[:, 0, 14:].mean((1, 2))).long()
    net = Tiny10(2, seed=0)
    result = fit(net, Task("halves", (x, y), None, 2, "cross_entropy"),
                 Recipe(lr=0.05, batch_size=32, epochs=3, warmup_epochs=0.5), seed=0, progress=False)  # fmt: skip
    assert result.history[-1]["train_loss"] < 0.8 * result.history[0]["train_loss"]
    save_checkpoint(tmp_path, net, meta={})
    back = load_checkpoint(tmp_path).model
    assert type(back) is Tiny10 and all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values()))
    assert NetworkSpec(model=Tiny10Spec()).key_fields()["model"] == {"kind": "Tiny10", "num_classes": 10}
