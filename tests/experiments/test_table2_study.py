"""The Table 2 study: its closed forms, its layouts, and a tiny study run as units, resumed and collected."""

import math
import re

import numpy as np
import pytest
import torch

from layer_sim import ConfigError, extract, layer_identification
from layer_sim.errors import IncompleteError, InputError, UnknownNameError
from layer_sim.experiments import table2_study as t2
from layer_sim.experiments.sanity import Row
from layer_sim.measures import get
from layer_sim.representations import Representations
from layer_sim.store import Store
from layer_sim.training import NetworkSpec, train_or_load_ensemble

# ------------------------------------------------------------------- CCA's n-dependence, closed form


def _centred_basis(x: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(x - x.mean(axis=0))
    return q


@pytest.mark.parametrize("n", [25, 31, 60, 200])
def test_mean_squared_cca_of_independent_gaussians_is_max_width_over_n_minus_1(n):
    # Centred i.i.d. Gaussian columns span a uniformly random subspace of the (n-1)-dim space
    # orthogonal to 1, so E[P_X] = p/(n-1) H and, X independent of Y, E tr(P_X P_Y) = p q/(n-1).
    # sum rho_i^2 = tr(P_X P_Y) and R2_CCA averages over min(p, q): E R2_CCA = max(p, q)/(n-1),
    # whatever the data; at n = 25 (n-1 < p+q) 6 of the 10 correlations are exactly 1.
    p, q, draws = 20, 10, 120
    rng = np.random.default_rng(n)
    r2 = get("cca_r2")
    values = np.array([r2(rng.standard_normal((n, p)), rng.standard_normal((n, q))) for _ in range(draws)])
    expected = max(p, q) / (n - 1)
    se = values.std(ddof=1) / math.sqrt(draws)
    assert abs(values.mean() - expected) < 4 * se + 1e-12, (values.mean(), expected, se)


def test_mean_cca_of_independent_gaussians_falls_with_n_and_matches_a_numpy_transcription():
    rng = np.random.default_rng(1)
    rho = get("cca_rho")
    means = []
    for n in (32, 64, 256, 2048):
        x, y = rng.standard_normal((n, 16)), rng.standard_normal((n, 16))
        ref = np.linalg.svd(_centred_basis(x).T @ _centred_basis(y), compute_uv=False).mean()
        assert rho(x, y) == pytest.approx(ref, abs=1e-10)
        means.append(ref)
    assert means == sorted(means, reverse=True) and means[-1] < 0.15 < 0.6 < means[0]


@pytest.mark.parametrize("widths, rows", [([20, 10], 25), ([12, 12, 30], 40), ([8, 8], 100), ([40, 5], 30)])
def test_forced_share_counts_the_unit_canonical_correlations_of_random_data(widths, rows):
    rng = np.random.default_rng(rows)
    shares = []
    for a in widths:
        for b in widths:
            s = np.linalg.svd(_centred_basis(rng.standard_normal((rows, a)))[:, : min(a, rows - 1)].T
                              @ _centred_basis(rng.standard_normal((rows, b)))[:, : min(b, rows - 1)], compute_uv=False)
            shares.append(np.sum(s > 1 - 1e-9) / min(a, b, rows - 1))
    assert t2.forced_share(widths, rows) == pytest.approx(float(np.mean(shares)), abs=1e-12)


# ------------------------------------------------------------------------------------- layouts


def _maps(n=3, shapes=((2, 4, 4), (3, 2, 2)), seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = [torch.rand(n, *s, generator=g, dtype=torch.float64) for s in shapes]
    reps = Representations({f"l{k}": m.reshape(n, -1) for k, m in enumerate(maps)},
                           shapes={f"l{k}": s for k, s in enumerate(shapes)})
    return maps, reps


def test_channels_layout_pools_to_the_smallest_grid_and_puts_example_then_position_in_rows():
    maps, reps = _maps()
    out = t2.identification_layout(reps, "channels")
    big = maps[0].numpy().reshape(3, 2, 2, 2, 2, 2).mean(axis=(3, 5))  # 4x4 -> 2x2 by 2x2 blocks
    for name, m in (("l0", big), ("l1", maps[1].numpy())):
        want = m.transpose(0, 2, 3, 1).reshape(3 * 4, -1)  # (n, g, g, c) -> (n g g, c)
        np.testing.assert_allclose(out[name].numpy(), want, rtol=0, atol=1e-14)


def test_spatial_mean_and_flatten_layouts():
    maps, reps = _maps()
    sm = t2.identification_layout(reps, "spatial_mean")
    for k, m in enumerate(maps):
        np.testing.assert_allclose(sm[f"l{k}"].numpy(), m.numpy().mean(axis=(2, 3)), atol=1e-14)
    assert t2.identification_layout(reps, "flatten") is reps


def test_channels_layout_refuses_dense_layers_and_unknown_layouts():
    reps = Representations({"a": torch.rand(3, 8), "b": torch.rand(3, 2 * 2 * 2)}, shapes={"a": (8,), "b": (2, 2, 2)})
    with pytest.raises(InputError, match=r"layout 'channels' needs conv maps .* layers \['a'\]"):
        t2.identification_layout(reps, "channels")
    with pytest.raises(UnknownNameError, match="layout: unknown value 'pixels'"):
        t2.identification_layout(reps, "pixels")


def test_draw_widths_is_log_uniform_in_range_and_seeded():
    draws = np.array([t2.draw_widths(s, depth=4, low=32, high=512)[1:-1] for s in range(400)])
    assert draws.min() >= 32 and draws.max() <= 512
    # log-uniform: the median is the geometric midpoint, sqrt(32 * 512) = 128
    assert 110 < np.median(draws) < 150
    assert t2.draw_widths(3) == t2.draw_widths(3) != t2.draw_widths(4)
    assert t2.draw_widths(0, inputs=100, classes=3)[::5] == (100, 3)


# ---------------------------------------------------------------------------- a tiny study

TINY = NetworkSpec().replace(widths=(784, 24, 20, 10), epochs=1, limit_train=600, batch_size=50, warmup_epochs=0)
ROWS = (Row("CKA (Linear)", "linear_cka", {}, 99.3), Row("CCA (ρ̄)", "cca_rho", {}, 1.4),
        Row("CKA (RBF 0.4)", "rbf_cka", {"sigma": 0.4}, 99.1))


def _spec(**changes):
    base = dict(mlp=TINY, unequal=(784, 40, 12, 10), width_draws=(0,), random_range=(8, 40), nets=3, examples=90,
                ratios=(1.1, 2.0), rbf_max_rows=150, flatten_max_features=None, cnns=("LeNet5",), cnn_epochs=1,
                cnn_limit_train=200, rows=ROWS)
    return t2.Table2StudySpec(**{**base, **changes})


def _counts(messages):
    return [tuple(map(int, m.groups())) for m in
            (re.search(r"(\d+) done, (\d+) skipped", s) for s in messages) if m]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("table2-study")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAYER_SIM_CACHE", str(root / "cache"))
    log: list[str] = []
    result = t2.run_table2_study(_spec(), store=root / "results.sqlite", log=log.append)
    yield result, root, log
    mp.undo()


def test_every_unit_runs_once_and_a_rerun_or_a_larger_spec_does_only_what_is_new(study, monkeypatch):
    result, root, log = study
    monkeypatch.setenv("LAYER_SIM_CACHE", str(root / "cache"))
    train, cells = t2.plan(_spec())
    assert _counts(log) == [(len(train), 0), (len(cells), 0)]
    again: list[str] = []
    assert t2.run_table2_study(_spec(), store=root / "results.sqlite", log=again.append).records() == result.records()
    assert _counts(again) == [(0, len(train)), (0, len(cells))]
    more: list[str] = []
    bigger = t2.run_table2_study(_spec(ratios=(1.1, 2.0, 3.0)), store=root / "results.sqlite", log=more.append)
    # one new ratio: one new cell per index and MLP family of the examples part (equal, unequal)
    assert _counts(more) == [(0, len(train)), (2 * len(ROWS), len(cells))]
    assert len(bigger.part("examples")) == len(result.part("examples")) + 2 * len(ROWS)


def test_a_cell_is_layer_identification_of_the_family_s_networks_on_the_probe(study, monkeypatch):
    result, root, _ = study
    monkeypatch.setenv("LAYER_SIM_CACHE", str(root / "cache"))
    from layer_sim.experiments.sanity import probe_images

    nets = [c.model for c in train_or_load_ensemble(TINY.replace(widths=(784, 40, 12, 10)), [0, 1, 2])]
    cell = next(c for c in result.part("examples") if c.family == "unequal" and c.ratio == 1.1 and c.row.slug == "cca_rho")
    assert cell.examples == math.ceil(1.1 * 40) == cell.rows  # n = ceil(r p), p the widest hidden layer
    x = probe_images({"split": "test", "seed": 0, "examples": cell.examples})
    direct = layer_identification([extract(m, x) for m in nets], "cca_rho")
    np.testing.assert_array_equal(cell.identification.scores, direct.scores)
    assert cell.identification.stderr == direct.stderr and cell.forced == t2.forced_share([40, 12], 44)


def test_cnn_cells_see_the_shapes_of_their_layout(study):
    result, _, _ = study
    shapes = t2.conv_layers(_spec().cnn_families()[0].network)
    by = {(c.layout, c.row.slug): c for c in result.part("cnn")}
    flat, chan, mean = by["flatten", "linear_cka"], by["channels", "linear_cka"], by["spatial_mean", "linear_cka"]
    assert flat.features == {k: math.prod(s) for k, s in shapes.items()} and flat.rows == 90
    assert chan.features == mean.features == {k: s[0] for k, s in shapes.items()}
    assert chan.rows == 90 * 4 * 4 and mean.rows == 90  # LeNet-5's smallest map is 16 x 4 x 4
    assert flat.forced == 1.0 and chan.forced == 0.0
    # RBF CKA on 1440 channel rows exceeds rbf_max_rows=150: listed, not computed
    assert [(s["layout"], s["index"]) for s in result.not_computed] == [("channels", "CKA (RBF 0.4)")]


def test_wide_flattened_maps_plan_only_gram_measures():
    spec = _spec(flatten_max_features=1000)  # LeNet-5's widest map is 6 x 24 x 24 = 3456
    cells = [c for c in t2._cells(spec) if c[0] == "cnn" and c[4] == "flatten"]
    assert {c[2].measure: c[6] is not None for c in cells} == {"linear_cka": True, "cca_rho": False, "rbf_cka": True}
    assert "flatten_max_features=1000" in next(c[8] for c in cells if c[2].measure == "cca_rho")


def test_pwcca_is_planned_only_where_no_ties_are_forced():
    # equal (24, 20 wide): n/p = 1.1 is 27 rows, 24 + 24 - 26 = 22 correlations forced, 20 + 20 - 26 = 14;
    # n/p = 2 is 48 rows, 24 + 24 - 47 = 1: a single forced correlation, whose variate is unique
    spec = _spec(rows=ROWS + (Row("PWCCA", "pwcca", {}, 11.1),))
    planned = {(c[0], c[1].name, c[4], c[3]): c for c in t2._cells(spec) if c[2].measure == "pwcca"}
    assert planned["examples", "equal", "flatten", 27][6] is None
    assert "force up to 22 canonical correlations to 1" in planned["examples", "equal", "flatten", 27][8]
    assert planned["examples", "equal", "flatten", 48][6] is not None
    assert planned["widths", "equal", "flatten", 90][6] is not None
    # flattened LeNet-5 on 90 rows: every layer (3,456, 864, 1,024, 256 features) has rank 89 = n - 1,
    # so every correlation of every pair is forced and PWCCA = 1 is defined: planned
    assert planned["cnn", "LeNet5", "flatten", 90][6] is not None
    # on 2,000 rows relu1 (rank 1,999) still forces all of its pairs, but relu2 with itself forces
    # 1,024 + 1,024 - 1,999 = 49 of its 1,024 correlations
    assert t2._forced_ties([3456, 864, 1024, 256], 2000) == 49


def test_spec_is_checked_and_round_trips():
    spec = _spec()
    assert t2.Table2StudySpec.from_dict(spec.to_dict()) == spec
    full = t2.Table2StudySpec.make(full=True)
    assert full.nets == 10 and full.flatten_max_features is None and full.cnn_limit_train is None
    assert full.cnns == t2.CNNS == ("LeNet5", "Tiny10") and t2.Table2StudySpec.make().cnns == ("LeNet5",)
    with pytest.raises(ConfigError, match="nets must be an integer >= 3"):
        _spec(nets=2)
    with pytest.raises(ConfigError, match="examples must exceed the widest hidden layer of the unequal MLP"):
        _spec(examples=30)
    with pytest.raises(ConfigError, match="unequal must keep the input and output widths"):
        _spec(unequal=(784, 10, 7))
    with pytest.raises(ConfigError, match="ratios"):
        _spec(ratios=(2.0, 1.5))
    with pytest.raises(UnknownNameError, match="cnns: unknown value 'VGG'"):
        _spec(cnns=("VGG",))


def test_examples_are_capped_at_the_test_split():
    spec = t2.Table2StudySpec.make()
    unequal = spec.mlp_families()[1]
    assert spec.examples_for(unequal, 20.0) == t2.TEST_IMAGES and spec.examples_for(unequal, 1.1) == 564


def test_collect_refuses_an_unfinished_store(tmp_path):
    with Store(tmp_path / "s.sqlite", write=True):
        pass
    with Store(tmp_path / "s.sqlite") as store, pytest.raises(IncompleteError, match="units are not done"):
        t2.collect(store, _spec())


# ------------------------------------------------------------------------------ views and report


def test_report_section_and_files_show_every_cell(study, tmp_path):
    import json

    from matplotlib.image import imread

    from layer_sim.report.html import render_html
    from layer_sim.report.sections import Table, build_report
    from layer_sim.report.table2_study import write_table2_study

    result, root, _ = study
    with Store(root / "results.sqlite") as s:
        doc = build_report(s)
    sec = next(x for x in doc.sections if x.title.startswith("Why our Table 2 differs"))
    tables = {b.caption: b.records for b in sec.blocks if isinstance(b, Table)}
    widths = next(v for k, v in tables.items() if k.startswith("Widths"))
    cca = next(c for c in result.part("widths") if c.family == "unequal" and c.row.measure == "cca_rho")
    got = next(r for r in widths if r["index"] == "CCA (ρ̄)")
    # the table's number is the fraction of correct argmax predictions in the stored scores
    scores, offdiag = cca.identification.scores, ~np.eye(3, dtype=bool)
    correct = (scores[offdiag].argmax(axis=-1) == np.arange(scores.shape[-1])).mean()
    assert got["unequal"] == pytest.approx(100 * correct) and got["paper"] == 1.4
    assert "<table>" in render_html(doc) and any(k.startswith("Cells not computed") for k in tables)

    written = {p.name for p in write_table2_study(result, tmp_path)}
    assert {"widths.md", "examples.csv", "cnn.json", "cnn_shapes.md", "accuracy_vs_examples.png", "cnn_layouts.png",
            "cells.json", "not_computed.md"} <= written
    cells = json.loads((tmp_path / "cells.json").read_text())
    assert len(cells) == len(result.cells) and {c["layout"] for c in cells} == {"flatten", "channels", "spatial_mean"}
    pixels = imread(tmp_path / "accuracy_vs_examples.png")
    assert pixels.shape[0] > 100 and pixels.std() > 0.01


def test_cli_command_is_registered_with_its_options():
    from typer.testing import CliRunner

    from layer_sim.cli import app

    out = CliRunner().invoke(app, ["table2-study", "--help"], terminal_width=100)
    assert out.exit_code == 0 and "--full" in out.output and "--cnns" in out.output

