"""layer_identification(): known answers, hand-computed accuracy / confusion / jackknife SE."""

import itertools

import numpy as np
import pytest
from _toy_measures import lookup, toy_cka, toy_r2
from scipy.stats import ortho_group

from layer_sim.analysis.identification import layer_identification
from layer_sim.errors import InputError


def _base(seed, n=60, widths=(6, 8, 5, 7)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, p)) for p in widths]


def _rotated_noisy_copy(layers, seed, noise=0.1):
    rng = np.random.default_rng(seed)
    out = {}
    for k, z in enumerate(layers):
        q = ortho_group.rvs(z.shape[1], random_state=rng)
        out[f"layer{k}"] = 3.0 * z @ q + noise * rng.normal(size=z.shape)
    out["output"] = rng.normal(size=(z.shape[0], 2))  # pure noise: excluded by default
    return out


def test_rotated_noisy_copies_are_identified_perfectly():
    base = _base(0)
    nets = [_rotated_noisy_copy(base, seed) for seed in range(1, 5)]
    res = layer_identification(nets, toy_cka())
    assert res.accuracy == 1.0
    assert res.layers == ("layer0", "layer1", "layer2", "layer3")
    assert res.per_layer == {f"layer{k}": 1.0 for k in range(4)}
    np.testing.assert_array_equal(res.confusion, 4 * 3 * np.eye(4, dtype=int))
    assert res.stderr == 0.0
    # The stored scores are the measure applied to the raw layers, pair by pair.
    m = toy_cka()
    assert res.scores[2, 0, 1, 3] == pytest.approx(m(nets[2]["layer1"], nets[0]["layer3"]), rel=1e-12)
    sm = res.matrix(0, 1)
    assert sm.rows == res.layers and sm.row_label == "network 0"
    np.testing.assert_array_equal(sm.values, res.scores[0, 1])


def test_swapped_layers_give_hand_computed_accuracy_and_jackknife():
    # Nets 0-2: layers (Z0, Z1, Z2); net 3 has layers 1 and 2 swapped: (Z0, Z2, Z1).
    base = _base(1, widths=(5, 6, 7))
    nets = [_rotated_noisy_copy(base, s) for s in range(10, 13)]
    swapped = _rotated_noisy_copy([base[0], base[2], base[1]], 13)
    nets.append(swapped)
    res = layer_identification(nets, toy_cka())
    # 12 ordered pairs x 3 layers = 36 predictions. The 6 pairs among nets 0-2 are all right
    # (18); the 6 pairs with net 3 get only layer 0 right (6). Accuracy 24/36.
    assert res.accuracy == pytest.approx(24 / 36)
    assert res.per_layer == pytest.approx({"layer0": 1.0, "layer1": 0.5, "layer2": 0.5})
    np.testing.assert_array_equal(res.confusion, [[12, 0, 0], [0, 6, 6], [0, 6, 6]])
    # Leave out net 3: 1.0. Leave out one of nets 0-2: 2 good pairs (6 right) + 4 pairs with
    # net 3 (1 right each) = 10/18 = 5/9. Mean 2/3; SE^2 = 3/4 * (3 * (1/9)^2 + (1/3)^2) = 1/9.
    np.testing.assert_allclose(res.jackknife, [5 / 9, 5 / 9, 5 / 9, 1.0])
    assert res.stderr == pytest.approx(1 / 3)
    assert res.predictions[3, 0].tolist() == [0, 2, 1] and res.predictions[0, 0].tolist() == [-1, -1, -1]


def test_jackknife_se_matches_textbook_formula_on_random_predictions():
    # Noisy copies with heavy noise: an irregular pattern of right/wrong predictions.
    base = _base(2, n=25, widths=(4, 4, 4, 4))
    nets = [_rotated_noisy_copy(base, s, noise=4.0) for s in range(20, 25)]
    res = layer_identification(nets, toy_cka())
    N = len(nets)
    right = {(a, b): (res.predictions[a, b] == np.arange(4)) for a, b in itertools.permutations(range(N), 2)}
    loo = np.array([
        np.mean([right[p] for p in right if k not in p]) for k in range(N)
    ])
    se = np.sqrt((N - 1) / N * np.sum((loo - loo.mean()) ** 2))
    assert 0 < res.accuracy < 1
    assert res.stderr == pytest.approx(se, rel=1e-12)
    assert res.accuracy == pytest.approx(np.mean(list(right.values())))


def test_asymmetric_measure_is_symmetrised_as_s_ab_plus_s_ba_transposed():
    N, L = 3, 3
    rng = np.random.default_rng(5)
    table = rng.uniform(size=(N * L, N * L))  # table[tag(x), tag(y)] = s(x, y)
    nets = [{f"l{i}": np.full((4, 2), float(a * L + i)) for i in range(L)} for a in range(N)]
    res = layer_identification(nets, lookup(table), exclude=())

    def s(a, i, b, j):
        return table[a * L + i, b * L + j]

    want = np.full((N, N, L), -1)
    wrong_transpose = want.copy()
    unsymmetrised = want.copy()
    for a, b in itertools.permutations(range(N), 2):
        for i in range(L):
            want[a, b, i] = np.argmax([s(a, i, b, j) + s(b, j, a, i) for j in range(L)])
            wrong_transpose[a, b, i] = np.argmax([s(a, i, b, j) + s(b, i, a, j) for j in range(L)])
            unsymmetrised[a, b, i] = np.argmax([s(a, i, b, j) for j in range(L)])
    # The table must tell the three rules apart, or this test could not fail.
    assert (want != wrong_transpose).any() and (want != unsymmetrised).any()
    np.testing.assert_array_equal(res.predictions, want)
    assert res.scores[1, 2, 0, 2] == table[1 * L + 0, 2 * L + 2]  # raw S_AB kept unsymmetrised


def test_two_networks_have_no_stderr():
    base = _base(3)
    res = layer_identification([_rotated_noisy_copy(base, 1), _rotated_noisy_copy(base, 2)], toy_cka())
    assert res.accuracy == 1.0 and res.stderr is None


def test_each_network_prepared_once():
    calls = []
    base = toy_cka()
    counted = type(base)("toy_cka", lambda x: calls.append(1) or base.prepare_fn(x), base.score_fn)
    nets = [_rotated_noisy_copy(_base(4), s) for s in range(5)]
    layer_identification(nets, counted)
    assert len(calls) == 5 * 4  # networks x layers, not pairs x layers


def test_z_test_against_hand_computation():
    base = _base(6, n=25, widths=(4, 4, 4, 4))
    nets = [_rotated_noisy_copy(base, s, noise=3.0) for s in range(30, 34)]
    cka = layer_identification(nets, toy_cka())
    r2 = layer_identification(nets, toy_r2())
    diff = cka.jackknife - r2.jackknife
    se = np.sqrt(3 / 4 * np.sum((diff - diff.mean()) ** 2))
    assert se > 0
    assert cka.z_test(r2) == pytest.approx((cka.accuracy - r2.accuracy) / se, rel=1e-12)
    assert cka.z_test(cka) == 0.0


def test_errors_name_the_problem():
    base = _base(7)
    a, b = _rotated_noisy_copy(base, 1), _rotated_noisy_copy(base, 2)
    with pytest.raises(InputError, match="at least 2 networks"):
        layer_identification([a], toy_cka())
    del b["layer2"]
    with pytest.raises(InputError, match="network 1 has layers"):
        layer_identification([a, b], toy_cka())
    short = {k: v[:30] for k, v in a.items()}
    with pytest.raises(InputError, match="network 1 has 30 examples"):
        layer_identification([a, short], toy_cka())
    with pytest.raises(InputError, match="no layers left"):
        layer_identification([a, a], toy_cka(), exclude=list(a))


def test_a_measure_that_uses_gradients_identifies_layers_from_them():
    from _toy_measures import toy_gradient_cka

    from layer_sim.representations import Representations

    # Features are pure noise; the gradients are rotated noisy copies of one base: only a
    # measure that really receives the gradients can be perfect.
    base = _base(8)
    rng = np.random.default_rng(0)
    nets = [
        Representations({k: rng.normal(size=v.shape) for k, v in g.items()},
                        gradients=Representations(g))  # fmt: skip
        for g in (_rotated_noisy_copy(base, s) for s in range(40, 44))
    ]
    assert layer_identification(nets, toy_gradient_cka()).accuracy == 1.0
    assert layer_identification(nets, toy_cka()).accuracy < 0.75
    with pytest.raises(InputError, match="uses gradients, but reps_list\\[0\\] has none"):
        layer_identification([dict(n) for n in nets], toy_gradient_cka())
