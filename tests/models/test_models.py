"""MLP: shapes, layer naming, hooks, skip connections, seeding and configuration errors."""

import pytest
import torch
from torch import nn

from layer_sim.errors import ConfigError, InputError, UnknownNameError
from layer_sim.models import DEFAULT_WIDTHS, MLP, MLPSpec


def test_default_has_at_least_four_hidden_layers_and_named_modules():
    net = MLP()
    assert net.widths == DEFAULT_WIDTHS
    hidden = len(DEFAULT_WIDTHS) - 2
    assert hidden >= 4
    names = [name for name, _ in net.named_children()]
    expected = [n for k in range(1, hidden + 1) for n in (f"fc{k}", f"act{k}")] + ["fc_out"]
    assert names == expected
    assert net.layer_names == tuple(f"act{k}" for k in range(1, hidden + 1))
    assert net.readout is net.fc_out


@pytest.mark.parametrize("shape", [(7, 1, 28, 28), (7, 784), (7, 28, 28)])
def test_accepts_images_or_flat_input(shape):
    net = MLP((784, 32, 32, 10), seed=0)
    x = torch.rand(shape)
    out = net(x)
    assert out.shape == (7, 10)
    torch.testing.assert_close(out, net(x.reshape(7, 784)), rtol=0, atol=0)


def test_wrong_input_size_names_the_shape():
    net = MLP((784, 32, 10), seed=0)
    with pytest.raises(InputError, match=r"\(7, 100\)"):
        net(torch.zeros(7, 100))


def test_hooks_on_layer_names_give_the_hidden_representation():
    """Hooked outputs equal a hand-written forward pass with the same weights."""
    net = MLP((20, 8, 6, 6, 3), activation="tanh", skip=True, seed=1)
    assert net.layer_names == ("act1", "act2", "res3")
    seen = {}
    handles = [
        net.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o))
        for n in net.layer_names
    ]
    try:
        x = torch.randn(5, 20)
        logits = net(x)
    finally:
        for h in handles:
            h.remove()
    w = lambda k: (net.get_submodule(f"fc{k}").weight, net.get_submodule(f"fc{k}").bias)  # noqa: E731
    h1 = torch.tanh(x @ w(1)[0].T + w(1)[1])
    h2 = torch.tanh(h1 @ w(2)[0].T + w(2)[1])
    h3 = torch.tanh(h2 @ w(3)[0].T + w(3)[1]) + h2
    for name, ref in zip(net.layer_names, (h1, h2, h3)):
        torch.testing.assert_close(seen[name], ref)
    torch.testing.assert_close(logits, h3 @ net.fc_out.weight.T + net.fc_out.bias)


def test_skip_changes_the_function_but_not_the_parameters():
    plain = MLP((784, 16, 16, 16, 10), seed=3)
    resid = MLP((784, 16, 16, 16, 10), skip=True, seed=3)
    for (n1, p1), (n2, p2) in zip(plain.named_parameters(), resid.named_parameters()):
        assert n1 == n2
        assert torch.equal(p1, p2)
    assert resid.layer_names == ("act1", "res2", "res3")
    x = torch.rand(4, 784)
    assert not torch.allclose(plain(x), resid(x))


def test_skip_only_between_equal_width_hidden_layers():
    net = MLP((784, 32, 16, 16, 8, 10), skip=True, seed=0)
    assert net.layer_names == ("act1", "act2", "res3", "act4")
    # The input (784) is not a hidden layer, so a first hidden width of 784 has no skip.
    assert MLP((784, 784, 784, 10), skip=True, seed=0).layer_names == ("act1", "res2")


def test_seed_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = MLP((784, 32, 32, 10), seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = MLP((784, 32, 32, 10), seed=5)
    c = MLP((784, 32, 32, 10), seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_init_follows_pytorch_default_bounds():
    net = MLP((400, 300, 10), seed=0)
    for lin in (net.fc1, net.fc_out):
        bound = lin.in_features**-0.5
        for p in (lin.weight, lin.bias):
            assert p.abs().max() <= bound
        # Uniform on [-b, b] has standard deviation b / sqrt(3) (>= 3000 draws: within 10%).
        assert abs(lin.weight.std().item() - bound / 3**0.5) < 0.1 * bound


def test_config_rebuilds_an_identical_architecture():
    net = MLP((784, 32, 32, 10), activation="gelu", skip=True, seed=0)
    clone = MLP(**net.config)
    assert clone.config == net.config
    assert [n for n, _ in clone.named_modules()] == [n for n, _ in net.named_modules()]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": (784,)}, "at least two"),
        ({"widths": (784, 0, 10)}, "positive"),
        ({"widths": (784, 2.5, 10)}, "positive integers"),
        ({"widths": "784,10"}, "sequence"),
        ({"widths": 784}, "sequence"),
        ({"widths": (784, 32, 16, 10), "skip": True}, "equal width"),
        ({"skip": 1}, "skip must be True or False, got 1"),
    ],
)
def test_bad_config_raises_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MLP(**kwargs)
    with pytest.raises(ConfigError, match=match.replace("MLP", "MLPSpec")):
        MLPSpec(**kwargs)
    assert issubclass(ConfigError, ValueError)


def test_unknown_activation_is_an_unknown_name_listing_the_choices():
    for make in (MLP, MLPSpec):
        with pytest.raises(UnknownNameError, match="activation: unknown value 'swish'; available: relu, tanh"):
            make(activation="swish")


def test_spec_builds_the_same_network_and_round_trips():
    spec = MLPSpec([784, 32, 32, 10], activation="gelu", skip=True)
    assert spec.widths == (784, 32, 32, 10) and hash(spec) == hash(MLPSpec((784, 32, 32, 10), "gelu", True))
    a, b = spec.build(seed=4), MLP((784, 32, 32, 10), activation="gelu", skip=True, seed=4)
    assert a.config == b.config
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert MLPSpec.from_dict(spec.to_dict()) == spec == MLPSpec(**a.config)
    with pytest.raises(UnknownNameError, match="unknown field"):
        MLPSpec.from_dict({"widths": [4, 2], "depth": 3})


def test_every_activation_is_a_separate_module():
    for act in ("relu", "tanh", "gelu", "sigmoid", "linear"):
        net = MLP((10, 4, 4, 2), activation=act, seed=0)
        assert isinstance(net.act1, nn.Module) and net.act1 is not net.act2
