"""Conv layouts against hand reshapes; LeNet-5 extraction with the original library's hooks and shapes; what CCA sees."""


import numpy as np
import pytest
import torch
from torch import nn

from layer_sim.errors import InputError, UnknownNameError
from layer_sim.measures import canonical_correlations, cca, linear_cka
from layer_sim.models import LENET5_LAYER_TYPES, LeNet5
from layer_sim.representations import LAYOUTS, Representations, cca_rows_needed, conv_layout, extract, with_layout

S1_SHAPES = [(6, 24, 24), (6, 12, 12), (16, 8, 8), (16, 4, 4), (120,), (84,), (10,)]


def _maps(n=3, c=4, h=5, w=2, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_the_three_layouts_equal_hand_reshapes():
    a = _maps()
    n, c, h, w = a.shape
    flat = [[float(a[i, k, y, x]) for k in range(c) for y in range(h) for x in range(w)] for i in range(n)]
    chan = [[float(a[i, k, y, x]) for k in range(c)] for i in range(n) for y in range(h) for x in range(w)]
    mean = [[sum(float(a[i, k, y, x]) for y in range(h) for x in range(w)) / (h * w) for k in range(c)] for i in range(n)]
    assert conv_layout(a, "flatten").tolist() == flat
    assert conv_layout(a, "channels").tolist() == chan
    np.testing.assert_allclose(conv_layout(a, "spatial_mean").numpy(), mean, rtol=1e-14)
    assert LAYOUTS == ("flatten", "channels", "spatial_mean")


def test_bad_layouts_and_inputs_are_named():
    with pytest.raises(UnknownNameError, match="conv_layout: layout: unknown value 'pixels'; available: flatten, channels"):
        conv_layout(_maps(), "pixels")
    with pytest.raises(InputError, match=r"maps must be a tensor of shape \(n, c, h, w\), got \(3, 4\)"):
        conv_layout(torch.zeros(3, 4), "channels")
    r = with_layout(Representations({"a": torch.zeros(2, 8)}, shapes={"a": (2, 2, 2)}), "channels")
    with pytest.raises(InputError, match="already have layout 'channels'"):
        with_layout(r, "spatial_mean")
    with pytest.raises(InputError, match=r"layer 'a' is a tensor of shape \(2, 8\), not \(n, prod\(3, 3\)\)"):
        Representations({"a": torch.zeros(2, 8)}, shapes={"a": (3, 3)})


@pytest.fixture(scope="module")
def lenet_reps():
    from layer_sim.data import load_mnist

    x, y = load_mnist("test")
    net = LeNet5(seed=0)
    return net, extract(net, (x[:500], y[:500]), layers=[*LENET5_LAYER_TYPES, "output"], gradients=True,
                        objective=nn.CrossEntropyLoss(reduction="none"))  # fmt: skip


def test_lenet5_extraction_records_the_original_librarys_seven_layers_and_shapes(lenet_reps):
    net, reps = lenet_reps
    assert list(reps) == [*net.layer_names, "output"]
    assert len(reps) == 7 and reps.n == 500
    assert list(reps.shapes.values()) == S1_SHAPES
    assert reps.unflattened("features.1").shape == (500, 6, 24, 24)  # S1: rep[0]
    assert reps.unflattened("features.5").shape == (500, 16, 4, 4)  # S1: rep[3]
    assert reps["classifier.1"].shape == (500, 120) and reps["classifier.3"].shape == (500, 84)
    from layer_sim.data import load_mnist

    with torch.no_grad():
        maps = net.features[:2](load_mnist("test")[0][:500])
    torch.testing.assert_close(reps.unflattened("features.1"), maps)
    assert reps.gradients.shapes == reps.shapes


def test_with_layout_turns_every_conv_map_and_its_gradient(lenet_reps):
    _, reps = lenet_reps
    for layout, rows, feats in [("channels", [500 * 576, 500 * 144, 500 * 64, 500 * 16], [6, 6, 16, 16]),
                                ("spatial_mean", [500] * 4, [6, 6, 16, 16])]:  # fmt: skip
        out = with_layout(reps, layout)
        assert out.layout == layout and list(out) == list(reps)
        conv = list(reps)[:4]
        assert [out[k].shape[0] for k in conv] == rows and [out[k].shape[1] for k in conv] == feats
        for k in conv:
            torch.testing.assert_close(out[k], conv_layout(reps.unflattened(k), layout), rtol=0, atol=0)
            torch.testing.assert_close(out.gradients[k], conv_layout(reps.gradients.unflattened(k), layout), rtol=0, atol=0)
        for k in ("classifier.1", "classifier.3", "output"):
            assert out[k] is reps[k]


def test_what_cca_sees_under_each_layout():
    """Flattened conv maps have p >> n: CCA is 1 for any two networks. Channels-as-neurons is well posed."""
    from layer_sim.data import load_mnist

    x = load_mnist("test")[0][:200]
    a, b = (extract(LeNet5(seed=s), x, layers=["features.1"]) for s in (0, 1))
    pa, pb = a.widths["features.1"], b.widths["features.1"]
    assert pa == 3456 and cca_rows_needed(pa, pb) > a.n  # flatten: too few rows
    rho = canonical_correlations(a["features.1"], b["features.1"])
    assert len(rho) == 199 and bool((rho > 1 - 1e-9).all())  # two rank-199 spaces in a 199-dim space: all forced
    assert float(cca(a["features.1"], b["features.1"])) > 1 - 1e-9
    ca, cb = with_layout(a, "channels"), with_layout(b, "channels")
    assert ca["features.1"].shape == (200 * 576, 6) and cca_rows_needed(6, 6) < ca["features.1"].shape[0]
    value = float(cca(ca["features.1"], cb["features.1"]))
    assert 0.05 < value < 0.99  # two random networks: neither forced to 1 nor 0
    # Layers of different spatial size have different numbers of rows: an error, not a number.
    c2 = with_layout(extract(LeNet5(seed=0), x, layers=["features.1", "features.4"]), "channels")
    with pytest.raises(InputError, match=r"same number of examples \(rows\), got 115200 and 12800"):
        linear_cka(c2["features.1"], c2["features.4"])
