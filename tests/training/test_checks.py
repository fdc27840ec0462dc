"""Trainers fail early and clearly: bad data, models that do not fit, missing devices, divergence."""

import math
import re

import pytest
import torch
from torch import nn

from layer_sim.data import Task
from layer_sim.errors import ConfigError, InputError, LayerSimError, TrainingDivergedError
from layer_sim.models import MLP
from layer_sim.training import Recipe, fit, fit_ensemble


def _data(n=40, d=12, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, x[:, :k].argmax(1)


RECIPE = Recipe(epochs=1, batch_size=10, warmup_epochs=0)


def _untouched(model, ref):
    return all(torch.equal(p, q) for p, q in zip(model.parameters(), ref.parameters()))


# ----------------------------------------------------------------------------- task data


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda x, y: ((x, y[:-1]), None, 3), "train has 40 inputs but 39 labels"),
        (lambda x, y: ((x, y.float()), None, 3), r"train labels must be int64 class indices.*got torch.float32"),
        (lambda x, y: ((x, y[:, None]), None, 3), r"labels must be int64 class indices of shape \(n,\).*\(40, 1\)"),
        (lambda x, y: ((x, y), None, 2), r"train labels must lie in 0\.\.1 \(num_classes=2\), found 0\.\.2"),
        (lambda x, y: ((x, y - 1), None, 3), r"labels must lie in 0\.\.2 .*found -1\.\.1"),
        (lambda x, y: ((x, y), (x, y + 5), 3), r"test labels must lie in 0\.\.2"),
        (lambda x, y: ((torch.where(x > 2, torch.nan, x), y), None, 3), r"train inputs contain \d+ NaN or infinite"),
        (lambda x, y: ((x, y), (x.clone().fill_(torch.inf), y), 3), "test inputs contain 480 NaN or infinite"),
        (lambda x, y: ((x[:0], y[:0]), None, 3), "train has 0 inputs but 0 labels"),
        (lambda x, y: ([x], None, 3), "train must be an .inputs, labels. pair of tensors"),
    ],
)
def test_bad_task_data_is_an_input_error_naming_the_split(make, match):
    x, y = _data()
    with pytest.raises(InputError, match=match):
        Task("toy", *make(x, y), "cross_entropy")


def test_bad_task_fields_name_the_field():
    x, y = _data()
    with pytest.raises(ConfigError, match="Task 'toy': num_classes must be an integer >= 2, got 1.5"):
        Task("toy", (x, y), None, 1.5, "cross_entropy")
    with pytest.raises(LayerSimError, match="unknown loss 'hinge'"):
        Task("toy", (x, y), None, 3, "hinge")
    with pytest.raises(ConfigError, match="name must be a non-empty string"):
        Task("", (x, y), None, 3, "cross_entropy")


# ----------------------------------------------------------------------------- model against task


@pytest.mark.parametrize("trainer", ["fit", "fit_ensemble"])
def test_inputs_that_do_not_fit_the_model_fail_before_training(trainer):
    x, y = _data()
    net, ref = MLP((10, 8, 3), seed=0), MLP((10, 8, 3), seed=0)  # takes 10 values, the task has 12
    run = (lambda: fit(net, Task("toy", (x, y), None, 3, "cross_entropy"), RECIPE, seed=0)) if trainer == "fit" \
        else (lambda: fit_ensemble([net], Task("toy", (x, y), None, 3, "cross_entropy"), RECIPE, seeds=[0]))
    with pytest.raises(InputError, match=rf"{trainer}: task.train inputs of shape \(40, 12\) do not fit the model "
                                         r"\(MLP: expected input of shape \(n, 10\)"):
        run()
    assert _untouched(net, ref)


def test_a_generic_model_that_rejects_the_inputs_is_an_input_error_not_a_runtime_error():
    x, y = _data()
    net = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
    with pytest.raises(InputError, match=r"fit: task.train inputs of shape \(40, 12\) do not fit the model \(.*mat1"):
        fit(net, Task("toy", (x, y), None, 3, "cross_entropy"), RECIPE, seed=0)


def test_output_width_must_equal_num_classes():
    x, y = _data()
    for loss in ("cross_entropy", "mse_one_hot"):
        with pytest.raises(InputError, match=r"maps each task.train input to \(4,\), but task 'toy' has num_classes=3"):
            fit(MLP((12, 8, 4), seed=0), Task("toy", (x, y), None, 3, loss), RECIPE, seed=0)


@pytest.mark.parametrize("trainer", ["fit", "fit_ensemble"])
def test_input_dtype_must_match_the_model(trainer):
    x, y = _data()
    task = Task("toy", (x, y), (x.double(), y), 3, "cross_entropy")
    net = MLP((12, 8, 3), seed=0)
    with pytest.raises(InputError, match=f"{trainer}: task.test inputs are torch.float64 but the model is torch.float32"):
        fit(net, task, RECIPE, seed=0) if trainer == "fit" else fit_ensemble([net], task, RECIPE, seeds=[0])


def test_train_mode_and_weights_are_left_alone_by_the_check():
    x, y = _data()
    net = nn.Sequential(nn.Linear(12, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    net[1].eval()  # a mixed mode must survive the check, which runs the model in eval mode
    ref = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(InputError):
        fit(net, Task("toy", (x, y), None, 2 + 2, "cross_entropy"), RECIPE, seed=0)  # width 3 vs 4 classes
    assert [m.training for m in net] == [True, False, True]
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), ref))


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps", "gpu", "meta", 3.5])
@pytest.mark.parametrize("trainer", ["fit", "fit_ensemble"])
def test_a_device_this_machine_lacks_is_a_config_error_before_any_work(device, trainer):
    if isinstance(device, str) and device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # the error case cannot arise here
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    x, y = _data()
    net, ref = MLP((12, 8, 3), seed=0), MLP((12, 8, 3), seed=0)
    task = Task("toy", (x, y), None, 3, "cross_entropy")
    with pytest.raises(ConfigError, match=rf"{trainer}: device"):
        fit(net, task, RECIPE, seed=0, device=device) if trainer == "fit" else \
            fit_ensemble([net], task, RECIPE, seeds=[0], device=device)
    assert _untouched(net, ref) and net.fc1.weight.device.type == "cpu"


# ----------------------------------------------------------------------------- divergence


def test_a_diverging_loss_stops_with_epoch_step_and_learning_rate():
    x, y = _data(n=40)
    with pytest.raises(TrainingDivergedError, match=r"fit: training diverged: the loss is (nan|inf) at epoch 1, "
                                                    r"step \d \(learning rate 1e\+30\); nothing was saved"):
        fit(MLP((12, 8, 3), seed=0), Task("toy", (x, y), None, 3, "mse_one_hot"),
            Recipe(lr=1e30, epochs=3, batch_size=10, warmup_epochs=0, schedule="constant"), seed=0)


def test_batch_callbacks_never_see_a_diverged_loss():
    x, y = _data(n=40)
    seen = []

    class Record:
        def on_batch_end(self, state):
            seen.append(float(state.loss))

    with pytest.raises(TrainingDivergedError) as info:
        fit(MLP((12, 8, 3), seed=0), Task("toy", (x, y), None, 3, "mse_one_hot"),
            Recipe(lr=1e30, epochs=3, batch_size=10, warmup_epochs=0, schedule="constant"), seed=0, callbacks=[Record()])
    step = int(re.search(r"at epoch 1, step (\d+)", str(info.value)).group(1))
    assert len(seen) == step - 1 >= 1  # every step before the diverged one, and no other
    assert all(math.isfinite(v) for v in seen)


def test_weights_that_overflow_after_a_finite_loss_are_caught_at_the_epoch_end():
    # One step per epoch: its loss is computed before the update and is finite; the update by
    # lr=1e308 times gradients of order 100 (inputs of order 1000) overflows float64.
    x, y = _data(n=10)
    with pytest.raises(TrainingDivergedError, match=r"parameter fc1\.weight is not finite at epoch 1, step 1 "
                                                    r"\(learning rate 1e\+308\)"):
        fit(MLP((12, 8, 3), seed=0).double(), Task("toy", (1000 * x.double(), y), None, 3, "cross_entropy"),
            Recipe(lr=1e308, momentum=0.0, weight_decay=0.0, epochs=2, batch_size=10, warmup_epochs=0,
                   schedule="constant"), seed=0)  # fmt: skip


def test_a_learning_rate_the_model_dtype_cannot_hold_is_a_config_error():
    x, y = _data()
    with pytest.raises(ConfigError, match=r"fit: lr=1e\+300 is larger than the largest torch.float32"):
        fit(MLP((12, 8, 3), seed=0), Task("toy", (x, y), None, 3, "cross_entropy"), Recipe(lr=1e300), seed=0)


def test_the_ensemble_names_the_member_that_diverged():
    x, y = _data(n=40)
    nets = [MLP((12, 8, 3), seed=s) for s in (4, 9)]
    with pytest.raises(TrainingDivergedError, match=r"fit_ensemble: training diverged \(member 0, seed 4\): .* "
                                                    r"at epoch 1, step \d"):
        fit_ensemble(nets, Task("toy", (x, y), None, 3, "mse_one_hot"),
                     Recipe(lr=1e30, epochs=2, batch_size=10, warmup_epochs=0), seeds=[4, 9])
