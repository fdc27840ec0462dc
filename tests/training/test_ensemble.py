"""fit_ensemble: each member must equal sequential fit() with its seed (the reference algorithm)."""

import pytest
import torch

from layer_sim.errors import ConfigError, InputError
from layer_sim.training.ensemble import fit_ensemble, train_ensemble, train_or_load_ensemble
from layer_sim.models import MLP
from layer_sim.training.loop import TrainConfig, fit, train_model, train_or_load

WIDTHS = (64, 24, 24, 16, 5)  # inputs are 8x8 "images"; equal widths 24, 24 allow a skip


def _data(n, *, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g, dtype=dtype)
    # Labels depend on the input, so training makes progress and gradients are not pure noise.
    y = (x.flatten(1)[:, :5].argmax(1) + (x.mean((1, 2, 3)) > 0.5).long()) % 5
    return x, y


RECIPES = {
    # Coupled weight decay, separate readout rate, warm-up then cosine, augmentation shifts.
    "sgd": dict(optimizer="sgd", lr=0.1, momentum=0.9, readout_lr=0.03, weight_decay=5e-4,
                warmup_epochs=0.5, shift=1),  # fmt: skip
    "adam": dict(optimizer="adam", lr=3e-3, momentum=0.8, weight_decay=1e-4, schedule="constant"),
}


def _sequential(seeds, train, test, *, dtype, skip, epochs, **opts):
    out = []
    for s in seeds:
        m = MLP(WIDTHS, skip=skip, seed=s).to(dtype)
        out.append((m, fit(m, train, test, seed=s, epochs=epochs, progress=False, **opts)))
    return out


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize(
    "dtype, rtol, atol",
    # Batched vs single GEMM only reorders sums: after these 10 steps the largest weight
    # difference is ~2e-16 (float64) and ~3e-8 (float32); the bounds leave 10-100x headroom.
    [(torch.float64, 1e-12, 1e-13), (torch.float32, 1e-5, 1e-6)],
)
def test_members_equal_sequential_fit(recipe, dtype, rtol, atol):
    seeds = [5, 0, 9]  # unordered, non-contiguous: member k must follow seeds[k]
    skip = recipe == "sgd"
    opts = dict(RECIPES[recipe], batch_size=32)  # 150 = 4*32 + 22: a partial last batch
    train, test = _data(150, dtype=dtype), _data(40, dtype=dtype, seed=1)
    models = [MLP(WIDTHS, skip=skip, seed=s).to(dtype) for s in seeds]
    results = fit_ensemble(models, train, test, seeds=seeds, epochs=2, progress=False, **opts)
    reference = _sequential(seeds, train, test, dtype=dtype, skip=skip, epochs=2, **opts)
    assert len(results) == len(seeds)
    for m, res, (ref_m, ref_res) in zip(models, results, reference):
        for (name, p), (ref_name, q) in zip(m.named_parameters(), ref_m.named_parameters()):
            assert name == ref_name and p.dtype == dtype
            torch.testing.assert_close(p, q, rtol=rtol, atol=atol, msg=name)
        assert len(res.history) == len(ref_res.history) == 2
        for row, ref_row in zip(res.history, ref_res.history):
            assert row.keys() == ref_row.keys()
            for key in ("epoch", "lr"):
                assert row[key] == ref_row[key]
            for key in ("train_loss", "test_loss"):
                assert row[key] == pytest.approx(ref_row[key], rel=rtol * 10, abs=atol)
            # Accuracies count argmax agreements: a 1e-5 logit perturbation flips none here.
            assert row["train_accuracy"] == ref_row["train_accuracy"]
            assert row["test_accuracy"] == ref_row["test_accuracy"]


def test_training_changes_weights_and_seeds_give_different_members():
    seeds = [0, 1]
    # Same initial weights for both members: any difference then comes from the data order.
    models = [MLP(WIDTHS, seed=0), MLP(WIDTHS, seed=0)]
    init = [p.detach().clone() for p in models[0].parameters()]
    fit_ensemble(models, _data(96, dtype=torch.float32), seeds=seeds, epochs=1, batch_size=16,
                 progress=False)  # fmt: skip
    for p, q, p0 in zip(models[0].parameters(), models[1].parameters(), init):
        assert not torch.equal(p, p0)
        assert (p - q).abs().max() > 1e-4


def test_results_without_test_set_and_single_member():
    x, y = _data(50, dtype=torch.float32)
    (res,) = fit_ensemble([MLP(WIDTHS, seed=3)], (x, y), seeds=[3], epochs=3, batch_size=50,
                          progress=False)  # fmt: skip
    assert [row["epoch"] for row in res.history] == [1, 2, 3]
    assert all(row["test_accuracy"] != row["test_accuracy"] for row in res.history)  # NaN
    assert res.history[-1]["seconds"] >= res.history[0]["seconds"] > 0
    # The summed loss is the per-member mean: a cross-entropy over 5 classes starts near ln 5.
    assert 0.5 < res.history[0]["train_loss"] < 3.0


def test_train_ensemble_equals_train_model():
    config = TrainConfig(widths=WIDTHS, skip=True, epochs=1, batch_size=20, limit_train=70,
                         warmup_epochs=0.5, weight_decay=1e-3)  # fmt: skip
    data = (_data(100, dtype=torch.float32), _data(30, dtype=torch.float32, seed=1))
    pairs = train_ensemble(config, [4, 2], data=data, progress=False)
    for seed, (model, res) in zip([4, 2], pairs):
        ref_model, ref_res = train_model(config, seed=seed, data=data, progress=False)
        assert model.config == ref_model.config
        for p, q in zip(model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
        assert res.history[0]["train_loss"] == pytest.approx(ref_res.history[0]["train_loss"], rel=1e-5)


def test_train_or_load_ensemble_shares_the_train_or_load_cache(tmp_path):
    config = TrainConfig(widths=WIDTHS, epochs=1, batch_size=25, limit_train=50)
    data = (_data(60, dtype=torch.float32), _data(20, dtype=torch.float32, seed=1))
    first = train_or_load(config, 2, cache_dir=tmp_path, data=data)  # trained sequentially
    ckpts = train_or_load_ensemble(config, [3, 2], cache_dir=tmp_path, data=data)
    assert [c.meta["seed"] for c in ckpts] == [3, 2]
    assert [c.meta["reused"] for c in ckpts] == [False, True]
    assert ckpts[0].meta["trainer"] == "fit_ensemble" and "trainer" not in ckpts[1].meta
    for p, q in zip(ckpts[1].model.parameters(), first.model.parameters()):
        assert torch.equal(p, q)  # loaded from disk, not retrained
    # The ensemble-trained checkpoint is what train_or_load now finds, and equals sequential training.
    again = train_or_load(config, 3, cache_dir=tmp_path, data=data)
    assert again.meta["reused"] and again.meta["trainer"] == "fit_ensemble"
    reference, _ = train_model(config, seed=3, data=data, progress=False)
    for p, q, r in zip(again.model.parameters(), ckpts[0].model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
        torch.testing.assert_close(p, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "models, seeds, match",
    [
        (lambda: [], [], "at least one seed"),
        (lambda: [MLP(WIDTHS, seed=0)], [], "at least one seed"),
        (lambda: [MLP(WIDTHS, seed=0), MLP(WIDTHS, seed=1)], [1, 1], r"distinct.*\[1\]"),
        (lambda: [MLP(WIDTHS, seed=0)], [0, 1], "1 models but 2 seeds"),
        (lambda: [MLP(WIDTHS, seed=0), MLP((64, 8, 5), seed=1)], [0, 1], r"models\[1\] has config"),
        (lambda: [MLP(WIDTHS, seed=0), MLP(WIDTHS, seed=1).double()], [0, 1], "float64"),
        (lambda: [torch.nn.Linear(64, 5)], [0], "layer_sim MLP"),
        (lambda: [MLP(WIDTHS, seed=0)], [0.5], "integers"),
        (lambda: [MLP(WIDTHS, seed=0)], 3, "sequence of integers"),
    ],
)
def test_bad_members_raise_config_error(models, seeds, match):
    with pytest.raises(ConfigError, match=match):
        fit_ensemble(models(), _data(20, dtype=torch.float32), seeds=seeds, epochs=1)


def test_same_object_twice_and_bad_hyperparameters_raise():
    m = MLP(WIDTHS, seed=0)
    data = _data(20, dtype=torch.float32)
    with pytest.raises(ConfigError, match="more than once"):
        fit_ensemble([m, m], data, seeds=[0, 1])
    with pytest.raises(ConfigError, match="optimizer"):
        fit_ensemble([m], data, seeds=[0], optimizer="lbfgs")
    with pytest.raises(ConfigError, match="batch_size"):
        fit_ensemble([m], data, seeds=[0], batch_size=0)
    with pytest.raises(ConfigError, match="distinct"):
        train_ensemble(TrainConfig(widths=WIDTHS), [2, 2], data=(data, None))


def test_bad_data_raises_input_error():
    m = MLP(WIDTHS, seed=0)
    x, y = _data(20, dtype=torch.float32)
    with pytest.raises(InputError, match="20 inputs but 19 labels"):
        fit_ensemble([m], (x, y[:19]), seeds=[0])
    with pytest.raises(InputError, match="take 64 values per example"):
        fit_ensemble([m], (torch.rand(20, 1, 4, 4), y), seeds=[0])
    with pytest.raises(InputError, match="train inputs are torch.float64 but the models are torch.float32"):
        fit_ensemble([m], (x.double(), y), seeds=[0])
    with pytest.raises(InputError, match="test inputs are torch.float64"):
        fit_ensemble([m], (x, y), (x.double(), y), seeds=[0])
    with pytest.raises(InputError, match="shift"):
        fit_ensemble([m], (x.flatten(1), y), seeds=[0], shift=1)
