"""Datasets: MNIST from the original IDX files."""

from layer_sim.data.mnist import load_mnist, mnist_dir

__all__ = ["load_mnist", "mnist_dir"]
