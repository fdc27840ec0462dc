"""Datasets and tasks: MNIST from the original IDX files; a Task = data + labels + loss."""

from layer_sim.data.mnist import load_mnist, mnist_dir
from layer_sim.data.tasks import LOSSES, TASKS, CrossEntropy, Loss, MSEOneHot, Task, TaskSpec, get_loss, mnist_task

__all__ = [
    "load_mnist",
    "mnist_dir",
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
