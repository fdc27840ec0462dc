"""cka_loss: 1 - linear CKA as a training loss; gradcheck, torch.func.grad and vmap, dtype kept."""

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from layer_sim import InputError
from layer_sim.measures import cka_loss

from _references import ref_cka, song_cka  # noqa: E402 (rootdir import, as test_cka.py)


def pair(seed=0, n=20, p=5, q=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=dtype)
    return x, torch.tanh(x[:, :q] @ torch.randn(q, q, generator=g, dtype=dtype)) + 0.3 * torch.randn(n, q, generator=g, dtype=dtype)


@pytest.mark.parametrize("debiased", [False, True])
def test_value_is_one_minus_the_reference_cka(debiased):
    x, y = pair()
    K, L = (x @ x.T).numpy(), (y @ y.T).numpy()
    want = 1 - (song_cka(K, L) if debiased else ref_cka(K, L))
    assert float(cka_loss(x, y, debiased=debiased)) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_gradcheck_in_float64(debiased):
    x, y = pair(1, n=12, p=4, q=3)
    assert torch.autograd.gradcheck(lambda a, b: cka_loss(a, b, debiased=debiased),
                                    (x.requires_grad_(True), y.requires_grad_(True)))
    assert torch.autograd.gradgradcheck(lambda a, b: cka_loss(a, b), (x, y))


def test_vmap_equals_the_loop_and_func_grad_works():
    xs = torch.randn(6, 15, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ys = torch.randn(6, 15, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    batched = vmap(cka_loss)(xs, ys)
    looped = torch.stack([cka_loss(a, b) for a, b in zip(xs, ys)])
    torch.testing.assert_close(batched, looped, rtol=1e-13, atol=1e-14)
    g_batched = vmap(grad(cka_loss))(xs, ys)  # per-pair gradients in one call
    g_looped = torch.stack([torch.autograd.grad(cka_loss(a.requires_grad_(True), b), a)[0] for a, b in zip(xs.clone(), ys)])
    torch.testing.assert_close(g_batched, g_looped, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(vmap(lambda a, b: cka_loss(a, b, debiased=True))(xs, ys),
                               torch.stack([cka_loss(a, b, debiased=True) for a, b in zip(xs, ys)]), rtol=1e-13, atol=1e-14)


def test_dtype_is_kept_and_float32_is_close_and_large_values_do_not_overflow():
    x, y = pair(4, n=200, p=30, q=10)
    v32 = cka_loss(x.float(), y.float())
    assert v32.dtype == torch.float32
    assert float(v32) == pytest.approx(float(cka_loss(x, y)), abs=1e-5)
    big = cka_loss(x.float() * 1e30, y.float() * 1e-30)  # fourth powers would overflow/underflow float32
    assert torch.isfinite(big) and float(big) == pytest.approx(float(v32), abs=1e-5)


def test_minimising_it_aligns_a_linear_student():
    x, _ = pair(5, n=100, p=6, q=4)
    gen = torch.Generator().manual_seed(6)
    target = x @ torch.randn(6, 3, dtype=torch.float64, generator=gen)  # reachable: a linear map of x
    w = torch.randn(6, 3, dtype=torch.float64, generator=gen).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.05)
    first = float(cka_loss(x @ w, target).detach())
    for _ in range(300):
        opt.zero_grad()
        cka_loss(x @ w, target).backward()
        opt.step()
    assert float(cka_loss(x @ w, target).detach()) < min(first / 10, 1e-3)


def test_shapes_are_checked():
    x, y = pair()
    with pytest.raises(InputError, match="cka_loss: x and y must hold the same examples"):
        cka_loss(x, y[:5])
    with pytest.raises(InputError, match="cka_loss: y must be a 2-d floating tensor"):
        cka_loss(x, y.long())
    with pytest.raises(InputError, match="cka_loss: x must be a 2-d floating tensor .* got ndarray"):
        cka_loss(np.ones((3, 2)), y)
