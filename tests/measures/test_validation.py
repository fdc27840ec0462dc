"""The input gate and the registry: every message names the problem, the shape found and the fix."""

import re

import numpy as np
import pytest
import scipy.sparse
import torch

from layer_sim import InputError, StreamingCCA, StreamingLinearCKA, UnknownNameError, linear_cka_matrix
from layer_sim.measures import Measure, available, get, register
from layer_sim.measures._validation import accumulation_dtype, as_matrix, check_pair, to_output


def test_rank_one_is_rejected_with_the_fix():
    message = r"m: x must have shape \(n_examples, n_features\), got shape \(5,\); reshape"
    with pytest.raises(InputError, match=message):
        as_matrix(np.arange(5.0), fn="m")


def test_higher_rank_is_flattened_per_example():
    t = as_matrix(np.arange(24.0).reshape(4, 2, 3))
    assert t.shape == (4, 6) and t.dtype == torch.float64
    assert t[1].tolist() == list(np.arange(6.0, 12.0))


@pytest.mark.parametrize(
    "value, message",
    [
        (np.array([["a", "b"], ["c", "d"]]), "must be numeric, got dtype <U1"),
        (np.array([[1, None], [2, 3]], dtype=object), "must be numeric, got dtype object"),
        (np.ones((3, 2), dtype=complex), "must be real, got complex dtype"),
        (np.ones((1, 3)), r"x has 1 example\(s\) \(shape=\(1, 3\)\) while a minimum of 2 is required"),
        (np.ones((3, 0)), r"x has no features \(shape=\(3, 0\)\)"),
        (np.array([[1.0, np.nan], [np.inf, 0.0], [1.0, 2.0]]), "x contains 2 NaN or Inf value"),
    ],
)
def test_bad_arrays(value, message):
    with pytest.raises(InputError, match=message):
        as_matrix(value)


def test_finite_large_values_pass_even_if_their_sum_overflows():
    # The cheap all-finite check sums first; an overflowing sum must not be reported as NaN/Inf.
    big = np.full((4, 2), 1e308)
    assert torch.isfinite(as_matrix(big)).all()


def test_dtypes_are_accumulated_in_float64_and_torch_keeps_graph():
    assert as_matrix(np.ones((2, 2), dtype=np.int32)).dtype == torch.float64
    assert as_matrix(np.ones((2, 2), dtype=bool)).dtype == torch.float64
    x = torch.ones(3, 2, dtype=torch.float32, requires_grad=True)
    t = as_matrix(x)
    assert t.dtype == torch.float64 and t.requires_grad and t.device == x.device


def test_accumulation_dtype_is_float32_only_on_mps():
    assert accumulation_dtype(torch.device("cpu")) == torch.float64
    assert accumulation_dtype(torch.device("mps")) == torch.float32


def test_check_pair_rows_and_output_kind():
    with pytest.raises(InputError, match=r"f: x and y must have the same number of examples \(rows\), got 3 and 4"):
        check_pair(np.ones((3, 2)), np.ones((4, 2)), fn="f")
    assert check_pair(np.ones((3, 2)), np.ones((3, 5)), fn="f")[2] is True
    assert check_pair(torch.ones(3, 2), np.ones((3, 5)), fn="f")[2] is False
    value = torch.tensor(0.5, dtype=torch.float64)
    assert to_output(value, True) == 0.5 and isinstance(to_output(value, True), float)
    assert to_output(value, False) is value


def test_unknown_measure_lists_the_available_names():
    with pytest.raises(UnknownNameError, match="unknown measure 'cka'; available: .*linear_cka, linear_cka_debiased"):
        get("cka")
    for name in ("linear_cka", "linear_cka_debiased", "rbf_cka", "linear_hsic", "minibatch_cka"):
        assert name in available()


def test_measure_passes_through_but_refuses_new_parameters():
    m = get("rbf_cka", sigma=0.5)
    assert get(m) is m and m.params["sigma"] == 0.5
    with pytest.raises(UnknownNameError, match=r"parameters \['sigma'\] cannot be bound to an existing Measure"):
        get(m, sigma=1.0)


def test_a_name_registers_once():
    with pytest.raises(RuntimeError, match="measure 'linear_cka' registered twice"):
        register("linear_cka")(lambda: None)


def test_measure_call_is_prepare_then_score_and_checks_rows():
    m = get("linear_cka")
    assert isinstance(m, Measure) and m.symmetric and m.min_n == 2
    assert get("linear_cka_debiased").min_n == 4
    message = r"linear_cka: x and y must have the same number of examples \(rows\), got 5 and 6"
    with pytest.raises(InputError, match=message):
        m.score(m.prepare(np.eye(5)), m.prepare(np.eye(6)))


def test_unknown_parameter_is_a_value_error_naming_the_accepted_ones():
    with pytest.raises(UnknownNameError, match=r"linear_cka: unknown option\(s\) sigma; accepted: none"):
        get("linear_cka", sigma=1.0)
    with pytest.raises(UnknownNameError, match="rbf_cka: unknown option.* bandwidth; accepted: sigma, debiased, block_size"):
        get("rbf_cka", bandwidth=1.0)


# --------------------------------------------------------------------------- inputs refused or accepted (issue 10 §2)

_PARAMS = {"minibatch_cka": {"batch_size": 5}}


def _every_entry_point():
    """(label, f(x, y)) for every public way to give a measure a representation."""
    out = [(name, _with_gradients(get(name, **_PARAMS.get(name, {})))) for name in available()]
    out.append(("linear_cka_matrix", lambda x, y: linear_cka_matrix({"x": x}, {"y": y})))
    out.append(("StreamingLinearCKA", lambda x, y: StreamingLinearCKA().update(x, y).value()))
    out.append(("StreamingCCA", lambda x, y: StreamingCCA().update(x, y).value()))
    return out


def _good(n=12, p=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, p))


def _with_gradients(m):
    """A gradient-aware measure called with fixed good gradients, so the bad input is the features'."""
    if not m.uses_gradients:
        return m
    gx, gy = np.cos(_good()), np.sin(_good(seed=1))
    return lambda x, y: m(x, y, x_grad=gx, y_grad=gy)


ENTRY_POINTS = _every_entry_point()


BAD_INPUTS = {
    "coo": (lambda a: torch.from_numpy(a).to_sparse(), r"is a sparse tensor \(layout torch.sparse_coo\).*to_dense\(\)"),
    "csr": (lambda a: torch.from_numpy(a).to_sparse_csr(), r"is a sparse tensor \(layout torch.sparse_csr\)"),
    "csc": (lambda a: torch.from_numpy(a).to_sparse_csc(), r"is a sparse tensor \(layout torch.sparse_csc\)"),
    "scipy-csr": (scipy.sparse.csr_matrix, r"is a scipy.sparse csr_matrix; .*toarray\(\)"),
    "scipy-coo": (scipy.sparse.coo_array, r"is a scipy.sparse coo_array"),
    "masked": (lambda a: np.ma.array(a, mask=np.eye(*a.shape, dtype=bool)), r"is a masked array with 3 masked value\(s\)"),
    "str": (lambda a: a.astype(str), "must be numeric, got dtype <U"),
    "object": (lambda a: a.astype(object), "must be numeric, got dtype object"),
    "datetime": (lambda a: np.zeros(a.shape, dtype="datetime64[s]"), "must be numeric, got dtype datetime64"),
    "complex256": (lambda a: a.astype(np.clongdouble), "must be real, got complex"),
    "None": (lambda a: None, "must be numeric, got dtype object"),
    "longdouble-huge": (lambda a: np.full(a.shape, np.longdouble("1e400")), r"has 36 float128 value\(s\) outside the float64 range"),
    "longdouble-tiny": (lambda a: np.full(a.shape, np.longdouble("1e-400")), "outside the float64 range .*would become inf or 0"),
    # lists and dicts are containers of layers for StreamingLinearCKA, so these two apply elsewhere
    "ragged": (lambda a: [list(r) for r in a[:-1]] + [[1.0]], "is not array-like"),
    "dict": (lambda a: {"a": 1}, "must be numeric, got dtype object"),
    "timedelta": (lambda a: np.zeros(a.shape, dtype="timedelta64[s]"), "must be numeric, got dtype timedelta64"),
    "quantized": (lambda a: torch.quantize_per_tensor(torch.from_numpy(a).float(), 0.1, 0, torch.qint8),
                  r"is a quantized tensor \(torch.qint8\).*dequantize\(\)"),
    "nested": (lambda a: torch.nested.nested_tensor(list(torch.from_numpy(a))), "is a nested tensor"),
    "meta": (lambda a: torch.empty(a.shape, device="meta"), "is on the meta device, which holds shapes but no values"),
    "scalar": (lambda a: 3.0, r"must have shape \(n_examples, n_features\), got shape \(\)"),
}
CASES = [
    pytest.param(f, *BAD_INPUTS[case], id=f"{label}-{case}")
    for label, f in ENTRY_POINTS
    for case in BAD_INPUTS
    if not (label == "StreamingLinearCKA" and case in ("ragged", "dict"))
]


# Our code must warn about nothing (a refused input is one error, no RuntimeWarning beside it); only
# the warnings torch itself gives while these test inputs are built are allowed.
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning")
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype:UserWarning")
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("f, make, message", CASES)
def test_unusable_inputs_are_refused_naming_the_argument(f, make, message):
    x, y = _good(), _good(seed=1)
    with pytest.raises(InputError, match=message) as info:
        f(make(x), y)
    assert re.search(r": x\b", str(info.value)), info.value
    with pytest.raises(InputError, match=message) as info:
        f(x, make(y))
    assert re.search(r": y\b", str(info.value)), info.value


@pytest.mark.parametrize("label, f", ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
def test_longdouble_and_unmasked_arrays_are_accepted_as_their_float64_values(label, f):
    x, y = _good(), _good(seed=1)
    want = f(x, y)
    np.testing.assert_array_equal(f(x.astype(np.longdouble), y), want)
    np.testing.assert_array_equal(f(np.ma.array(x, mask=False), np.ma.masked_invalid(y)), want)
