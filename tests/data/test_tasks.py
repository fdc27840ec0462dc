"""Losses of tasks against torch's own reference modules."""

import pytest
import torch
from torch import nn

from layer_sim.data.tasks import CrossEntropy, MSEOneHot, get_loss
from layer_sim.errors import UnknownNameError


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
