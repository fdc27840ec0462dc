"""The pruning study on a tiny budget: its plan, its numbers against independent computations, its files, its CLI."""

import csv

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from layer_sim.cli import app
from layer_sim.data import load_mnist
from layer_sim.errors import ConfigError, LayerSimError, UnknownNameError
from layer_sim.experiments import pruning as study
from layer_sim.experiments.pruning import PruningStudySpec, plan, pruning_study, study_recipe
from layer_sim.report.pruning import summary_records, write_pruning_study
from layer_sim.training.pruning import imp
from layer_sim.training.recipe import S1_RECIPE

TINY = dict(seeds=(0, 1), epochs=2, iterations=2, examples=300, limit_train=600)


@pytest.fixture(scope="module", autouse=True)
def small_test_split():
    """MNIST with 1,000 test images: every epoch evaluates on them, and the full 10,000 dominate a tiny run."""
    from layer_sim.data import TASKS, Task, mnist_task

    def mnist_1k(**kw):
        t = mnist_task(**kw)
        return Task(t.name, t.train, (t.test[0][:1000], t.test[1][:1000]), t.num_classes, t.loss)

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TASKS, "mnist", mnist_1k)
        yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ckpt")


@pytest.fixture(scope="module")
def run(cache, tmp_path_factory):
    lines = []
    out = tmp_path_factory.mktemp("out")
    result = pruning_study(PruningStudySpec(**TINY), store=out / "results.sqlite", cache_dir=cache, log=lines.append)
    return result, write_pruning_study(result, out), out, lines


def _numpy_linear_cka(x, y):
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_study_recipe_keeps_the_original_shape():
    assert study_recipe(15) == S1_RECIPE
    assert [study_recipe(e).milestones for e in (2, 3, 5, 8, 15)] == [(1,), (2,), (3, 4), (5, 6), (10, 12)]
    assert study_recipe(1).schedule == "constant" and study_recipe(1).milestones == ()
    assert {study_recipe(5).lr, study_recipe(5).clip_norm, study_recipe(5).batch_size} == {0.1, 1.0, 128}


def test_the_plan_is_one_imp_chain_per_seed_then_every_comparison(tmp_path):
    units = plan(PruningStudySpec(seeds=(2, 0, 5), iterations=3), cache_dir=tmp_path / "c", data_dir=tmp_path / "d")
    assert [u.kind for u in units] == ["pruning.imp"] * 3 + ["pruning.compare"] * (3 * 3 + 3)
    assert [u.spec["seed"] for u in units[:3]] == [0, 2, 5]  # sorted
    pairs = [(u.spec["reference"], u.spec["other"]["seed"], u.spec["other"]["iteration"]) for u in units[3:]]
    assert pairs[:3] == [(0, 0, 1), (0, 0, 2), (0, 0, 3)] and pairs[-3:] == [(0, 2, 0), (0, 5, 0), (2, 5, 0)]
    assert len({u.key for u in units}) == len(units) and units[0].spec["cache_dir"] == str((tmp_path / "c").resolve())


def test_bad_specs_are_named():
    with pytest.raises(ConfigError, match="seeds needs at least two seeds"):
        PruningStudySpec(seeds=(3,))
    with pytest.raises(ConfigError, match=r"seeds \(sorted\) must be strictly increasing"):
        PruningStudySpec(seeds=(1, 1))
    with pytest.raises(UnknownNameError, match="cca_layout: unknown value 'pixels'"):
        PruningStudySpec(cca_layout="pixels")
    with pytest.raises(UnknownNameError, match="measures: unknown value 'rbf'"):
        PruningStudySpec(measures=("rbf",))
    with pytest.raises(ConfigError, match=r"rate must be a finite number in \(0, 1\)"):
        PruningStudySpec(rate=1.5)


def test_networks_sparsity_and_files(run):
    result, written, out, lines = run
    assert [(n.seed, n.iteration) for n in result.networks] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [n.sparsity for n in result.networks] == [0.0, 0.5, 0.75] * 2
    assert all(n.prunable == 43576 for n in result.networks)
    assert [n.pruned for n in result.networks][:3] == [0, 21788, 32682]
    # Per tensor, the pruned shares add up to the network's count.
    for net in result.networks[1:3]:
        rows = [p for p in result.parameters if (p.seed, p.iteration) == (net.seed, net.iteration)]
        assert len(rows) == 8 and sum(p.sparsity * p.size for p in rows) == pytest.approx(net.pruned, abs=1e-6)
    assert {p.name for p in written} >= {"sparsity.csv", "parameter_sparsity.csv", "similarity.csv", "summary.md",
                                         "similarity_vs_sparsity.png",
                                         "accuracy_vs_sparsity.png"}  # fmt: skip
    with open(out / "sparsity.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["sparsity"]) for r in rows] == [0.0, 0.5, 0.75] * 2
    assert float(rows[1]["test_accuracy"]) == result.networks[1].test_accuracy
    with open(out / "similarity.csv") as fh:
        sims = list(csv.DictReader(fh))
    layers = ["features.1", "features.2", "features.4", "features.5", "classifier.1", "classifier.3", "output"]
    assert result.layers == tuple(layers)
    n_pairs = 2 * 2 + 1
    assert len(sims) == n_pairs * len(layers) * len(result.spec.measures)
    assert all((out / p.name).read_bytes()[1:4] == b"PNG" for p in written if p.suffix == ".png")
    assert any("seed 1 iteration 2: sparsity 0.7500" in line for line in lines)


def test_values_equal_independent_computations(run, cache):
    result, *_ = run
    spec = result.spec
    x = load_mnist("test")[0][:300]
    chain0 = imp(spec.network, 0, iterations=2, pruning=spec.pruning, cache_dir=cache)
    complete1 = imp(spec.network, 1, iterations=0, pruning=spec.pruning, cache_dir=cache)[0]

    def h1(net):  # classifier.1 by hand: the conv stack, flatten, Linear, ReLU
        with torch.no_grad():
            return net.classifier[:2](net.features(x).flatten(1)).double().numpy()

    def conv1_channels(net):  # features.1 as (n * 24 * 24, 6), by hand
        with torch.no_grad():
            a = net.features[:2](x).double()
        return a.permute(0, 2, 3, 1).reshape(-1, 6).numpy()

    def value(comparison, other_seed, iteration, layer, measure):
        [r] = [r for r in result.similarities if (r.comparison, r.seed, r.other_seed, r.iteration, r.layer, r.measure)
               == (comparison, 0, other_seed, iteration, layer, measure)]  # fmt: skip
        return r

    r = value("pruned", 0, 2, "classifier.1", "linear_cka")
    assert r.value == pytest.approx(_numpy_linear_cka(h1(chain0[0].model), h1(chain0[2].model)), abs=1e-10)
    assert (r.layout, r.rows, r.features, r.sparsity) == ("flatten", 300, 120, 0.75)
    r = value("noise_floor", 1, 0, "classifier.1", "linear_cka")
    assert r.value == pytest.approx(_numpy_linear_cka(h1(chain0[0].model), h1(complete1.model)), abs=1e-10)
    # The CCA family reads conv layers with channels as neurons: mean of the canonical correlations
    # of the two 99 %-variance SVD reductions (NumPy: centre, SVD, QR bases, singular values).
    r = value("pruned", 0, 1, "features.1", "svcca")
    assert (r.layout, r.rows, r.features) == ("channels", 300 * 576, 6)
    a, b = conv1_channels(chain0[0].model), conv1_channels(chain0[1].model)

    def reduce(m):
        mc = m - m.mean(0)
        u, s, _ = np.linalg.svd(mc, full_matrices=False)
        share = np.cumsum(s**2) / np.sum(s**2)
        d = int(np.sum(share < 0.99)) + 1
        return u[:, :d]

    rho = np.linalg.svd(reduce(a).T @ reduce(b), compute_uv=False)
    assert r.value == pytest.approx(rho.mean(), abs=1e-8)


def test_summary_compares_with_the_noise_floor(run):
    result, *_ = run
    recs = summary_records(result)
    assert len(recs) == len(result.spec.measures) * 7
    for rec in recs:
        key = next(k for k, m in study.MEASURES.items() if m.label == rec["measure"])
        floor = result.noise_floor(rec["layer"], key)
        assert len(floor) == 1 and rec["noise_floor"] == floor[0]
        assert rec["margin"] == pytest.approx(min(result.pruned(rec["layer"], key, 2)) - floor[0])


def test_cca_on_flattened_conv_maps_is_refused_not_reported(cache, tmp_path):
    spec = PruningStudySpec(**{**TINY, "cca_layout": "flatten", "measures": ("svcca",)})
    with pytest.raises(LayerSimError, match=r"pruning_study: 5 of the comparisons did not finish .*DegenerateInputError: "
                                            r"pruning study: "r"mean CCA, SVD 99 % on layer 'features.1' with layout 'flatten' "
                                                   r"has 300 rows for \d+ \+ \d+ dimensions.*use cca_layout='channels' or more examples"):  # fmt: skip
        pruning_study(spec, store=tmp_path / "s.sqlite", cache_dir=cache)


def test_cli_writes_the_study(cache, tmp_path):
    res = CliRunner().invoke(app, ["pruning-study", "-o", str(tmp_path), "--seeds", "0,1", "--epochs", "2",
                                   "--iterations", "1", "--examples", "300", "--limit-train", "600",
                                   "--cache-dir", str(cache)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (tmp_path / "similarity.csv").is_file() and (tmp_path / "summary.md").is_file()
    assert "seed 1 iteration 1: sparsity 0.5000" in res.output and "(reused)" in res.output
    with open(tmp_path / "sparsity.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    from layer_sim.store import Store

    with Store(tmp_path / "results.sqlite") as s:
        assert s.counts()["done"] == 2 + 3  # 2 chains, 2 pruned comparisons, 1 noise floor
    # A rerun finds every unit done and computes nothing.
    again = CliRunner().invoke(app, ["pruning-study", "-o", str(tmp_path), "--seeds", "0,1", "--epochs", "2",
                                     "--iterations", "1", "--examples", "300", "--limit-train", "600",
                                     "--cache-dir", str(cache)])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "2 units: 0 done, 2 skipped (already done)" in again.output  # the chains
    assert "3 units: 0 done, 3 skipped (already done)" in again.output  # the comparisons
