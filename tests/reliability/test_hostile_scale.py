"""Scale as a diverging network produces it: indexes give the value of x for c*x wherever c*x is
representable, on every route (the issue's section 1), here for the fp32 fast path of the matrix."""

import numpy as np
import pytest

from layer_sim import linear_cka, linear_cka_matrix


def _layers(n, widths, seed):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 4))
    return {f"l{i}": np.hstack([base, rng.standard_normal((n, p - 4))]) for i, p in enumerate(widths)}


@pytest.mark.parametrize("scale", [1e37, 1e30, 1e-30, 1e-37, 2.0**120, 2.0**-120])
@pytest.mark.parametrize("n, widths", [(60, (6, 10)), (20, (40, 90))], ids=["feature route (n > p)", "Gram route (p > n)"])
def test_fp32_matrix_of_float32_activations_at_any_representable_scale(scale, n, widths):
    a, b = _layers(n, widths, 0), _layers(n, widths[::-1], 1)
    want = np.array([[linear_cka(x, y) for y in b.values()] for x in a.values()])  # float64, unit scale
    big_a = {k: (v * scale).astype(np.float32) for k, v in a.items()}
    big_b = {k: (v * scale).astype(np.float32) for k, v in b.items()}
    assert all(np.isfinite(v).all() and (v != 0).all() for v in (*big_a.values(), *big_b.values()))
    got = linear_cka_matrix(big_a, big_b, precision="fp32")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)  # the fp32 path's stated bound
