"""Small Measure objects for testing compare/layer_identification independently of the registry.

Each is written from its textbook formula in a few lines of NumPy-style torch, with no code
shared with layer_sim.measures.
"""

from dataclasses import dataclass

import torch

from layer_sim.measures import Measure


@dataclass
class Centered:
    x: torch.Tensor

    @property
    def n(self):
        return self.x.shape[0]


def _center(x):
    return Centered(x - x.mean(0))


def _cka(px, py):
    # Feature-space linear CKA: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), X and Y centred.
    X, Y = px.x, py.x
    return (Y.T @ X).square().sum() / (torch.linalg.norm(X.T @ X) * torch.linalg.norm(Y.T @ Y))


def _r2(px, py):
    # R^2 of the least-squares fit of y from x (asymmetric): 1 - ||Y - X B||^2 / ||Y||^2.
    X, Y = px.x, py.x
    B = torch.linalg.lstsq(X, Y).solution
    return 1 - (Y - X @ B).square().sum() / Y.square().sum()


def toy_cka():
    return Measure("toy_cka", _center, _cka, symmetric=True)


def toy_r2():
    return Measure("toy_r2", _center, _r2, symmetric=False)


def batched_toy_cka():
    """toy_cka with a matrix_fn, to check compare() uses it (it adds 10 so the route is visible)."""

    def matrix_fn(pa, pb):
        return torch.stack([torch.stack([_cka(x, y) for y in pb]) for x in pa]) + 10

    return Measure("toy_cka", _center, _cka, symmetric=True, matrix_fn=matrix_fn)


@dataclass
class Tagged:
    tag: int
    n: int


def lookup(table):
    """An asymmetric 'measure' whose score is ``table[tag(x), tag(y)]``, tag = round(x[0, 0]).

    Lets a test set every S(A_i, B_j) by hand.
    """

    def prepare(x):
        return Tagged(int(round(float(x[0, 0]))), x.shape[0])

    def score(px, py):
        return torch.tensor(float(table[px.tag][py.tag]), dtype=torch.float64)

    return Measure("lookup", prepare, score, symmetric=False)


@dataclass(frozen=True)
class _GradientMeasure(Measure):
    """A measure that asks for gradients, as the measures package's gradient-aware ones will."""

    uses_gradients: bool = True

    def prepare(self, x, grad=None):
        if grad is None:
            raise AssertionError("compare/layer_identification did not pass the gradients")
        return self.prepare_fn(torch.as_tensor(grad, dtype=torch.float64))


def toy_gradient_cka():
    """Linear CKA of the layers' *gradients* (features ignored): shows which tensor reached prepare."""
    return _GradientMeasure("toy_gradient_cka", _center, _cka, symmetric=True)
