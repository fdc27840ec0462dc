"""compare(): every entry equals a direct measure call (SimilarityMatrix files and figures: tests/report)."""

import numpy as np
import pytest
import torch
from _toy_measures import batched_toy_cka, toy_cka, toy_r2

from layer_sim.analysis.comparison import SimilarityMatrix, compare
from layer_sim import linear_hsic
from layer_sim.errors import DegenerateInputError, InputError, UnknownNameError


def _layers(seed, widths=(3, 5, 4), n=30):
    rng = np.random.default_rng(seed)
    return {f"l{k}": rng.normal(size=(n, p)) for k, p in enumerate(widths)}


def _numpy_cka(x, y):
    # Gram route (independent of the toy's feature route): <HKH, HLH> / (||HKH|| ||HLH||).
    n = x.shape[0]
    H = np.eye(n) - 1 / n
    K, L = H @ x @ x.T @ H, H @ y @ y.T @ H
    return np.sum(K * L) / (np.linalg.norm(K) * np.linalg.norm(L))


def test_values_equal_direct_calls_and_independent_formula():
    a, b = _layers(0), _layers(1, widths=(2, 6))
    m = toy_cka()
    s = compare(a, b, measure=m)
    assert s.rows == ("l0", "l1", "l2") and s.cols == ("l0", "l1") and s.measure == "toy_cka"
    for i, r in enumerate(s.rows):
        for j, c in enumerate(s.cols):
            assert s.values[i, j] == pytest.approx(m(a[r], b[c]), rel=1e-12)
            assert s.values[i, j] == pytest.approx(_numpy_cka(a[r], b[c]), rel=1e-10)


def test_self_comparison_is_symmetric_with_unit_diagonal():
    a = _layers(2)
    s = compare(a, measure=toy_cka())
    np.testing.assert_allclose(s.values, s.values.T, rtol=0, atol=0)
    np.testing.assert_allclose(np.diag(s.values), 1.0, rtol=1e-12)
    assert s.rows == s.cols


def test_asymmetric_measure_keeps_direction():
    a, b = _layers(3), _layers(4)
    m = toy_r2()
    s_ab = compare(a, b, measure=m)
    s_ba = compare(b, a, measure=m)
    s_aa = compare(a, measure=m)  # b=None with an asymmetric measure: both triangles computed
    for i, r in enumerate(a):
        for j, c in enumerate(b):
            x, y = a[r] - a[r].mean(0), b[c] - b[c].mean(0)
            beta = np.linalg.lstsq(x, y, rcond=None)[0]
            want = 1 - np.sum((y - x @ beta) ** 2) / np.sum(y**2)
            assert s_ab.values[i, j] == pytest.approx(want, rel=1e-9)
            assert s_ba.values[j, i] == pytest.approx(m(b[c], a[r]), rel=1e-12)
    assert not np.allclose(s_aa.values, s_aa.values.T)  # R^2 from 3 to 5 features != 5 to 3
    assert s_aa.values[0, 1] == pytest.approx(m(a["l0"], a["l1"]), rel=1e-12)


def test_each_layer_prepared_once():
    calls = []
    base = toy_cka()
    counted = type(base)("toy_cka", lambda x: calls.append(1) or base.prepare_fn(x), base.score_fn)
    compare(_layers(5), _layers(6), measure=counted)
    assert len(calls) == 6  # 3 + 3 layers, not 3 * 3 pairs


def test_matrix_fn_is_used_when_present():
    a = _layers(7)
    s = compare(a, measure=batched_toy_cka())
    np.testing.assert_allclose(s.values - 10, compare(a, measure=toy_cka()).values, rtol=1e-12)


def test_torch_input_and_device():
    a = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in _layers(8).items()}
    s = compare(a, measure=toy_cka(), device="cpu")
    ref = compare({k: v.double().numpy() for k, v in a.items()}, measure=toy_cka())
    np.testing.assert_allclose(s.values, ref.values, rtol=1e-12)


def test_errors_name_the_problem():
    a = _layers(9)
    with pytest.raises(InputError, match="same number of examples"):
        compare(a, _layers(1, n=20), measure=toy_cka())
    with pytest.raises(InputError, match="layer 'bad'.*NaN"):
        compare({"bad": np.full((5, 2), np.nan)}, measure=toy_cka())
    with pytest.raises(InputError, match="no layers"):
        compare({}, measure=toy_cka())
    with pytest.raises(InputError, match="mapping"):
        compare(np.zeros((4, 4)), measure=toy_cka())
    with pytest.raises(UnknownNameError, match="unknown measure 'nope'"):
        compare(a, measure="nope")


def _matrix():
    return SimilarityMatrix(
        np.array([[1.0, 0.25, 1 / 3], [0.5, 0.125, 2.0]]), ("act1", "act2"), ("x", "y", "z"),
        "rbf_cka", {"sigma": 0.4}, row_label="network 0", col_label="network 1",
    )


def test_to_frame_and_best_match():
    s = _matrix()
    frame = s.to_frame()
    assert list(frame.index) == ["act1", "act2"] and list(frame.columns) == ["x", "y", "z"]
    assert frame.loc["act2", "z"] == 2.0
    assert s.best_match() == {"act1": "x", "act2": "z"}


def test_shape_mismatch_rejected():
    with pytest.raises(InputError, match="expected"):
        SimilarityMatrix(np.zeros((2, 2)), ("a",), ("b", "c"), "m")


@pytest.mark.parametrize("name, params", [("linear_cka", {}), ("pwcca", {}), ("rbf_cka", {"sigma": 0.4})])
def test_registry_measures_equal_direct_calls(name, params):
    from layer_sim.measures import get

    a, b = _layers(10, widths=(3, 6)), _layers(11, widths=(4, 2, 5))
    s = compare(a, b, measure=name, **params)
    m = get(name, **params)
    assert s.measure == name and s.params == dict(m.params)
    want = np.array([[m(a[r], b[c]) for c in b] for r in a])
    np.testing.assert_allclose(s.values, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("measure", ["linear_cka", "rbf_cka", "cca_rho", "svcca_rho", "pwcca", "procrustes"])
def test_a_dead_layer_is_named_in_the_error(measure):
    # An all-zero (dead ReLU) layer makes every normalised index undefined; the error must say
    # which layer, since "y is constant" is useless in a 6 x 6 comparison.
    rng = np.random.default_rng(0)
    reps = {"act1": rng.standard_normal((40, 5)), "act2": np.zeros((40, 3))}
    with pytest.raises(DegenerateInputError, match=f"{measure}: layer 'act2' is constant"):
        compare(reps, measure=measure)


def test_linear_hsic_of_a_dead_layer_is_zero_as_for_the_direct_call():
    rng = np.random.default_rng(0)
    reps = {"act1": rng.standard_normal((40, 5)), "act2": np.zeros((40, 3))}
    s = compare(reps, measure="linear_hsic")
    assert s.values[0, 1] == s.values[1, 0] == linear_hsic(reps["act1"], reps["act2"]) == 0.0


def test_a_measure_that_uses_gradients_receives_each_layers_gradients():
    from _toy_measures import toy_gradient_cka

    from layer_sim.representations import Representations

    a, b = _layers(12), _layers(13, widths=(2, 6))
    ga, gb = _layers(14), _layers(15, widths=(2, 6))
    ra = Representations(a, gradients=Representations(ga))
    rb = Representations(b, gradients=Representations(gb))
    s = compare(ra, rb, measure=toy_gradient_cka())
    want = np.array([[_numpy_cka(ga[r], gb[c]) for c in gb] for r in ga])
    np.testing.assert_allclose(s.values, want, rtol=1e-10)
    with pytest.raises(InputError, match="toy_gradient_cka uses gradients, but b has none.*gradients=True"):
        compare(ra, b, measure=toy_gradient_cka())
    partial = Representations(b, gradients=Representations({"l0": gb["l0"]}))
    with pytest.raises(InputError, match="b has no gradients for layer 'l1'"):
        compare(ra, partial, measure=toy_gradient_cka())
