"""Datasets and tasks: MNIST from the original IDX files; a Task = data + labels + loss."""

from layer_sim.data.mnist import digit_pair, load_mnist, mnist_dir
from layer_sim.data.tasks import (
    LOSSES,
    TASKS,
    CrossEntropy,
    Loss,
    MSEOneHot,
    Task,
    TaskSpec,
    digit_pair_task,
    get_loss,
    mnist_task,
)

__all__ = [
    "load_mnist",
    "mnist_dir",
    "digit_pair",
    "digit_pair_task",
    "Task",
    "TaskSpec",
    "TASKS",
    "mnist_task",
    "Loss",
    "CrossEntropy",
    "MSEOneHot",
    "LOSSES",
    "get_loss",
]
