"""fit_ensemble: each member must equal sequential fit() with its seed (the reference algorithm)."""

import pytest
import torch

from layer_sim.data import Task
from layer_sim.errors import ConfigError, InputError
from layer_sim.models import MLP
from layer_sim.training import Recipe, fit, fit_ensemble

WIDTHS = (64, 24, 24, 16, 5)  # inputs are 8x8 "images"; equal widths 24, 24 allow a skip


def _data(n, *, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g, dtype=dtype)
    # Labels depend on the input, so training makes progress and gradients are not pure noise.
    y = (x.flatten(1)[:, :5].argmax(1) + (x.mean((1, 2, 3)) > 0.5).long()) % 5
    return x, y


def _task(train, test=None, *, loss="cross_entropy"):
    return Task("toy", train, test, 5, loss)


def _recipe(**kw):
    """A Recipe with the defaults fit_ensemble() had before recipes existed (no weight decay, no warm-up)."""
    return Recipe(**{"weight_decay": 0.0, "warmup_epochs": 0.0, **kw})


RECIPES = {
    # Coupled weight decay, separate readout rate, warm-up then cosine, augmentation shifts.
    "sgd": dict(optimizer="sgd", lr=0.1, momentum=0.9, readout_lr=0.03, weight_decay=5e-4,
                warmup_epochs=0.5, shift=1),  # fmt: skip
    "adam": dict(optimizer="adam", lr=3e-3, momentum=0.8, weight_decay=1e-4, schedule="constant"),
    # The loss comes from the task: MSE against one-hot targets, batched as sequentially.
    "sgd-mse": dict(optimizer="sgd", lr=0.2, momentum=0.5, loss="mse_one_hot"),
    # Step annealing and per-member gradient clipping (at a norm that clips most steps).
    "sgd-step-clipped": dict(optimizer="sgd", lr=0.2, momentum=0.9, weight_decay=1e-4, schedule="step",
                             milestones=(1,), gamma=0.1, clip_norm=0.05),
}


def _sequential(seeds, task, recipe, *, dtype, skip):
    out = []
    for s in seeds:
        m = MLP(WIDTHS, skip=skip, seed=s).to(dtype)
        out.append((m, fit(m, task, recipe, seed=s, progress=False)))
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
    task = _task(_data(150, dtype=dtype), _data(40, dtype=dtype, seed=1), loss=opts.pop("loss", "cross_entropy"))
    rec = _recipe(epochs=2, **opts)
    models = [MLP(WIDTHS, skip=skip, seed=s).to(dtype) for s in seeds]
    results = fit_ensemble(models, task, rec, seeds=seeds, progress=False)
    reference = _sequential(seeds, task, rec, dtype=dtype, skip=skip)
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
    fit_ensemble(models, _task(_data(96, dtype=torch.float32)), _recipe(epochs=1, batch_size=16), seeds=seeds,
                 progress=False)  # fmt: skip
    for p, q, p0 in zip(models[0].parameters(), models[1].parameters(), init):
        assert not torch.equal(p, p0)
        assert (p - q).abs().max() > 1e-4


def test_results_without_test_set_and_single_member():
    x, y = _data(50, dtype=torch.float32)
    (res,) = fit_ensemble([MLP(WIDTHS, seed=3)], _task((x, y)), _recipe(epochs=3, batch_size=50), seeds=[3],
                          progress=False)  # fmt: skip
    assert [row["epoch"] for row in res.history] == [1, 2, 3]
    assert all(row["test_accuracy"] != row["test_accuracy"] for row in res.history)  # NaN
    assert res.history[-1]["seconds"] >= res.history[0]["seconds"] > 0
    # The summed loss is the per-member mean: a cross-entropy over 5 classes starts near ln 5.
    assert 0.5 < res.history[0]["train_loss"] < 3.0


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
        fit_ensemble(models(), _task(_data(20, dtype=torch.float32)), _recipe(epochs=1), seeds=seeds)


def test_same_object_twice_and_bad_arguments_raise():
    m = MLP(WIDTHS, seed=0)
    task = _task(_data(20, dtype=torch.float32))
    with pytest.raises(ConfigError, match="more than once"):
        fit_ensemble([m, m], task, _recipe(), seeds=[0, 1])
    with pytest.raises(ConfigError, match="recipe must be a layer_sim.training.Recipe"):
        fit_ensemble([m], task, {"optimizer": "lbfgs"}, seeds=[0])
    with pytest.raises(ConfigError, match=r"seed must be an integer >= 0, got -1"):
        fit_ensemble([m], task, _recipe(), seeds=[-1])


def test_bad_data_raises_input_error():
    m = MLP(WIDTHS, seed=0)
    x, y = _data(20, dtype=torch.float32)
    with pytest.raises(InputError, match="20 inputs but 19 labels"):
        fit_ensemble([m], _task((x, y[:19])), _recipe(), seeds=[0])
    with pytest.raises(InputError, match="64 values per example"):
        fit_ensemble([m], _task((torch.rand(20, 1, 4, 4), y)), _recipe(), seeds=[0])
    with pytest.raises(InputError, match="task.train inputs are torch.float64 but the model is torch.float32"):
        fit_ensemble([m], _task((x.double(), y)), _recipe(), seeds=[0])
    with pytest.raises(InputError, match="task.test inputs are torch.float64"):
        fit_ensemble([m], _task((x, y), (x.double(), y)), _recipe(), seeds=[0])
    with pytest.raises(InputError, match="shift"):
        fit_ensemble([m], _task((x.flatten(1), y)), _recipe(shift=1), seeds=[0])
