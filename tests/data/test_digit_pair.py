"""digit_pair and digit_pair_task on the real MNIST files: sizes, labels, pixels, order, errors."""

import numpy as np
import pytest
import torch

from layer_sim.data import MSEOneHot, digit_pair, digit_pair_task, load_mnist
from layer_sim.errors import ConfigError, UnknownNameError

# Images per digit in the original MNIST files (LeCun et al.; the counts every MNIST description
# lists): an external fact, not an output of our code.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize("a, b", [(0, 1), (2, 7), (4, 6), (8, 9)])
def test_sizes_are_the_two_digits_counts(a, b):
    for split, counts in (("train", TRAIN_COUNTS), ("test", TEST_COUNTS)):
        x, y = digit_pair(a, b, split)
        assert x.shape == (counts[a] + counts[b], 1, 28, 28)
        assert int((y == 0).sum()) == counts[a] and int((y == 1).sum()) == counts[b]


def test_labels_pixels_and_order_are_those_of_the_full_split():
    x_all, y_all = load_mnist("test")
    x, y = digit_pair(2, 7, "test")
    keep = np.flatnonzero(np.isin(y_all.numpy(), [2, 7]))  # file order, computed independently
    assert torch.equal(x, x_all[keep])
    assert torch.equal(y, torch.from_numpy((y_all.numpy()[keep] == 7).astype(np.int64)))
    assert y.dtype == torch.int64 and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # pixels / 255, no normalisation
    # The first digit is label 0: swapping the arguments swaps the labels, not the images.
    xs, ys = digit_pair(7, 2, "test")
    assert torch.equal(xs, x) and torch.equal(ys, 1 - y)


def test_bad_digits_and_split_are_refused():
    with pytest.raises(ConfigError, match="digit_pair: the two digits must differ, got a = b = 3"):
        digit_pair(3, 3)
    with pytest.raises(ConfigError, match=r"digit_pair: b must be an integer in \[0, 9\], got 10"):
        digit_pair(1, 10)
    with pytest.raises(ConfigError, match="digit_pair: a must be an integer in"):
        digit_pair(True, 2)
    with pytest.raises(ConfigError, match="unknown split 'val'"):
        digit_pair(1, 2, "val")


def test_digit_pair_task_is_a_two_class_mse_task_that_fit_trains_on():
    from layer_sim.models import MLP
    from layer_sim.training import Recipe, fit

    task = digit_pair_task(4, 6, limit_train=400)
    x, y = digit_pair(4, 6)
    assert task.name == "mnist-pair-4-6" and task.num_classes == 2 and task.loss == MSEOneHot()
    assert torch.equal(task.train[0], x[:400]) and torch.equal(task.train[1], y[:400])
    assert len(task.test[1]) == TEST_COUNTS[4] + TEST_COUNTS[6]
    result = fit(MLP((784, 32, 2), seed=0), task, Recipe(epochs=2, batch_size=50), seed=0)
    assert result.test_accuracy > 0.9  # 4 vs 6 is easy
    with pytest.raises(ConfigError, match="limit_train=20000 exceeds the 11760 training images of digits 4 and 6"):
        digit_pair_task(4, 6, limit_train=20000)
    with pytest.raises(UnknownNameError, match="unknown loss 'hinge'"):
        digit_pair_task(4, 6, loss="hinge")
