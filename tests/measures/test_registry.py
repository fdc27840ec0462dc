"""Measure specs, pickling (in-process and through a spawned worker), declared options, gradients protocol."""

import json
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
import pytest
import torch

from layer_sim import ConfigError, InputError, UnknownNameError, linear_cka
from layer_sim.measures import Measure, MeasureSpec, available, gram_cka, gram_linear, get, options
from layer_sim.measures._registry import REQUIRED

#: Non-default parameters for every measure that has any (so pickling carries real values).
NON_DEFAULT = {
    "svcca_rho": {"variance": 0.9},
    "svcca_r2": {"variance": 0.95},
    "rbf_cka": {"sigma": 0.4, "debiased": True, "block_size": 7},
    "minibatch_cka": {"kernel": "rbf", "sigma": 0.5, "batch_size": 10, "seed": 3},
    "gradient_cka": {"debiased": False, "buckets": 16, "nonzeros": 2, "seed": 3, "block_size": 7},
    "gradient_nbs": {"buckets": 16, "nonzeros": 4, "seed": 1},
}


def pair(seed=0, n=40):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    return x, np.tanh(x[:, :4] @ rng.standard_normal((4, 5))) + 0.3 * rng.standard_normal((n, 5))


def every_measure():
    return [get(name, **NON_DEFAULT.get(name, {})) for name in available()]


def grads(m, x, y):
    """The gradients a gradient-aware measure needs (any arrays of the features' shapes), else none."""
    return {"x_grad": np.cos(x), "y_grad": np.sin(y)} if m.uses_gradients else {}


def prepare(m, x, grad):
    return m.prepare(x, grad=grad) if m.uses_gradients else m.prepare(x)


def test_every_declared_option_is_covered_here():
    for name in available():
        declared = options(name)
        assert set(NON_DEFAULT.get(name, {})) == set(declared), name  # the table above stays complete
        assert set(get(name, **NON_DEFAULT.get(name, {})).params) == set(declared)


@pytest.mark.parametrize("m", every_measure(), ids=available())
def test_pickle_round_trip_gives_identical_values_and_spec(m):
    x, y = pair()
    g = grads(m, x, y)
    back = pickle.loads(pickle.dumps(m))
    assert back.spec == m.spec and back.name == m.name and back.symmetric == m.symmetric
    assert back(x, y, **g) == m(x, y, **g)  # bit-identical: the same functions and parameters
    rebuilt = get(m.spec)
    assert rebuilt(x, y, **g) == m(x, y, **g)
    assert rebuilt.spec == m.spec and hash(rebuilt.spec) == hash(m.spec)
    # prepared states pickle too (e.g. to ship a layer's preparation to another process)
    px, py = pickle.loads(pickle.dumps((prepare(m, x, g.get("x_grad")), prepare(m, y, g.get("y_grad")))))
    assert float(m.score(px, py)) == m(x, y, **g)


def test_spawned_worker_computes_the_same_values():
    x, y = pair(1)
    measures = every_measure()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        remote = list(pool.map(partial(_call, x=x, y=y), measures))
    assert remote == [m(x, y, **grads(m, x, y)) for m in measures]


def _call(m, *, x, y):
    return m(x, y, **grads(m, x, y))


def test_spec_is_canonical_hashable_and_json():
    spec = get("rbf_cka", sigma=0.4).spec
    assert spec == MeasureSpec("rbf_cka", {"sigma": 0.4, "debiased": False, "block_size": None})
    assert spec == get("rbf_cka", sigma=0.4, debiased=False, block_size=None).spec  # defaults filled in
    assert spec != get("rbf_cka").spec and spec != get("rbf_cka", sigma=0.4, debiased=True).spec
    assert get("rbf_cka", sigma=1).spec == get("rbf_cka", sigma=1.0).spec  # values normalised
    assert len({spec, MeasureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))}) == 1
    assert spec.to_dict() == {"name": "rbf_cka", "params": {"block_size": None, "debiased": False, "sigma": 0.4}}
    assert get("linear_cka").spec == MeasureSpec("linear_cka") and get("linear_cka").params == {}
    with pytest.raises(ConfigError, match="parameter sigma must be a JSON scalar"):
        MeasureSpec("rbf_cka", {"sigma": [0.4]})
    with pytest.raises(ConfigError, match="parameter sigma must be a JSON scalar"):
        MeasureSpec("rbf_cka", {"sigma": float("nan")})
    with pytest.raises(ConfigError, match="from_dict: expected"):
        MeasureSpec.from_dict({"name": "rbf_cka"})
    with pytest.raises(UnknownNameError, match="cannot be bound to a MeasureSpec"):
        get(spec, sigma=0.8)


def test_registry_holds_names_not_labels():
    # A display label ("CKA (RBF 0.4)") is the caller's; the registry name is an identifier and
    # the spec carries nothing else.
    for name in available():
        assert name.isidentifier() and name == name.lower()
        assert set(get(name, **NON_DEFAULT.get(name, {})).spec.to_dict()) == {"name", "params"}


# --------------------------------------------------------------------------- options are strict


@pytest.mark.parametrize("bad", ["False", "True", 0, 1, None, np.bool_(False)])
def test_every_flag_is_strict(bad):
    x, y = pair()
    with pytest.raises(ConfigError, match="linear_cka: debiased must be True or False"):
        linear_cka(x, y, debiased=bad)
    with pytest.raises(ConfigError, match="rbf_cka: debiased must be True or False"):
        get("rbf_cka", debiased=bad)
    with pytest.raises(ConfigError, match="gram_cka: debiased must be True or False"):
        gram_cka(gram_linear(x), gram_linear(y), debiased=bad)


@pytest.mark.parametrize("name", [["linear_cka"], ("linear_cka",), None, 3, b"linear_cka", {"linear_cka"}])
def test_a_non_string_measure_name_is_an_unknown_name(name):
    with pytest.raises(UnknownNameError, match="measure must be a registry name"):
        get(name)


def test_misspelt_or_wrongly_typed_options():
    with pytest.raises(UnknownNameError, match=r"rbf_cka: unknown option\(s\) sigam; accepted: sigma, debiased, block_size"):
        get("rbf_cka", sigam=0.4)
    with pytest.raises(UnknownNameError, match=r"linear_cka: unknown option\(s\) debiased"):
        get("linear_cka", debiased=True)  # the debiased estimator is its own registry name
    with pytest.raises(UnknownNameError, match="minibatch_cka: kernel: unknown value"):
        get("minibatch_cka", kernel=["rbf"], batch_size=10)
    with pytest.raises(ConfigError, match="minibatch_cka: batch_size is required"):
        get("minibatch_cka", kernel="rbf")
    with pytest.raises(ConfigError, match="minibatch_cka: seed must be an integer >= 0"):
        get("minibatch_cka", batch_size=10, seed=2**63)  # beyond int64
    with pytest.raises(ConfigError, match="sigma must be a finite number"):
        get("rbf_cka", sigma=True)
    assert options("minibatch_cka")["batch_size"] is REQUIRED


# --------------------------------------------------------------------------- gradients protocol


def test_measures_without_gradients_refuse_them_clearly():
    x, y = pair()
    assert {m.name for m in every_measure() if m.uses_gradients} == {"gradient_cka", "gradient_nbs"}
    for m in (m for m in every_measure() if not m.uses_gradients):
        with pytest.raises(InputError, match=f"{m.name}: does not use gradients"):
            m.prepare(x, grad=x)
        with pytest.raises(InputError, match="does not use gradients"):
            m(x, y, x_grad=x, y_grad=y)


def _product_kernel_state(X, G):
    """A gradient-aware toy: the state is the kernel (X X^T) o (G G^T) (Tang et al.'s form)."""
    return _Kernel(X.shape[0], gram_linear(X) * gram_linear(G))


class _Kernel:
    def __init__(self, n, K):
        self.n, self.K = n, K


def _kernel_cka(a, b):
    return gram_cka(a.K, b.K)


def test_a_gradient_aware_measure_receives_features_and_gradients():
    x, y = pair(2)
    gx, gy = np.cos(x), np.sin(y)
    m = Measure("toy_gradient_cka", _product_kernel_state, _kernel_cka, uses_gradients=True)
    expected = gram_cka((x @ x.T) * (gx @ gx.T), (y @ y.T) * (gy @ gy.T))
    assert float(m(x, y, x_grad=gx, y_grad=gy)) == pytest.approx(expected, abs=1e-14)
    assert float(m.score(m.prepare(x, grad=gx), m.prepare(y, grad=gy))) == pytest.approx(expected, abs=1e-14)
    with pytest.raises(InputError, match="toy_gradient_cka: needs the gradients of x"):
        m.prepare(x)
    with pytest.raises(InputError, match=r"x_grad has shape \(40, 5\), x has \(40, 6\)"):
        m.prepare(x, grad=gy)
    bad = gx.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InputError, match="x_grad contains 1 NaN or Inf"):
        m.prepare(x, grad=bad)
    assert isinstance(m(torch.from_numpy(x), y, x_grad=gx, y_grad=gy), torch.Tensor)
