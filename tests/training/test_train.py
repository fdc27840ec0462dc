"""fit(): learning, determinism, callbacks, readout learning rate, schedule, augmentation, checkpoints."""

import json
import math

import pytest
import torch
from torch import nn

from layer_sim.training import loop as train_mod
from layer_sim.training.checkpoint import load_checkpoint, save_checkpoint
from layer_sim.errors import ConfigError, DataError, InputError
from layer_sim.models import MLP
from layer_sim.training.loop import (
    Callback,
    TrainConfig,
    checkpoint_dir,
    fit,
    parse_seeds,
    random_shift,
    train_or_load,
)



def _blobs(n=256, d=20, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(k, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


FAST = dict(lr=0.05, batch_size=32, epochs=2, progress=False)


def test_same_seed_gives_bit_identical_weights_and_other_seeds_differ():
    data = _blobs()
    nets = [MLP((20, 16, 16, 3), seed=0) for _ in range(3)]
    fit(nets[0], data, seed=7, **FAST)
    fit(nets[1], data, seed=7, **FAST)
    fit(nets[2], data, seed=8, **FAST)  # same init, other shuffling
    assert _same(nets[0], nets[1])
    assert not _same(nets[0], nets[2])


def test_fit_does_not_use_the_global_rng():
    data = _blobs()
    torch.manual_seed(0)
    a = MLP((20, 16, 3), seed=0)
    fit(a, data, seed=1, **FAST)
    torch.manual_seed(12345)  # a different global state must not matter
    b = MLP((20, 16, 3), seed=0)
    fit(b, data, seed=1, **FAST)
    assert _same(a, b)


def test_really_learns_mnist_from_2000_examples():
    from layer_sim.data import load_mnist

    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    train, test = (x[:2000], y[:2000]), (xt[:2000], yt[:2000])
    net = MLP((784, 256, 256, 256, 256, 10), seed=0)
    # +-2 px shifts matter with 2k examples: without them test accuracy saturates near 88%.
    result = fit(net, train, test, optimizer="adam", lr=1e-3, batch_size=32, epochs=14, shift=2,
                 seed=0, progress=False)  # fmt: skip
    # Chance is 10%; the held-out examples were never seen in training.
    assert result.test_accuracy > 0.90
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # Independent check of the reported accuracy.
    with torch.no_grad():
        acc = (net(test[0]).argmax(1) == test[1]).double().mean().item()
    assert result.test_accuracy == pytest.approx(acc, abs=1e-12)


def test_a_callback_may_implement_only_one_hook():
    class EpochsOnly:
        def __init__(self):
            self.n = 0

        def on_epoch_end(self, state):
            self.n += 1

    cb = EpochsOnly()
    fit(MLP((20, 4, 3), seed=0), _blobs(n=32), epochs=3, batch_size=16, callbacks=[cb], progress=False)
    assert cb.n == 3


class _Recorder(Callback):
    def __init__(self):
        self.batches, self.epochs = [], []

    def on_batch_end(self, state):
        ref = nn.functional.cross_entropy(state.outputs, state.targets)
        self.batches.append((state.epoch, state.step, len(state.targets), float(state.loss), float(ref),
                             state.optimizer.param_groups[0]["lr"]))  # fmt: skip
        assert state.outputs.shape == (len(state.inputs), 3) and not state.outputs.requires_grad
        assert all(p.grad is not None for p in state.model.parameters())

    def on_epoch_end(self, state):
        self.epochs.append(dict(state.metrics))


def test_callbacks_see_every_batch_and_epoch_with_consistent_state():
    x, y = _blobs(n=100)
    rec = _Recorder()
    result = fit(MLP((20, 8, 3), seed=0), (x, y), (x, y), lr=0.1, batch_size=32, epochs=3,
                 callbacks=[rec], progress=False)  # fmt: skip
    assert [b[0] for b in rec.batches] == [1] * 4 + [2] * 4 + [3] * 4  # ceil(100/32) = 4 per epoch
    assert [b[1] for b in rec.batches] == list(range(1, 13))
    assert [b[2] for b in rec.batches[:4]] == [32, 32, 32, 4]
    for _, _, _, loss, ref, _ in rec.batches:
        assert loss == pytest.approx(ref, rel=1e-6)
    assert rec.epochs == result.history
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    # Cosine schedule without warm-up: lr after step s is lr/2 (1 + cos(pi s / S)).
    for _, s, _, _, _, lr in rec.batches:
        assert lr == pytest.approx(0.05 * (1 + math.cos(math.pi * s / 12)), abs=1e-12)


def test_readout_learning_rate_applies_only_to_the_last_layer():
    """One full-batch plain SGD step equals W - lr * dL/dW with autograd gradients computed separately."""
    x, y = _blobs(n=40)
    net = MLP((20, 8, 8, 3), seed=0)
    ref = MLP((20, 8, 8, 3), seed=0)
    loss = nn.functional.cross_entropy(ref(x), y)
    grads = dict(zip([n for n, _ in ref.named_parameters()], torch.autograd.grad(loss, list(ref.parameters()))))
    fit(net, (x, y), lr=0.1, readout_lr=0.01, momentum=0.0, batch_size=40, epochs=1,
        schedule="constant", progress=False)  # fmt: skip
    before = dict(ref.named_parameters())
    for name, p in net.named_parameters():
        step = 0.01 if name.startswith("fc_out") else 0.1
        torch.testing.assert_close(p, before[name] - step * grads[name], rtol=1e-5, atol=1e-7)


def test_warmup_is_linear():
    x, y = _blobs(n=64)
    rec = _Recorder()
    fit(MLP((20, 8, 3), seed=0), (x, y), lr=0.2, batch_size=16, epochs=2, warmup_epochs=1,
        schedule="constant", callbacks=[rec], progress=False)  # fmt: skip
    # W = 4 warm-up steps; lr used for step s+1 is lr (s+1)/W, then constant.
    lrs = [b[5] for b in rec.batches]
    assert lrs == pytest.approx([0.1, 0.15, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])


def test_adam_learns_blobs():
    x, y = _blobs(n=300)
    net = MLP((20, 16, 3), seed=0)
    result = fit(net, (x[:200], y[:200]), (x[200:], y[200:]), optimizer="adam", lr=1e-2,
                 batch_size=50, epochs=5, progress=False)  # fmt: skip
    assert result.test_accuracy > 0.95


def _shift_by_roll(img, dy, dx):
    """Reference route: roll, then zero the rows/columns that wrapped around."""
    out = torch.roll(img, shifts=(dy, dx), dims=(-2, -1))
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


def test_random_shift_equals_roll_with_zero_fill():
    x = torch.rand(50, 2, 9, 7)
    g = torch.Generator().manual_seed(0)
    out = random_shift(x, 2, generator=g)
    d = torch.randint(-2, 3, (2, 50), generator=torch.Generator().manual_seed(0))
    for i in range(50):
        torch.testing.assert_close(out[i], _shift_by_roll(x[i], int(d[0, i]), int(d[1, i])), rtol=0, atol=0)
    assert len({(int(a), int(b)) for a, b in d.T}) > 10  # many different offsets were exercised
    assert torch.equal(random_shift(x, 0, generator=g), x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"schedule": "step"}, "unknown schedule"),
        ({"lr": 0.0}, "lr must be a positive"),
        ({"readout_lr": -1.0}, "readout_lr must be a positive"),
        ({"momentum": 1.0}, "momentum must be in"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"epochs": 1.5}, "epochs must be an integer"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"epochs": 2, "warmup_epochs": 5}, "warmup_epochs"),
    ],
)
def test_bad_hyperparameters_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        fit(MLP((20, 4, 3), seed=0), _blobs(n=8), progress=False, **kwargs)


def test_bad_data_raises_input_error():
    x, y = _blobs(n=8)
    with pytest.raises(InputError, match="8 inputs but 7 labels"):
        fit(MLP((20, 4, 3), seed=0), (x, y[:7]), progress=False)
    with pytest.raises(InputError, match="shift=2 needs images"):
        fit(MLP((20, 4, 3), seed=0), (x, y), shift=2, progress=False)
    with pytest.raises(InputError, match="labels must be int64"):
        fit(MLP((20, 4, 3), seed=0), (x, y.float()), progress=False)


def test_checkpoint_round_trip_restores_an_identical_model(tmp_path):
    x, y = _blobs(n=64)
    net = MLP((20, 8, 8, 3), activation="tanh", skip=True, seed=3)
    fit(net, (x, y), lr=0.1, batch_size=16, epochs=1, progress=False)
    save_checkpoint(tmp_path / "ck", net, meta={"seed": 3, "metrics": {"acc": 0.5}})
    model, meta = load_checkpoint(tmp_path / "ck")
    assert type(model) is MLP and model.config == net.config
    assert _same(model, net)
    net.eval()
    torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)
    assert meta["seed"] == 3 and meta["metrics"] == {"acc": 0.5}
    assert meta["versions"]["torch"] == torch.__version__
    assert json.loads((tmp_path / "ck" / "meta.json").read_text())["model_class"] == "MLP"
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["meta.json", "model.pt"]


def test_incomplete_checkpoint_is_a_data_error(tmp_path):
    save_checkpoint(tmp_path, MLP((4, 3, 2), seed=0))
    (tmp_path / "model.pt").unlink()
    with pytest.raises(DataError, match="no complete checkpoint"):
        load_checkpoint(tmp_path)


def test_train_or_load_trains_once_then_reuses(tmp_path, monkeypatch):
    x, y = _blobs(n=64, d=784, k=10)
    data = ((x, y), (x, y))
    cfg = TrainConfig(widths=(784, 8, 8, 10), epochs=1, batch_size=32, warmup_epochs=0)
    first = train_or_load(cfg, 2, cache_dir=tmp_path, data=data, progress=False)
    path = checkpoint_dir(tmp_path, cfg, 2)
    assert path == tmp_path / cfg.key() / "seed-2" and (path / "meta.json").is_file()
    assert first.meta["reused"] is False and first.meta["seed"] == 2
    assert first.meta["config"] == cfg.to_dict()

    def no_training(*args, **kwargs):
        raise AssertionError("should have reused the checkpoint")

    monkeypatch.setattr(train_mod, "fit", no_training)
    again = train_or_load(cfg, 2, cache_dir=tmp_path, data=data, progress=False)
    assert again.meta["reused"] is True and _same(again.model, first.model)
    other = TrainConfig(widths=(784, 8, 8, 10), epochs=2, batch_size=32, warmup_epochs=0)
    assert other.key() != cfg.key()
    with pytest.raises(ConfigError, match="holds a checkpoint of another config"):
        train_or_load(other, 2, directory=path, data=data, progress=False)
    with pytest.raises(ConfigError, match="exactly one of"):
        train_or_load(cfg, 2, progress=False)


def test_config_key_is_stable_and_round_trips():
    cfg = TrainConfig(epochs=3, shift=2)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert TrainConfig.from_dict(cfg.to_dict()).key() == cfg.key()
    assert TrainConfig(epochs=4).key() != cfg.key()
    with pytest.raises(ConfigError, match="unknown field"):
        TrainConfig.from_dict({"epochz": 3})


@pytest.mark.parametrize(
    ("spec", "seeds"),
    [("0-4", [0, 1, 2, 3, 4]), ("0,2,5", [0, 2, 5]), ("0-2,7", [0, 1, 2, 7]), ("3", [3]), ([1, 2], [1, 2])],
)
def test_parse_seeds(spec, seeds):
    assert parse_seeds(spec) == seeds


@pytest.mark.parametrize("spec", ["4-0", "a", "0,0", "", "-1", "1-"])
def test_parse_seeds_rejects_bad_specs(spec):
    with pytest.raises(ConfigError):
        parse_seeds(spec)
