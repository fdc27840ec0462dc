"""The every-pair engine (``linear_cka_matrix``, ``Measure.matrix_fn``, compare) vs a plain per-pair loop."""

import numpy as np
import pytest
import torch

from layer_sim import linear_cka_matrix
from layer_sim.errors import DegenerateInputError, InputError, UnknownNameError
from layer_sim.measures import all_pairs, get


def plain_cka(x, y):
    """Kornblith et al. (2019) feature-space linear CKA, float64, written independently here."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    return np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def plain_matrix(xs, ys):
    return np.array([[plain_cka(x, y) for y in ys] for x in xs])


def relu_layers(n, widths, seed, *, offset=0.0):
    """Unit-scale ReLU features of a random MLP (PyTorch-default-like init), plus an optional offset."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, widths[0]))
    out = []
    for p_in, p_out in zip(widths[:-1], widths[1:]):
        h = np.maximum(h @ rng.uniform(-1, 1, (p_in, p_out)) * np.sqrt(3.0 / p_in), 0.0)
        out.append(h + offset)
    return out


@pytest.mark.parametrize("n, widths", [(400, (30, 20, 50, 7)), (40, (60, 120, 90, 200))])  # n > p, p > n
def test_matrix_equals_per_pair_loop(n, widths):
    xs = relu_layers(n, widths, 0)
    ys = relu_layers(n, widths[:3], 1)
    M = linear_cka_matrix(xs, ys)
    assert isinstance(M, np.ndarray) and M.shape == (3, 2)
    np.testing.assert_allclose(M, plain_matrix(xs, ys), rtol=0, atol=1e-12)


def test_chunked_merge_with_large_offset(monkeypatch):
    # Tiny chunks add many GEMMs into one state; a +1e4 common offset would wreck raw (unshifted) sums.
    monkeypatch.setattr(all_pairs, "_CHUNK_BYTES", 8 * 64 * 37)
    xs = relu_layers(500, (20, 16, 12), 2, offset=1e4)
    ys = relu_layers(500, (20, 9, 30), 3, offset=-3e4)
    expected = plain_matrix([x - 1e4 for x in xs], [y + 3e4 for y in ys])  # centring removes the offset
    np.testing.assert_allclose(linear_cka_matrix(xs, ys), expected, rtol=0, atol=1e-10)


def test_invariances_give_one():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 12))
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    M = linear_cka_matrix({"x": x}, {"xq": 3.5 * x @ q - 7.0, "x": x})
    np.testing.assert_allclose(M, [[1.0, 1.0]], atol=1e-12)


def test_fp32_mode_within_documented_bound():
    xs = relu_layers(10_000, (64, 128, 128, 10), 5)
    ys = relu_layers(10_000, (64, 128, 10), 6)
    ref = plain_matrix(xs, ys)
    xs32 = [torch.from_numpy(x.astype(np.float32)) for x in xs]
    ys32 = [torch.from_numpy(y.astype(np.float32)) for y in ys]
    # Reference on the same float32-rounded inputs, so only the fp32 products are measured.
    ref32 = plain_matrix([x.numpy() for x in xs32], [y.numpy() for y in ys32])
    fast = linear_cka_matrix(xs32, ys32, precision="fp32")
    assert isinstance(fast, torch.Tensor) and fast.dtype == torch.float64
    assert np.abs(fast.numpy() - ref32).max() <= 1e-6
    assert np.abs(linear_cka_matrix(xs32, ys32).numpy() - ref32).max() <= 1e-9
    assert np.abs(ref32 - ref).max() < 1e-5  # sanity: the test data is not degenerate


@pytest.mark.parametrize("precision, atol", [("fp64", 1e-12), ("fp32", 1e-6)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_fast_path_equals_the_plain_loop(monkeypatch, precision, atol, dtype):
    # Tiny chunks (many GEMMs adding into one accumulator, a reused buffer), a tiny staircase block
    # (several row blocks per symmetric product), tiny fp32 flushes (float32 sums added into float64
    # many times), float32 features widened in the fp64 copy, a layer scaled by a power of two while
    # copied (max |x| = 2^200) and a large common offset (the shift): each against the plain loop.
    monkeypatch.setattr(all_pairs, "_CHUNK_BYTES", 8 * 64 * 23)
    monkeypatch.setattr(all_pairs, "_STAIR", 5)
    monkeypatch.setattr(all_pairs, "_FLUSH_ROWS", 64)
    xs = relu_layers(700, (20, 16, 12, 13), 20, offset=1e3)
    ys = relu_layers(700, (20, 9, 30), 21)
    ys[1] = ys[1] * 2.0**100  # float32 holds it, but the GEMM dtype needs it rescaled
    xs, ys = [x.astype(dtype) for x in xs], [y.astype(dtype) for y in ys]
    centred = [x - x.mean(0, dtype=np.float64) for x in xs]
    expected = plain_matrix(centred, ys)
    np.testing.assert_allclose(linear_cka_matrix(xs, ys, precision=precision), expected, rtol=0, atol=atol)
    np.testing.assert_allclose(linear_cka_matrix(xs, xs, precision=precision), plain_matrix(centred, centred),
                               rtol=0, atol=atol)
    if precision == "fp64":  # the registry's one-pass matrix: cross, and the symmetric (SYRK) product
        m = get("linear_cka")
        pa, pb = [m.prepare(x) for x in xs], [m.prepare(y) for y in ys]
        np.testing.assert_allclose(m.matrix_fn(pa, pb).numpy(), expected, rtol=0, atol=atol)
        np.testing.assert_allclose(m.matrix_fn(pa, pa).numpy(), plain_matrix(centred, centred), rtol=0, atol=atol)


@pytest.mark.parametrize("name, normalise", [("linear_cka", True), ("linear_hsic", False)])
def test_matrix_fn_on_prepared_states_equals_score(name, normalise):
    m = get(name)
    xs = relu_layers(300, (10, 40, 8, 25), 9)
    ys = relu_layers(300, (10, 6, 30), 10)
    pa, pb = [m.prepare(x) for x in xs], [m.prepare(y) for y in ys]
    for a, b in ((pa, pb), (pa, pa)):  # cross GEMM, and the symmetric (SYRK) case
        got = all_pairs.linear_state_matrix(a, b, name=name, score=m.score, normalise=normalise).numpy()
        want = np.array([[float(m.score(s, t)) for t in b] for s in a])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    if normalise:
        np.testing.assert_allclose(
            all_pairs.linear_state_matrix(pa, pb, name=name, score=m.score, normalise=True).numpy(), plain_matrix(xs, ys), atol=1e-12
        )


def test_errors_name_the_problem():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((50, 4))
    with pytest.raises(DegenerateInputError, match="flat"):
        linear_cka_matrix({"a": x}, {"flat": np.ones((50, 3)), "b": x})
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        linear_cka_matrix([x], [bad])
    with pytest.raises(InputError, match="same number of examples"):
        linear_cka_matrix([x], [x[:40]])
    with pytest.raises(InputError, match="no representations"):
        linear_cka_matrix([], [x])
    with pytest.raises(InputError, match="list or a dict"):
        linear_cka_matrix(x, [x])
    with pytest.raises(UnknownNameError, match="fp16"):
        linear_cka_matrix([x], [x], precision="fp16")


def test_compare_uses_matrix_fn_and_matches_plain_loop():
    from layer_sim import compare

    assert get("linear_cka").matrix_fn is not None and get("linear_hsic").matrix_fn is not None
    assert get("linear_cka_debiased").matrix_fn is None  # the debiased estimator keeps the per-pair route
    xs = relu_layers(250, (12, 30, 9), 12)
    ys = relu_layers(250, (12, 7, 40), 13)
    s = compare(dict(zip("ab", xs)), dict(zip("cd", ys)), measure="linear_cka")
    np.testing.assert_allclose(s.values, plain_matrix(xs, ys), rtol=0, atol=1e-12)
    both = compare(dict(zip("ab", xs)))  # b=None: the symmetric (SYRK) product
    np.testing.assert_allclose(both.values, plain_matrix(xs, xs), rtol=0, atol=1e-12)



def test_compare_runs_one_engine_pass_on_the_raw_layers(monkeypatch):
    # The registry's linear CKA keeps each validated layer as it is (float32 stays float32, no copy)
    # and compare's matrix_fn runs one engine pass for all pairs, self terms included: the work of
    # linear_cka_matrix. prepare only proves from a few rows that no layer is constant.
    from layer_sim import compare

    xs = [torch.from_numpy(x.astype(np.float32)) for x in relu_layers(400, (12, 30, 9, 20), 14)]
    ys = [torch.from_numpy(y.astype(np.float32)) for y in relu_layers(400, (12, 25, 7), 15)]
    m = get("linear_cka")
    state = m.prepare(xs[0])
    assert state.route == "engine" and state.data.dtype == torch.float32 and state.data.data_ptr() == xs[0].data_ptr()
    passes = []
    real = all_pairs._CoMoments.update
    monkeypatch.setattr(all_pairs._CoMoments, "update", lambda self, *a, **k: passes.append(1) or real(self, *a, **k))
    s = compare(dict(zip("abc", xs)), dict(zip("de", ys)), measure="linear_cka")
    assert len(passes) == 1
    ref = plain_matrix([x.numpy() for x in xs], [y.numpy() for y in ys])
    np.testing.assert_allclose(s.values, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.values, linear_cka_matrix(xs, ys).numpy(), rtol=0, atol=1e-13)
    # layer_identification reuses prepared layers across pairs: self terms are computed once
    pa = [m.prepare(x) for x in xs]
    pb = [m.prepare(y) for y in ys]
    passes.clear()
    first = m.matrix_fn(pa, pb)
    assert all("self_norm" in st.cache for st in pa + pb)
    np.testing.assert_array_equal(m.matrix_fn(pa, pb).numpy(), first.numpy())
    np.testing.assert_allclose(m.matrix_fn(pa, pa).numpy(), plain_matrix(*[[x.numpy() for x in xs]] * 2), atol=1e-12)
    assert len(passes) == 3


def test_a_layer_not_proven_varying_gets_the_exact_test_in_prepare():
    # Every row the certificate samples (9 evenly spaced ones) equals row 0, and only row 1
    # differs: prepare cannot prove the layer varies from the sample, so it runs the exact test
    # (and computes the self term) instead of leaving both to the engine.
    x = np.tile(np.random.default_rng(18).standard_normal(4), (50, 1))
    x[1] += 1e-3
    m = get("linear_cka")
    state = m.prepare(x)
    assert state.self_norm is not None and state.degenerate is None  # the exact test: not constant
    assert m.prepare(np.zeros((50, 4))).degenerate.startswith("is constant")
    assert m.prepare(np.random.default_rng(0).standard_normal((50, 4))).self_norm is None  # deferred
    y = np.random.default_rng(19).standard_normal((50, 3))
    assert m(x, y) == pytest.approx(plain_cka(x, y), abs=1e-12)


def test_matrix_fn_with_gram_route_layers_equals_the_plain_loop():
    # n = 30 < 40: the wide layer is prepared on the Gram route, so the matrix falls back to pairs.
    xs = relu_layers(30, (6, 5, 40), 16)
    ys = relu_layers(30, (6, 8), 17)
    for name in ("linear_cka", "linear_hsic"):
        m = get(name)
        pa, pb = [m.prepare(x) for x in xs], [m.prepare(y) for y in ys]
        assert [s.route for s in pa] == ["engine", "gram"]
        got = m.matrix_fn(pa, pb).numpy()
        want = plain_matrix(xs, ys) if name == "linear_cka" else np.array(
            [[np.linalg.norm((x - x.mean(0)).T @ (y - y.mean(0))) ** 2 / 29**2 for y in ys] for x in xs]
        )
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
