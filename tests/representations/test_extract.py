"""extract() / iter_representations(): values equal a hand-written forward pass; hooks and modes are
always cleaned up; gradients of any per-example objective equal autograd on a manual forward."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from layer_sim.data.tasks import CrossEntropy, MSEOneHot, Task
from layer_sim.errors import ConfigError, InputError, UnknownNameError
from layer_sim.representations.extraction import Representations, extract, iter_representations
from layer_sim.models.mlp import MLP


def _manual_mlp(net: MLP, x: torch.Tensor) -> dict:
    """The MLP's layers computed by hand from its weights (no hooks, no forward())."""
    h = x.flatten(1)
    out = {}
    for k in range(1, len(net.widths) - 1):
        fc = getattr(net, f"fc{k}")
        h = torch.relu(h @ fc.weight.T + fc.bias)
        out[f"act{k}"] = h
    out["output"] = h @ net.fc_out.weight.T + net.fc_out.bias
    return out


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.fixture
def mlp():
    return MLP((12, 7, 5, 6, 3), seed=0)


def test_default_layers_equal_manual_forward(mlp):
    x = torch.randn(23, 12, generator=torch.Generator().manual_seed(1))
    reps = extract(mlp, x, batch_size=5)  # 5 batches, the last one partial
    expected = _manual_mlp(mlp, x)
    assert list(reps) == ["act1", "act2", "act3", "output"]
    for name, want in expected.items():
        torch.testing.assert_close(reps[name], want, rtol=1e-5, atol=1e-6)
    assert reps.n == 23 and reps.widths == {"act1": 7, "act2": 5, "act3": 6, "output": 3}
    assert _no_hooks(mlp)


@pytest.mark.parametrize("form", ["pair", "dataset", "loader"])
def test_data_forms_agree(mlp, form):
    x = torch.randn(17, 12)
    y = torch.randint(0, 3, (17,))
    data = {
        "pair": (x, y),
        "dataset": TensorDataset(x, y),
        "loader": DataLoader(TensorDataset(x, y), batch_size=4),
    }[form]
    reps = extract(mlp, data, batch_size=6)
    ref = _manual_mlp(mlp, x)
    for name in ref:
        torch.testing.assert_close(reps[name], ref[name], rtol=1e-5, atol=1e-6)


def test_layers_by_name_and_type_in_forward_order(mlp):
    x = torch.randn(9, 12)
    reps = extract(mlp, x, layers=["output", "fc2", "act1"])
    assert list(reps) == ["act1", "fc2", "output"]  # forward order, not request order
    fc2 = mlp.fc2
    torch.testing.assert_close(reps["fc2"], _manual_mlp(mlp, x)["act1"] @ fc2.weight.T + fc2.bias)
    reps = extract(mlp, x, layers=[nn.Linear])
    assert list(reps) == ["fc1", "fc2", "fc3", "fc_out"]


def test_unknown_layer_lists_available(mlp):
    with pytest.raises(UnknownNameError, match=r"unknown layer 'act9'.*act1.*fc_out.*output"):
        extract(mlp, torch.randn(3, 12), layers=["act9"])
    with pytest.raises(UnknownNameError, match="no module of type Conv2d"):
        extract(mlp, torch.randn(3, 12), layers=[nn.Conv2d])
    reps = extract(mlp, torch.randn(3, 12))
    with pytest.raises(UnknownNameError, match="available: act1"):
        reps["nope"]
    assert "nope" not in reps and "act1" in reps and reps.get("nope") is None


def test_mode_restored_and_eval_used():
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.9), nn.Linear(8, 2))
    net.train()
    net[3].eval()  # mixed modes must come back exactly
    x = torch.randn(20, 6)
    reps = extract(net, x)
    # Dropout(0.9) in train mode would zero most entries; eval mode makes output deterministic.
    with torch.no_grad():
        torch.testing.assert_close(reps["output"], net[3](torch.relu(net[0](x))))
    assert [m.training for m in net] == [True, True, True, False]
    assert _no_hooks(net)


class _Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = self.act(self.fc(x))
        if self.calls == 2:
            raise RuntimeError("boom in the second batch")
        return h


def test_hooks_removed_and_mode_restored_after_exception():
    net = _Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        extract(net, torch.randn(10, 4), batch_size=5)
    assert _no_hooks(net)
    assert net.training and net.fc.training


class _InplaceReuse(nn.Module):
    """fc1 -> in-place ReLU -> the *same* fc2 twice, its output modified in place afterwards."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 5)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(5, 5)

    def forward(self, x):
        h = self.act(self.fc1(x))  # overwrites fc1's output tensor in place
        a = self.fc2(h)
        b = self.fc2(a)  # second call of the same module
        a.mul_(0.0)  # in-place change after the hook saw `a`
        return b + a


def test_inplace_activation_and_reused_module():
    torch.manual_seed(0)
    net = _InplaceReuse()
    x = torch.randn(11, 5)
    reps = extract(net, x, layers=["fc1", "act", "fc2", "output"], batch_size=4)
    with torch.no_grad():
        pre = x @ net.fc1.weight.T + net.fc1.bias
        h = pre.clamp_min(0)
        a = h @ net.fc2.weight.T + net.fc2.bias
        b = a @ net.fc2.weight.T + net.fc2.bias
    assert list(reps) == ["fc1", "act", "fc2", "fc2#2", "output"]
    assert (pre < 0).any()  # so the in-place ReLU really would have changed fc1's record
    torch.testing.assert_close(reps["fc1"], pre)
    torch.testing.assert_close(reps["act"], h)
    torch.testing.assert_close(reps["fc2"], a)  # not zeroed by a.mul_(0)
    torch.testing.assert_close(reps["fc2#2"], b)
    torch.testing.assert_close(reps["output"], b)


class _CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(3 * 4 * 4, 5)
        self.relu2 = nn.GELU()
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        h = self.pool(self.relu1(self.conv(x)))
        return self.head(self.relu2(self.fc(h.flatten(1))))


def test_cnn_feature_maps_flattened_per_example():
    torch.manual_seed(0)
    net = _CNN()
    x = torch.randn(7, 1, 8, 8)
    reps = extract(net, x, batch_size=3)
    assert list(reps) == ["relu1", "relu2", "output"]
    with torch.no_grad():
        conv = nn.functional.conv2d(x, net.conv.weight, net.conv.bias, padding=1).clamp_min(0)
    assert reps["relu1"].shape == (7, 3 * 8 * 8)
    torch.testing.assert_close(reps["relu1"], conv.reshape(7, -1))  # C, H, W order per example
    with torch.no_grad():
        torch.testing.assert_close(reps["output"], net(x))


def test_generator_yields_every_batch_in_order(mlp):
    x = torch.randn(10, 12)
    seen = [(b, r["act2"].shape[0], list(r)) for b, r in enumerate(iter_representations(mlp, x, batch_size=4))]
    assert [(b, n) for b, n, _ in seen] == [(0, 4), (1, 4), (2, 2)]
    assert all(names == ["act1", "act2", "act3", "output"] for *_, names in seen)
    batches = list(iter_representations(mlp, x, batch_size=4))
    torch.testing.assert_close(torch.cat([r["act3"] for r in batches]), _manual_mlp(mlp, x)["act3"],
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_gradients_equal_autograd_on_manual_forward(mlp):
    x = torch.randn(13, 12, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 3, (13,), generator=torch.Generator().manual_seed(4))
    reps = extract(mlp, (x, y), gradients=True, batch_size=5, objective=CrossEntropy())
    assert isinstance(reps.gradients, Representations)
    # Independent route: one manual forward over all examples, summed loss, autograd.grad.
    h = x.flatten(1)
    hs = []
    for k in (1, 2, 3):
        fc = getattr(mlp, f"fc{k}")
        h = torch.relu(h @ fc.weight.T + fc.bias)
        hs.append(h)
    logits = h @ mlp.fc_out.weight.T + mlp.fc_out.bias
    loss = nn.functional.cross_entropy(logits, y, reduction="sum")
    want = torch.autograd.grad(loss, [*hs, logits])
    for name, g in zip(["act1", "act2", "act3", "output"], want):
        torch.testing.assert_close(reps.gradients[name], g, rtol=1e-5, atol=1e-6)
    # d(CE)/d(logits) = softmax - onehot: a closed form for the output row.
    closed = torch.softmax(logits, 1) - nn.functional.one_hot(y, 3)
    torch.testing.assert_close(reps.gradients["output"], closed.detach(), rtol=1e-5, atol=1e-6)
    assert _no_hooks(mlp) and all(p.grad is None for p in mlp.parameters())


def test_gradients_need_targets(mlp):
    with pytest.raises(InputError, match="needs targets"):
        extract(mlp, torch.randn(4, 12), gradients=True)


def test_bad_inputs_are_named(mlp):
    with pytest.raises(InputError, match="data must be"):
        extract(mlp, [[1.0] * 12])
    with pytest.raises(InputError, match="batch_size"):
        extract(mlp, torch.randn(3, 12), batch_size=0)
    with pytest.raises(InputError, match="no examples"):
        extract(mlp, torch.randn(0, 12))
    with pytest.raises(InputError, match="y has 2"):
        extract(mlp, (torch.randn(3, 12), torch.zeros(2)))
    net = _Boom()  # its forward never calls `unused`
    net.unused = nn.Tanh()
    with pytest.raises(InputError, match="never called"):
        extract(net, torch.randn(4, 4))
    assert _no_hooks(net)
