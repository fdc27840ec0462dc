"""Losses of tasks against torch's own reference modules."""

import pytest
import torch
from torch import nn

from layer_sim.data.tasks import CrossEntropy, MSEOneHot, get_loss
from layer_sim.errors import ConfigError, UnknownNameError


def test_mse_one_hot_batch_mean_is_nn_mseloss_on_one_hot_targets():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(7, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (7,), generator=g)
    expected = nn.MSELoss()(out, nn.functional.one_hot(y, 2).to(torch.float64))
    assert torch.allclose(MSEOneHot()(out, y), expected, rtol=0, atol=1e-15)


def test_cross_entropy_batch_mean_is_nn_crossentropyloss():
    g = torch.Generator().manual_seed(1)
    out = torch.randn(9, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (9,), generator=g)
    assert torch.allclose(CrossEntropy()(out, y), nn.CrossEntropyLoss()(out, y), rtol=0, atol=1e-15)


def test_get_loss_by_name_and_unknown_name():
    assert get_loss("mse_one_hot") == MSEOneHot()
    with pytest.raises(UnknownNameError, match="available: cross_entropy, mse_one_hot"):
        get_loss("hinge")


def test_sums_and_means_agree_with_per_example_losses():
    g = torch.Generator().manual_seed(2)
    out = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (50,), generator=g)
    for loss in (CrossEntropy(), MSEOneHot()):
        per = loss.per_example(out, y)
        assert per.shape == (50,)
        torch.testing.assert_close(loss(out, y), per.mean(), rtol=1e-15, atol=0)
        torch.testing.assert_close(loss.sum(out, y), per.sum(), rtol=1e-15, atol=0)
    # Cross-entropy by hand: -log softmax at the label.
    ref = -(out[torch.arange(50), y] - torch.logsumexp(out, dim=1))
    torch.testing.assert_close(CrossEntropy().per_example(out, y), ref, rtol=1e-14, atol=1e-14)


def test_mnist_task_sizes_labels_subset_and_loss():
    from layer_sim.data import TaskSpec, load_mnist, mnist_task

    task = mnist_task(limit_train=1000, loss="mse_one_hot")
    x, y = load_mnist("train")
    assert task.name == "mnist" and task.num_classes == 10 and task.loss == MSEOneHot()
    assert torch.equal(task.train[0], x[:1000]) and torch.equal(task.train[1], y[:1000])
    assert task.test[0].shape == (10000, 1, 28, 28) and task.test[1].dtype == torch.int64
    assert set(task.test[1].tolist()) == set(range(10))
    assert len(mnist_task().train[0]) == 60000
    built = TaskSpec(limit_train=10).build()
    assert built.loss == CrossEntropy() and torch.equal(built.train[1], y[:10])
    with pytest.raises(ConfigError, match="limit_train=70000 exceeds the 60000 training examples"):
        mnist_task(limit_train=70000)
    with pytest.raises(ConfigError, match="limit_train must be an integer >= 1, got 0"):
        mnist_task(limit_train=0)
    with pytest.raises(UnknownNameError, match="unknown loss 'l1'"):
        mnist_task(loss="l1")


def test_task_spec_round_trip_and_checks():
    from layer_sim.data import TaskSpec

    spec = TaskSpec(loss="mse_one_hot", limit_train=100)
    assert TaskSpec.from_dict(spec.to_dict()) == spec and hash(spec) == hash(TaskSpec("mnist", "mse_one_hot", 100))
    with pytest.raises(UnknownNameError, match="loss: unknown value 'hinge'; available: cross_entropy, mse_one_hot"):
        TaskSpec(loss="hinge")
    with pytest.raises(UnknownNameError, match=r"unknown option\(s\) digits"):
        TaskSpec.from_dict({"digits": [2, 7]})
