"""Named objectives for gradient extraction: Tang et al.'s q-weighted log-likelihood and "loss"."""

import pytest
import torch
from torch import nn

from layer_sim.data.tasks import CrossEntropy, MSEOneHot, Task
from layer_sim.errors import ConfigError, InputError
from layer_sim.models.mlp import MLP
from layer_sim.representations import extract
from layer_sim.representations.objectives import Tang


@pytest.fixture
def mlp():
    return MLP((12, 7, 5, 4), seed=3)


def _manual(net, x):
    h1 = torch.relu(x @ net.fc1.weight.T + net.fc1.bias)
    h2 = torch.relu(h1 @ net.fc2.weight.T + net.fc2.bias)
    return [h1, h2, h2 @ net.fc_out.weight.T + net.fc_out.bias]


@pytest.mark.parametrize("beta", [0.5, 0.0, 2.0])
def test_tang_gradients_equal_autograd_of_the_formula_with_q_held_constant(mlp, beta):
    x = torch.randn(13, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = mlp.double()
    reps = extract(net, x, gradients=True, objective=Tang(beta=beta), batch_size=5)  # no targets needed
    hs = _manual(net, x)
    logits = hs[-1]
    p = torch.exp(logits - torch.logsumexp(logits, dim=1, keepdim=True))
    q = (p**beta / (p**beta).sum(dim=1, keepdim=True)).detach()  # the paper's p^beta / sum p^beta, literally
    total = (q * torch.log(p)).sum()
    want = torch.autograd.grad(total, hs)
    for name, g in zip(["act1", "act2", "output"], want):
        torch.testing.assert_close(reps.gradients[name], g, rtol=1e-10, atol=1e-12)
    # closed form at the logits: q - p (the sum of q is 1)
    torch.testing.assert_close(reps.gradients["output"], (q - p).detach(), rtol=1e-10, atol=1e-12)


def test_tang_by_name_is_beta_one_half_and_beta_one_is_refused(mlp):
    x = torch.randn(6, 12)
    by_name = extract(mlp, x, gradients=True, objective="tang")
    explicit = extract(mlp, x, gradients=True, objective=Tang(beta=0.5))
    torch.testing.assert_close(by_name.gradients["act1"], explicit.gradients["act1"], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="beta must not be 1"):
        Tang(beta=1.0)
    with pytest.raises(ConfigError, match=r"Tang: beta must be a finite number in \[0, inf\]"):
        Tang(beta=-0.5)
    with pytest.raises(InputError, match=r"Tang: the model output must be \(n, classes >= 2\)"):
        extract(nn.Sequential(nn.Linear(12, 1)), x, gradients=True, objective="tang")
    assert Tang(beta=0.3) == Tang(beta=0.3) != Tang() and repr(Tang()) == "Tang(beta=0.5)"


@pytest.mark.parametrize("loss", [CrossEntropy(), MSEOneHot()])
def test_loss_by_name_is_the_tasks_own_loss(mlp, loss):
    gen = torch.Generator().manual_seed(4)
    test = (torch.randn(9, 12, generator=gen), torch.randint(0, 4, (9,), generator=gen))
    task = Task("toy", test, test, 4, loss)
    named = extract(mlp, task, gradients=True, objective="loss")
    explicit = extract(mlp, test, gradients=True, objective=loss)
    for name in explicit:
        torch.testing.assert_close(named.gradients[name], explicit.gradients[name], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="objective='loss' means the task's own loss, so data must be a Task"):
        extract(mlp, test, gradients=True, objective="loss")
