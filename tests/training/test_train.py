"""fit(): exact arithmetic, learning, determinism, callbacks, readout learning rate, schedule, augmentation."""

import math

import pytest
import torch
from torch import nn

from layer_sim.data import Task
from layer_sim.errors import ConfigError, InputError
from layer_sim.models import MLP
from layer_sim.training import Callback, Recipe, fit, random_shift


def _blobs(n=256, d=20, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(k, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y


def _task(train, test=None, *, k=3, loss="cross_entropy"):
    return Task("blobs", train, test, k, loss)


def _recipe(**kw):
    """A Recipe with the defaults fit() had before recipes existed (no weight decay, no warm-up)."""
    return Recipe(**{"weight_decay": 0.0, "warmup_epochs": 0.0, **kw})


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


FAST = _recipe(lr=0.05, batch_size=32, epochs=2)


# ----------------------------------------------------------------------------- the exact arithmetic


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


def _reference_training(init: MLP, x, y, *, optimizer, lr, readout_lr, momentum, weight_decay, batch_size,
                        epochs, warmup_epochs, schedule, shift, seed, milestones=(), gamma=0.1,
                        clip_norm=None):  # fmt: skip
    """Transcription of the documented algorithm with torch primitives, no nn.Module and no torch.optim.

    Per epoch a permutation from a generator seeded with ``seed``; per batch (with shift) one
    draw of (2, B) offsets from the same generator; forward relu(W h + b) per hidden layer and a
    linear readout; mean cross-entropy; coupled weight decay; heavy-ball momentum whose buffer
    starts as the first gradient (SGD) or Adam with bias corrections; learning rate of step s =
    peak * f_s with a linear warm-up then a cosine, constant or step factor (gamma per milestone
    epoch finished); with clip_norm the gradients are scaled by min(1, clip_norm / (norm + 1e-6)),
    norm = the Euclidean norm of all of them.
    """
    names = [n for n, _ in init.named_parameters()]
    params = {n: p.detach().clone() for n, p in init.named_parameters()}
    state = {n: {} for n in names}
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    per_epoch = math.ceil(n / batch_size)
    total, warm = per_epoch * epochs, round(warmup_epochs * per_epoch)
    s = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            if shift:
                d = torch.randint(-shift, shift + 1, (2, len(idx)), generator=gen)
                xb = torch.stack([_shift_by_roll(img, int(dy), int(dx)) for img, dy, dx in zip(xb, d[0], d[1])])
            leaves = [params[k].requires_grad_() for k in names]
            h = xb.flatten(1)
            for k in range(1, len(init.widths) - 1):
                h = torch.relu(nn.functional.linear(h, params[f"fc{k}.weight"], params[f"fc{k}.bias"]))
            out = nn.functional.linear(h, params["fc_out.weight"], params["fc_out.bias"])
            grads = torch.autograd.grad(nn.functional.cross_entropy(out, yb), leaves)
            if clip_norm is not None:
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                grads = [g * torch.clamp(clip_norm / (norm + 1e-6), max=1.0) for g in grads]
            if s < warm:
                factor = (s + 1) / warm
            elif schedule == "cosine":
                factor = 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm))))
            elif schedule == "step":
                factor = gamma ** sum(s // per_epoch >= m for m in milestones)
            else:
                factor = 1.0
            with torch.no_grad():
                for k, g in zip(names, grads):
                    p, st = params[k].detach(), state[k]
                    rate = (readout_lr if k.startswith("fc_out") and readout_lr else lr) * factor
                    g = g.add(p, alpha=weight_decay)
                    if optimizer == "sgd":
                        st["buf"] = g.clone() if "buf" not in st else st["buf"].mul_(momentum).add_(g)
                        p.add_(st["buf"], alpha=-rate)
                    else:
                        st.setdefault("m", torch.zeros_like(p)).lerp_(g, 1 - momentum)
                        st.setdefault("v", torch.zeros_like(p)).mul_(0.999).addcmul_(g, g, value=1 - 0.999)
                        t = float(s + 1)
                        denom = (st["v"].sqrt() / (1 - 0.999**t) ** 0.5).add_(1e-8)
                        p.addcdiv_(st["m"], denom, value=-rate / (1 - momentum**t))
                    params[k] = p
            s += 1
    return params


@pytest.mark.parametrize(
    "options",
    [
        # The default recipe's shape: SGD momentum, weight decay, warm-up then cosine, plus a
        # separate readout rate and augmentation shifts.
        dict(optimizer="sgd", lr=0.05, momentum=0.9, readout_lr=0.02, weight_decay=5e-4, batch_size=24,
             epochs=2, warmup_epochs=0.5, schedule="cosine", shift=1),
        dict(optimizer="adam", lr=3e-3, momentum=0.8, readout_lr=None, weight_decay=1e-4, batch_size=32,
             epochs=2, warmup_epochs=0.0, schedule="constant", shift=0),
        # The original layer_sim's recipe shape: step annealing and gradient clipping (at a norm
        # small enough that most steps are clipped).
        dict(optimizer="sgd", lr=0.1, momentum=0.9, readout_lr=None, weight_decay=1e-4, batch_size=24,
             epochs=3, warmup_epochs=0.0, schedule="step", shift=0, milestones=(1, 2), gamma=0.1, clip_norm=0.5),
    ],
    ids=["sgd", "adam", "sgd-step-clipped"],
)
def test_weights_are_bit_identical_to_a_transcription_of_the_algorithm(options):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(100, 1, 6, 6, generator=g)  # 100 = 4*24 + 4: a partial last batch
    y = (x.flatten(1)[:, :4].argmax(1) + (x.mean((1, 2, 3)) > 0.5).long()) % 4
    net = MLP((36, 16, 12, 4), seed=1)
    want = _reference_training(MLP((36, 16, 12, 4), seed=1), x, y, seed=7, **options)
    fit(net, _task((x, y), k=4), Recipe(**options), seed=7, progress=False)
    for name, p in net.named_parameters():
        assert torch.equal(p, want[name]), name
    assert not torch.equal(net.fc1.weight, MLP((36, 16, 12, 4), seed=1).fc1.weight)  # it did train


# ----------------------------------------------------------------------------- behaviour


def test_same_seed_gives_bit_identical_weights_and_other_seeds_differ():
    task = _task(_blobs())
    nets = [MLP((20, 16, 16, 3), seed=0) for _ in range(3)]
    fit(nets[0], task, FAST, seed=7, progress=False)
    fit(nets[1], task, FAST, seed=7, progress=False)
    fit(nets[2], task, FAST, seed=8, progress=False)  # same init, other shuffling
    assert _same(nets[0], nets[1])
    assert not _same(nets[0], nets[2])


def test_fit_does_not_use_the_global_rng():
    task = _task(_blobs())
    torch.manual_seed(0)
    a = MLP((20, 16, 3), seed=0)
    fit(a, task, FAST, seed=1, progress=False)
    torch.manual_seed(12345)  # a different global state must not matter
    b = MLP((20, 16, 3), seed=0)
    fit(b, task, FAST, seed=1, progress=False)
    assert _same(a, b)


def test_really_learns_mnist_from_2000_examples():
    from layer_sim.data import mnist_task

    task = mnist_task(limit_train=2000)
    task = Task("mnist", task.train, (task.test[0][:2000], task.test[1][:2000]), 10, task.loss)
    net = MLP((784, 256, 256, 256, 256, 10), seed=0)
    # +-2 px shifts matter with 2k examples: without them test accuracy saturates near 88%.
    recipe = _recipe(optimizer="adam", lr=1e-3, batch_size=32, epochs=14, shift=2)
    result = fit(net, task, recipe, seed=0, progress=False)
    # Chance is 10%; the held-out examples were never seen in training.
    assert result.test_accuracy > 0.90
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # Independent check of the reported accuracy.
    with torch.no_grad():
        acc = (net(task.test[0]).argmax(1) == task.test[1]).double().mean().item()
    assert result.test_accuracy == pytest.approx(acc, abs=1e-12)


def test_mse_against_one_hot_trains_on_mnist():
    """The loss comes from the task: MSE against one-hot targets learns, and is what fit minimised."""
    from layer_sim.data import mnist_task

    task = mnist_task(limit_train=2000, loss="mse_one_hot")
    net = MLP((784, 128, 10), seed=0)
    result = fit(net, task, _recipe(lr=0.5, batch_size=50, epochs=5), seed=0, progress=False)
    assert result.test_accuracy > 0.85  # chance is 10%
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < 0.6 * first["train_loss"]
    with torch.no_grad():
        out = net(task.test[0])
    mse = nn.MSELoss()(out, nn.functional.one_hot(task.test[1], 10).float()).item()
    assert last["test_loss"] == pytest.approx(mse, rel=1e-5)
    # Cross-entropy of an untrained net is ~ln 10 = 2.3; MSE of outputs near 0 is ~0.1.
    assert first["train_loss"] < 0.2


def test_a_callback_may_implement_only_one_hook():
    class EpochsOnly:
        def __init__(self):
            self.n = 0

        def on_epoch_end(self, state):
            self.n += 1

    cb = EpochsOnly()
    fit(MLP((20, 4, 3), seed=0), _task(_blobs(n=32)), _recipe(epochs=3, batch_size=16), seed=0, callbacks=[cb],
        progress=False)  # fmt: skip
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
        assert state.scheduler.last_epoch == state.step and isinstance(state.generator, torch.Generator)

    def on_epoch_end(self, state):
        self.epochs.append(dict(state.metrics))


def test_callbacks_see_every_batch_and_epoch_with_consistent_state():
    x, y = _blobs(n=100)
    rec = _Recorder()
    result = fit(MLP((20, 8, 3), seed=0), _task((x, y), (x, y)), _recipe(lr=0.1, batch_size=32, epochs=3),
                 seed=0, callbacks=[rec], progress=False)  # fmt: skip
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
    fit(net, _task((x, y)), _recipe(lr=0.1, readout_lr=0.01, momentum=0.0, batch_size=40, epochs=1,
                                    schedule="constant"), seed=0, progress=False)  # fmt: skip
    before = dict(ref.named_parameters())
    for name, p in net.named_parameters():
        step = 0.01 if name.startswith("fc_out") else 0.1
        torch.testing.assert_close(p, before[name] - step * grads[name], rtol=1e-5, atol=1e-7)


def test_warmup_is_linear():
    rec = _Recorder()
    fit(MLP((20, 8, 3), seed=0), _task(_blobs(n=64)), _recipe(lr=0.2, batch_size=16, epochs=2, warmup_epochs=1,
                                                              schedule="constant"),
        seed=0, callbacks=[rec], progress=False)  # fmt: skip
    # W = 4 warm-up steps; lr used for step s+1 is lr (s+1)/W, then constant.
    lrs = [b[5] for b in rec.batches]
    assert lrs == pytest.approx([0.1, 0.15, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])


def test_clipping_bounds_every_steps_gradient_and_changes_the_result():
    norms = []

    class Norms:
        def on_batch_end(self, state):
            norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in state.model.parameters()]))))

    task = _task(_blobs(n=64))
    clipped, free = MLP((20, 16, 3), seed=0), MLP((20, 16, 3), seed=0)
    fit(clipped, task, _recipe(lr=0.1, batch_size=16, epochs=2, clip_norm=0.3), seed=0, callbacks=[Norms()], progress=False)
    fit(free, task, _recipe(lr=0.1, batch_size=16, epochs=2), seed=0, progress=False)
    assert len(norms) == 8 and max(norms) <= 0.3 * (1 + 1e-6)
    assert sum(n > 0.299 for n in norms) >= 4  # most steps were clipped, to the bound
    assert not _same(clipped, free)


def test_step_schedule_sets_the_rate_of_every_batch():
    rec = _Recorder()
    fit(MLP((20, 8, 3), seed=0), _task(_blobs(n=64)), _recipe(lr=0.2, batch_size=16, epochs=3, schedule="step",
                                                              milestones=(1, 2), gamma=0.5),
        seed=0, callbacks=[rec], progress=False)  # fmt: skip
    # The rate after step s is the one step s + 1 uses: epoch 1 at 0.2, epoch 2 at 0.1, epoch 3 at 0.05.
    assert [b[5] for b in rec.batches] == pytest.approx([0.2] * 3 + [0.1] * 4 + [0.05] * 5, rel=1e-15)


def test_adam_learns_blobs():
    x, y = _blobs(n=300)
    net = MLP((20, 16, 3), seed=0)
    result = fit(net, _task((x[:200], y[:200]), (x[200:], y[200:])),
                 _recipe(optimizer="adam", lr=1e-2, batch_size=50, epochs=5), seed=0, progress=False)  # fmt: skip
    assert result.test_accuracy > 0.95


def test_random_shift_equals_roll_with_zero_fill():
    x = torch.rand(50, 2, 9, 7)
    g = torch.Generator().manual_seed(0)
    out = random_shift(x, 2, generator=g)
    d = torch.randint(-2, 3, (2, 50), generator=torch.Generator().manual_seed(0))
    for i in range(50):
        torch.testing.assert_close(out[i], _shift_by_roll(x[i], int(d[0, i]), int(d[1, i])), rtol=0, atol=0)
    assert len({(int(a), int(b)) for a, b in d.T}) > 10  # many different offsets were exercised
    assert torch.equal(random_shift(x, 0, generator=g), x)


# ----------------------------------------------------------------------------- arguments


def test_recipe_and_task_must_have_their_types():
    net, task = MLP((20, 4, 3), seed=0), _task(_blobs(n=8))
    with pytest.raises(ConfigError, match="fit: recipe must be a layer_sim.training.Recipe, got dict"):
        fit(net, task, {"lr": 0.1}, seed=0)
    with pytest.raises(ConfigError, match="fit: task must be a layer_sim.data.Task, got tuple"):
        fit(net, _blobs(n=8), FAST, seed=0)
    with pytest.raises(ConfigError, match="fit: seed must be an integer >= 0, got -1"):
        fit(net, task, FAST, seed=-1)
    with pytest.raises(ConfigError, match=r"seed must be an integer >= 0, got 9223372036854775808"):
        fit(net, task, FAST, seed=2**63)


def test_shift_needs_images():
    with pytest.raises(InputError, match=r"shift=2 needs images of shape \(n, C, H, W\)"):
        fit(MLP((20, 4, 3), seed=0), _task(_blobs(n=8)), _recipe(shift=2), seed=0, progress=False)
