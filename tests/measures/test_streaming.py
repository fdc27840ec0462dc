"""StreamingLinearCKA: one pass over batches == one-shot linear CKA of the stacked rows."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layer_sim import StreamingLinearCKA
from layer_sim.errors import DegenerateInputError, InputError, UnknownNameError


def plain_cka(x, y):
    """Kornblith et al. (2019) linear CKA via centred Grams <K_c, L_c> (a second route), float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def data(n, seed, offset=0.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 7)) * rng.uniform(0.5, 2.0, 7)
    y = np.tanh(x @ rng.standard_normal((7, 5))) + 0.3 * rng.standard_normal((n, 5))
    return x + offset, y - 2 * offset


def feed(acc, x, y, cuts):
    for a, b in zip(cuts[:-1], cuts[1:]):
        acc.update(x[a:b], y[a:b])
    return acc


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 299), max_size=8, unique=True), offset=st.sampled_from([0.0, 1e4]))
def test_streaming_equals_one_shot(cuts, offset):
    x, y = data(300, 0, offset)
    acc = feed(StreamingLinearCKA(), x, y, [0, *sorted(cuts), 300])
    assert acc.n == 300
    assert isinstance(acc.value(), float)
    # the offset is removed exactly by centring, so compare with the offset-free reference
    assert abs(acc.value() - plain_cka(x - offset, y + 2 * offset)) <= 1e-10


def test_offset_data_single_rows_and_uneven_batches():
    x, y = data(200, 1, offset=1e4)
    acc = feed(StreamingLinearCKA(), x, y, [0, 1, 2, 3, 50, 51, 137, 200])
    assert abs(acc.value() - plain_cka(x - 1e4, y + 2e4)) <= 1e-10


def test_multi_layer_form_gives_full_matrix():
    x, y = data(240, 2)
    xs = {"a": x, "b": x[:, :3] ** 2}
    ys = [y, y[:, 1:], np.sin(x)]
    acc = StreamingLinearCKA()
    for a, b in ((0, 100), (100, 101), (101, 240)):
        acc.update({k: v[a:b] for k, v in xs.items()}, [v[a:b] for v in ys])
    expected = np.array([[plain_cka(u, v) for v in ys] for u in xs.values()])
    M = acc.value()
    assert M.shape == (2, 3)
    np.testing.assert_allclose(M, expected, rtol=0, atol=1e-10)
    assert acc.names_x == ("a", "b") and acc.names_y == ("y[0]", "y[1]", "y[2]")


def test_torch_batches_give_tensor_and_fp32_mode_close():
    x, y = data(500, 3)
    tx, ty = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    acc64, acc32 = StreamingLinearCKA(), StreamingLinearCKA(precision="fp32")
    for s in range(0, 500, 128):
        acc64.update(tx[s : s + 128], ty[s : s + 128])
        acc32.update(tx[s : s + 128], ty[s : s + 128])
    ref = plain_cka(tx.double().numpy(), ty.double().numpy())
    v = acc64.value()
    assert isinstance(v, torch.Tensor) and v.ndim == 0 and v.dtype == torch.float64
    assert abs(float(v) - ref) <= 1e-10
    assert abs(float(acc32.value()) - ref) <= 1e-6


def test_state_size_does_not_grow_with_n():
    x, y = data(4000, 4)
    acc = StreamingLinearCKA().update(x[:10], y[:10])
    size = acc.state_bytes()
    # float64 shifts and sums per column, cross and self co-moments
    assert size == 8 * (2 * (7 + 5) + 7 * 5 + 7 * 7 + 5 * 5)
    for s in range(10, 4000, 100):
        acc.update(x[s : s + 100], y[s : s + 100])
    assert acc.state_bytes() == size


def test_errors():
    x, y = data(20, 5)
    with pytest.raises(InputError, match="at least 2 examples, got 0"):
        StreamingLinearCKA().value()
    acc = StreamingLinearCKA().update(x[:1], y[:1])
    with pytest.raises(InputError, match="at least 2 examples, got 1"):
        acc.value()
    with pytest.raises(InputError, match="widths changed"):
        acc.update(x[1:5, :4], y[1:5])
    with pytest.raises(InputError, match="same number of examples"):
        acc.update(x[1:5], y[1:6])
    bad = x[1:5].copy()
    bad[0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        acc.update(bad, y[1:5])
    assert acc.n == 1  # rejected batches leave the state untouched
    with pytest.raises(DegenerateInputError, match=r"StreamingLinearCKA: representation x is constant \(zero variance"):
        StreamingLinearCKA().update(np.ones((10, 3)), y[:10]).value()
    with pytest.raises(UnknownNameError, match="StreamingLinearCKA: precision: unknown value 'half'; available: fp64, fp32"):
        StreamingLinearCKA(precision="half")
