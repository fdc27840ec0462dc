"""iter_representations(): eager checks, clean-up when closed half-way, gradients of any objective,
and early, named refusals (bad device, NaN/Inf, data the model cannot take, coupled examples)."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from layer_sim.data.tasks import CrossEntropy, MSEOneHot, Task
from layer_sim.errors import ConfigError, InputError, UnknownNameError
from layer_sim.models.mlp import MLP
from layer_sim.representations import extract, iter_representations
from layer_sim.representations._hooks import recording


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.fixture
def mlp():
    return MLP((12, 7, 5, 3), seed=0)


def _manual(net, x):
    """act1, act2, logits of the MLP computed by hand from its weights, differentiably."""
    h1 = torch.relu(x @ net.fc1.weight.T + net.fc1.bias)
    h2 = torch.relu(h1 @ net.fc2.weight.T + net.fc2.bias)
    return [h1, h2, h2 @ net.fc_out.weight.T + net.fc_out.bias]


def test_arguments_are_checked_when_the_generator_is_made(mlp):
    # No next() needed: a mistake surfaces where the call is, before any forward pass.
    with pytest.raises(InputError, match="batch_size"):
        iter_representations(mlp, torch.randn(3, 12), batch_size=-1)
    with pytest.raises(ConfigError, match="gradients must be True or False"):
        iter_representations(mlp, torch.randn(3, 12), gradients="yes")
    assert _no_hooks(mlp)


def test_closing_half_way_restores_everything_and_grad_mode_does_not_leak(mlp):
    mlp.train()
    gen = iter_representations(mlp, torch.randn(9, 12), batch_size=3)
    first = next(gen)
    # Between batches the consumer's own autograd works: no_grad is scoped to each forward pass.
    assert torch.is_grad_enabled()
    assert first.n == 3 and not mlp.training and not _no_hooks(mlp)
    gen.close()
    assert mlp.training and all(m.training for m in mlp.modules()) and _no_hooks(mlp)
    for _ in iter_representations(mlp, torch.randn(9, 12), batch_size=3):
        break  # the loop drops the generator, which closes it
    assert mlp.training and _no_hooks(mlp)


def test_recording_restores_mixed_modes_after_an_exception():
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.ReLU())
    net.train()
    net[1].eval()
    with pytest.raises(RuntimeError, match="inside"):
        with recording(net, [("2", net[2])], device=None):
            assert not any(m.training for m in net.modules())
            raise RuntimeError("inside")
    assert [m.training for m in net] == [True, False, True] and net.training and _no_hooks(net)


@pytest.mark.parametrize("loss", [CrossEntropy(), MSEOneHot()])
def test_gradients_of_each_loss_equal_autograd_on_a_manual_forward(mlp, loss):
    x = torch.randn(11, 12, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (11,), generator=torch.Generator().manual_seed(1))
    reps = extract(mlp, (x, y), gradients=True, objective=loss, batch_size=4)
    hs = _manual(mlp, x)
    if isinstance(loss, CrossEntropy):
        total = nn.functional.cross_entropy(hs[-1], y, reduction="sum")
    else:  # mean over the C outputs per example, summed over examples
        total = ((hs[-1] - nn.functional.one_hot(y, 3).float()) ** 2).mean(1).sum()
    want = torch.autograd.grad(total, hs)
    for name, g in zip(["act1", "act2", "output"], want):
        torch.testing.assert_close(reps.gradients[name], g, rtol=1e-5, atol=1e-6)
    if isinstance(loss, MSEOneHot):  # closed form: d/do (1/C) sum (o - t)^2 = 2 (o - t) / C
        closed = 2 * (hs[-1] - nn.functional.one_hot(y, 3).float()) / 3
        torch.testing.assert_close(reps.gradients["output"], closed.detach(), rtol=1e-5, atol=1e-6)


def test_a_loss_is_differentiated_per_example_so_batch_size_does_not_matter(mlp):
    # Loss.__call__ is the batch mean; using it would scale gradients by 1/batch size.
    x, y = torch.randn(12, 12), torch.randint(0, 3, (12,))
    small = extract(mlp, (x, y), gradients=True, objective=CrossEntropy(), batch_size=3)
    whole = extract(mlp, (x, y), gradients=True, objective=CrossEntropy(), batch_size=12)
    torch.testing.assert_close(small.gradients["act1"], whole.gradients["act1"], rtol=1e-5, atol=1e-7)


def test_any_callable_objective_and_one_without_targets(mlp):
    x = torch.randn(6, 12)

    def top_logit(output, targets):
        return output.max(dim=1).values

    top_logit.needs_targets = False
    reps = extract(mlp, x, gradients=True, objective=top_logit)
    hs = _manual(mlp, x)
    (want,) = torch.autograd.grad(hs[-1].max(dim=1).values.sum(), [hs[0]])
    torch.testing.assert_close(reps.gradients["act1"], want, rtol=1e-5, atol=1e-6)


def test_a_task_gives_its_test_split_and_its_loss(mlp):
    gen = torch.Generator().manual_seed(2)
    test = (torch.randn(8, 12, generator=gen), torch.randint(0, 3, (8,), generator=gen))
    task = Task("toy", (torch.randn(4, 12), torch.zeros(4, dtype=torch.long)), test, 3, MSEOneHot())
    from_task = extract(mlp, task, gradients=True)
    explicit = extract(mlp, test, gradients=True, objective=MSEOneHot())
    for name in explicit:
        torch.testing.assert_close(from_task[name], explicit[name], rtol=0, atol=0)
        torch.testing.assert_close(from_task.gradients[name], explicit.gradients[name], rtol=0, atol=0)
    no_test = Task("toy", test, None, 3, CrossEntropy())
    with pytest.raises(InputError, match="task 'toy' has no test split"):
        extract(mlp, no_test)


def test_objective_mistakes_are_named(mlp):
    x, y = torch.randn(5, 12), torch.randint(0, 3, (5,))
    with pytest.raises(ConfigError, match="needs objective="):
        extract(mlp, (x, y), gradients=True)  # no silent default loss
    with pytest.raises(ConfigError, match="only used with gradients=True"):
        extract(mlp, (x, y), objective=CrossEntropy())
    with pytest.raises(UnknownNameError, match="unknown objective 'cross_entropy!'; available: loss, tang"):
        extract(mlp, (x, y), gradients=True, objective="cross_entropy!")
    with pytest.raises(ConfigError, match="objective must be a Loss"):
        extract(mlp, (x, y), gradients=True, objective=3)
    with pytest.raises(InputError, match=r"one value per example, shape \(5,\), got \(\)"):
        extract(mlp, (x, y), gradients=True, objective=lambda o, t: o.sum())
    with pytest.raises(InputError, match="integer class labels.*float32"):
        extract(mlp, (x, y.float()), gradients=True, objective=CrossEntropy())
    with pytest.raises(InputError, match=r"labels in 0..2 \(the model has 3 outputs\), got values in 0..7"):
        extract(mlp, (x, torch.tensor([0, 1, 7, 2, 0])), gradients=True, objective=CrossEntropy())
    with pytest.raises(InputError, match=r"NaN or Inf for examples \[1\]"):
        extract(mlp, (x, y), gradients=True, objective=lambda o, t: torch.tensor([0.0, float("inf"), 0, 0, 0]) + o[:, 0])
    loader = DataLoader(TensorDataset(x), batch_size=2)  # items are (x,): no targets
    with pytest.raises(InputError, match="batch 0 of data has none"):
        extract(mlp, loader, gradients=True, objective=CrossEntropy())
    assert _no_hooks(mlp) and mlp.training


def test_data_the_model_cannot_take_names_the_module_and_shape():
    net = nn.Sequential(nn.Linear(12, 7), nn.Sequential(nn.ReLU(), nn.Linear(7, 3)))
    with pytest.raises(InputError, match=r"first batch of data \(x of shape \(4, 13\).*in module '0'.*mat1 and mat2"):
        extract(net, torch.randn(4, 13))
    with pytest.raises(InputError, match=r"first batch.*shape \(2, 12\), torch.float64.*in module '0'"):
        extract(net, (torch.randn(4, 12, dtype=torch.float64), torch.zeros(4)), gradients=True,
                objective=lambda o, t: o.sum(1), batch_size=2)
    with pytest.raises(InputError, match=r"in module '1.1'"):  # the innermost module that raised
        extract(nn.Sequential(nn.Linear(12, 7), nn.Sequential(nn.ReLU(), nn.Linear(8, 3))), torch.randn(4, 12))
    assert _no_hooks(net)


def test_nan_or_inf_data_refused_before_any_forward_pass(mlp):
    calls = []
    mlp.register_forward_pre_hook(lambda m, i: calls.append(1))
    x = torch.randn(7, 12)
    x[5, 3] = float("nan")
    with pytest.raises(InputError, match=r"data contains NaN or Inf \(examples \[5\]"):
        extract(mlp, x, batch_size=2)
    assert calls == []  # tensor data is checked as a whole, up front
    x[5, 3] = float("-inf")
    with pytest.raises(InputError, match=r"batch 2 of data contains NaN or Inf \(examples \[1\]"):
        extract(mlp, DataLoader(TensorDataset(x), batch_size=2))


def test_a_device_this_machine_lacks_is_refused_up_front(mlp):
    missing_cuda = f"cuda:{torch.cuda.device_count()}"  # one past the last: never exists
    with pytest.raises(ConfigError, match=f"extract: device='{missing_cuda}' but"):
        iter_representations(mlp, torch.randn(3, 12), device=missing_cuda)
    with pytest.raises(ConfigError, match="extract: device='gpu' is not a torch device"):
        extract(mlp, torch.randn(3, 12), device="gpu")
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="extract: device='mps' but MPS is not available"):
            extract(mlp, torch.randn(3, 12), device="mps")
    assert extract(mlp, torch.randn(3, 12), device="cpu")["output"].device.type == "cpu"


class _BatchCentred(nn.Module):
    """Centres every feature over the batch: example i's output depends on every example."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.act(self.fc(x))
        return h - h.mean(dim=0)


def test_a_model_coupling_examples_is_refused_for_gradients_only():
    torch.manual_seed(0)
    net = _BatchCentred()
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    assert extract(net, x)["output"].shape == (6, 3)  # features alone are still returned
    with pytest.raises(InputError, match="couples examples"):
        extract(net, (x, y), gradients=True, objective=CrossEntropy())
    # A first batch of one example cannot show coupling; the next batch, of five, does.
    loader = DataLoader(TensorDataset(x, y), batch_sampler=[[0], [1, 2, 3, 4, 5]])
    gen = iter_representations(net, loader, gradients=True, objective=CrossEntropy())
    assert next(gen).n == 1
    with pytest.raises(InputError, match="couples examples"):
        next(gen)
    assert _no_hooks(net)


def test_batchnorm_runs_in_eval_mode_so_gradients_are_per_example():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    net.train()
    net(torch.randn(32, 4))  # non-trivial running statistics
    x, y = torch.randn(9, 4), torch.randint(0, 3, (9,))
    whole = extract(net, (x, y), gradients=True, objective=CrossEntropy(), batch_size=9)
    one_by_one = [extract(net, (x[i : i + 1], y[i : i + 1]), gradients=True, objective=CrossEntropy())
                  for i in range(9)]  # fmt: skip
    torch.testing.assert_close(whole.gradients["2"], torch.cat([r.gradients["2"] for r in one_by_one]),
                               rtol=1e-5, atol=1e-7)  # fmt: skip
    assert net.training and net[1].training
