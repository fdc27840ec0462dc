"""The input gate and the registry: every message names the problem, the shape found and the fix."""

import numpy as np
import pytest
import torch

from layer_sim import InputError, UnknownNameError
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
