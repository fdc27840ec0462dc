"""Training and extraction with data and models as a hostile but realistic user gives them: refused
before any work, with an error naming the argument, never a torch RuntimeError or IndexError."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from layer_sim import extract
from layer_sim.data import CrossEntropy, MSEOneHot, Task
from layer_sim.errors import ConfigError, InputError, TrainingDivergedError, UnknownNameError
from layer_sim.models import MLP
from layer_sim.training import Recipe, fit, fit_ensemble

G = torch.Generator().manual_seed(0)
X = torch.rand(20, 5, generator=G)
Y = torch.randint(0, 3, (20,), generator=G)


def _net(widths=(5, 8, 3)):
    return MLP(widths, seed=0)


def _task(x=X, y=Y, classes=3):
    return Task("toy", (x, y), (x, y), classes, "cross_entropy")


def _with_nan(x):
    x = x.clone()
    x[7, 2] = float("nan")
    return x


EXTRACT = [
    ("sparse data", lambda: extract(_net(), X.to_sparse()), InputError, r"extract: data is a sparse tensor \(layout torch.sparse_coo\)"),
    ("meta data", lambda: extract(_net(), torch.empty(4, 5, device="meta")), InputError, "extract: data is on the meta device"),
    ("a sparse batch", lambda: extract(_net(), [X[:8].to_sparse()]), InputError, "extract: data must be a tensor, an"),
    ("loader of sparse batches", lambda: extract(_net(), DataLoader(TensorDataset(X), batch_size=8, collate_fn=lambda b: torch.stack([t[0] for t in b]).to_sparse())),
     InputError, "extract: batch 0 of data is a sparse tensor"),
    ("model on meta", lambda: extract(_net().to("meta"), X), InputError, "extract: the model's weights are on the meta device"),
    ("NaN in data", lambda: extract(_net(), _with_nan(X)), InputError, r"extract: data contains NaN or Inf \(examples \[7\]"),
    ("NaN in the 2nd batch", lambda: extract(_net(), DataLoader(TensorDataset(_with_nan(X)), batch_size=4)), InputError, "extract: batch 1 of data contains NaN"),
    ("wrong width", lambda: extract(_net(), torch.rand(4, 7)), InputError, r"expected input of shape \(n, 5\)"),
    ("float64 data", lambda: extract(_net(), X.double()), InputError, r"the model raised on the first batch .*torch.float64"),
    ("no examples", lambda: extract(_net(), X[:0]), InputError, "extract: data contains no examples"),
    ("a 0-d tensor", lambda: extract(_net(), torch.tensor(1.0)), InputError, "got a 0-d tensor"),
    ("an ndarray", lambda: extract(_net(), X.numpy()), InputError, "data must be a tensor, an .* got ndarray"),
    ("unknown layer", lambda: extract(_net(), X, layers=["act9"]), UnknownNameError, "extract: unknown layer 'act9'; available: fc1, act1"),
    ("module type absent", lambda: extract(_net(), X, layers=[nn.Conv2d]), UnknownNameError, "no module of type Conv2d"),
    ("batch size 0", lambda: extract(_net(), X, batch_size=0), InputError, "batch_size must be a positive integer, got 0"),
    ("gradients as text", lambda: extract(_net(), X, gradients="yes"), ConfigError, "gradients must be True or False"),
    ("gradients without targets", lambda: extract(_net(), X, gradients=True, objective=CrossEntropy()), InputError, "gradients=True needs targets"),
    ("labels beyond the classes", lambda: extract(_net(), (X, Y + 3), gradients=True, objective=CrossEntropy()), InputError, r"class labels in 0..2 \(the model has 3 outputs\)"),
    ("float labels", lambda: extract(_net(), (X, Y.float()), gradients=True, objective=MSEOneHot()), InputError, "targets must be integer class labels"),
    ("labels of other length", lambda: extract(_net(), (X, Y[:5]), gradients=True, objective=CrossEntropy()), InputError, "x has 20 examples but y has 5"),
    ("objective by name", lambda: extract(_net(), (X, Y), gradients=True, objective="cross_entropy"), UnknownNameError, "extract: unknown objective 'cross_entropy'; available: loss, tang"),
    ("device gpu", lambda: extract(_net(), X, device="gpu"), ConfigError, "extract: device='gpu' is not a torch device name"),
    ("device cuda", lambda: extract(_net(), X, device="cuda:99"), ConfigError, "extract: device='cuda:99' but"),
    ("device mps", lambda: extract(_net(), X, device="mps"), ConfigError, "extract: device='mps' but MPS is not available"),
    ("device meta", lambda: extract(_net(), X, device="meta"), ConfigError, "device='meta' holds no data"),
    ("flat images into LeNet-5", lambda: extract(_cnn("LeNet5"), torch.rand(4, 784)), InputError, r"LeNet5: expected images of shape \(n, 1, 28, 28\), got shape \(4, 784\)"),
    ("RGB images into Tiny-10", lambda: extract(_cnn("Tiny10"), torch.rand(4, 3, 28, 28)), InputError, r"Tiny10: expected images of shape \(n, 1, 28, 28\)"),
    ("an unknown conv layout", lambda: _layout("pixels"), UnknownNameError, "with_layout: layout: unknown value 'pixels'; available: flatten, channels, spatial_mean"),
]

PRUNE = [
    ("rate nan", lambda: _prune(rate=float("nan")), ConfigError, r"global_magnitude_prune: rate must be a finite number in \(0, 1\), got nan"),
    ("rate 1", lambda: _prune(rate=1.0), ConfigError, r"global_magnitude_prune: rate must be a finite number in \(0, 1\), got 1.0"),
    ("a pattern matching nothing", lambda: _prune(rate=0.5, patterns=["nothing.*"]), UnknownNameError, "pattern 'nothing.*' matches no parameter; parameters: features.0.weight"),
    ("patterns as one string", lambda: _prune(rate=0.5, patterns="features.0.weight"), ConfigError, "patterns must be a non-empty list of regular expressions"),
    ("rate given positionally", lambda: _prune(0.5), ConfigError, "too many positional arguments; it takes model positionally, and rate, patterns by keyword only"),
]


def _cnn(name):
    import layer_sim.models

    return getattr(layer_sim.models, name)(seed=0)


def _layout(layout):
    from layer_sim.representations import with_layout

    return with_layout(extract(_cnn("LeNet5"), torch.rand(4, 1, 28, 28)), layout)


def _prune(*args, **kwargs):
    from layer_sim.training.pruning import global_magnitude_prune

    return global_magnitude_prune(_cnn("LeNet5"), *args, **kwargs)


@pytest.mark.parametrize("label", [c[0] for c in PRUNE])
def test_pruning_refuses_naming_the_argument(label):
    _, call, error, message = next(c for c in PRUNE if c[0] == label)
    with pytest.raises(error, match=message):
        call()

FIT = [
    ("wrong width", lambda: fit(_net((7, 8, 3)), _task(), Recipe(epochs=1), seed=0), InputError, r"fit: task.train inputs of shape \(20, 5\) do not fit the model"),
    ("too few outputs", lambda: fit(_net((5, 8, 2)), _task(), Recipe(epochs=1), seed=0), InputError, "task 'toy' has num_classes=3"),
    ("float64 data", lambda: fit(_net(), _task(x=X.double()), Recipe(epochs=1), seed=0), InputError, "task.train inputs are torch.float64 but the model is torch.float32"),
    ("shift on flat inputs", lambda: fit(_net(), _task(), Recipe(epochs=1, shift=2), seed=0), InputError, r"shift=2 needs images of shape \(n, C, H, W\)"),
    ("labels beyond the classes", lambda: _task(y=Y + 3), InputError, r"Task 'toy': train labels must lie in 0..2 \(num_classes=3\)"),
    ("float labels", lambda: _task(y=Y.float()), InputError, "train labels must be int64 class indices"),
    ("NaN inputs", lambda: _task(x=_with_nan(X)), InputError, "Task 'toy'"),
    ("device gpu", lambda: fit(_net(), _task(), Recipe(epochs=1), seed=0, device="gpu"), ConfigError, "fit: device='gpu' is not a torch device name"),
    ("device cuda", lambda: fit(_net(), _task(), Recipe(epochs=1), seed=0, device="cuda"), ConfigError, "fit: device='cuda' but CUDA is not available"),
    ("device mps", lambda: fit(_net(), _task(), Recipe(epochs=1), seed=0, device="mps"), ConfigError, "fit: device='mps' but MPS is not available"),
    ("a recipe as a dict", lambda: fit(_net(), _task(), {"lr": 0.1}, seed=0), ConfigError, "recipe must be a layer_sim.training.Recipe"),
    ("data as a pair", lambda: fit(_net(), (X, Y), Recipe(), seed=0), ConfigError, "task must be a layer_sim.data.Task"),
    ("an lr float32 cannot hold", lambda: fit(_net(), _task(), Recipe(lr=1e39), seed=0), ConfigError, "lr=1e\\+39 is larger than the largest torch.float32"),
    ("diverging", lambda: fit(_net(), _task(), Recipe(epochs=2, batch_size=4, lr=1e30, warmup_epochs=0.0, schedule="constant"), seed=0),
     TrainingDivergedError, r"fit: training diverged: the loss is .* at epoch 1, step \d+ \(learning rate 1e\+30\)"),
    ("ensemble of other widths", lambda: fit_ensemble([_net(), _net((5, 4, 3))], _task(), Recipe(), seeds=[0, 1]), ConfigError, "models\\[1\\] has config"),
    ("ensemble device gpu", lambda: fit_ensemble([_net()], _task(), Recipe(), seeds=[0], device="gpu"), ConfigError, "fit_ensemble: device='gpu'"),
    ("ensemble seed beyond int64", lambda: fit_ensemble([_net()], _task(), Recipe(), seeds=[2**64]), ConfigError, "fit_ensemble: seed must be an integer >= 0"),
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("what, call, error, message", EXTRACT + FIT, ids=[c[0] for c in EXTRACT] + [f"fit-{c[0]}" for c in FIT])
def test_refused_with_an_error_naming_the_argument(what, call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_nothing_is_trained_or_changed_when_fit_refuses():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InputError):
        fit(net, _task(x=X.double()), Recipe(epochs=1), seed=0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
