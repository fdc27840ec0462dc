"""The checkpoint cache: one layout and one code path for train_or_load and train_or_load_ensemble."""

import json

import pytest
import torch

from layer_sim.data import TASKS, Task
from layer_sim.errors import ConfigError, DataError, TrainingDivergedError
from layer_sim.models import MLP
from layer_sim.training import (
    NetworkSpec,
    Recipe,
    checkpoint_dir,
    fit,
    load_checkpoint,
    save_checkpoint,
    train_or_load,
    train_or_load_ensemble,
)
from layer_sim.training import cache as cache_mod

WIDTHS = (64, 24, 24, 16, 5)


def _data(n, *, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = (x.flatten(1)[:, :5].argmax(1) + (x.mean((1, 2, 3)) > 0.5).long()) % 5
    return x, y


@pytest.fixture
def toy(monkeypatch):
    """A registered task 'toy' (8x8 images, 5 classes) so that specs can name it; counts its builds."""
    builds = []

    def toy_task(*, data_dir=None, limit_train=None, loss="cross_entropy"):
        builds.append(data_dir)
        x, y = _data(100)
        n = 100 if limit_train is None else limit_train
        return Task("toy", (x[:n], y[:n]), _data(30, seed=1), 5, loss)

    monkeypatch.setitem(TASKS, "toy", toy_task)
    return builds


def _spec(**changes):
    return NetworkSpec().replace(**{"name": "toy", "widths": WIDTHS, "epochs": 1, "batch_size": 25, **changes})


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_train_or_load_trains_once_then_reuses(tmp_path, toy, monkeypatch):
    spec = _spec(limit_train=70)
    first = train_or_load(spec, 2, cache_dir=tmp_path, progress=False)
    path = checkpoint_dir(spec, 2, cache_dir=tmp_path)
    assert path == tmp_path / spec.key() / "seed-2" and sorted(p.name for p in path.iterdir()) == ["meta.json", "model.pt"]
    meta = json.loads((path / "meta.json").read_text())
    assert meta["spec"] == spec.to_dict() and meta["key"] == spec.key() and meta["key_version"] == 1
    assert meta["seed"] == 2 and meta["trainer"] == "fit" and meta["model_class"] == "MLP"
    assert len(meta["metrics"]["history"]) == 1 and meta["metrics"]["test_accuracy"] == first.meta["metrics"]["test_accuracy"]
    assert first.meta["reused"] is False and not first.model.training
    # The cached network is exactly the one fit() makes from the spec.
    ref = spec.build_model(seed=2)
    fit(ref, spec.build_task(), spec.recipe, seed=2, progress=False)
    assert _same(first.model, ref)

    monkeypatch.setattr(cache_mod, "fit", lambda *a, **k: pytest.fail("should have reused the checkpoint"))
    again = train_or_load(spec, 2, cache_dir=tmp_path)
    assert again.meta["reused"] is True and _same(again.model, first.model)
    assert len(toy) == 2  # built for training and for the reference; not for the reuse


def test_the_ensemble_shares_the_cache_and_equals_sequential_training(tmp_path, toy):
    spec = _spec(skip=True, limit_train=70, warmup_epochs=0.5, weight_decay=1e-3, batch_size=20)
    first = train_or_load(spec, 2, cache_dir=tmp_path)  # trained sequentially
    ckpts = train_or_load_ensemble(spec, [3, 2], cache_dir=tmp_path)
    assert [c.meta["seed"] for c in ckpts] == [3, 2]
    assert [c.meta["reused"] for c in ckpts] == [False, True]
    assert [c.meta["trainer"] for c in ckpts] == ["fit_ensemble", "fit"]
    assert _same(ckpts[1].model, first.model)  # loaded from disk, not retrained
    # The ensemble-trained checkpoint is what train_or_load now finds, and equals sequential training.
    again = train_or_load(spec, 3, cache_dir=tmp_path)
    assert again.meta["reused"] and again.meta["trainer"] == "fit_ensemble" and _same(again.model, ckpts[0].model)
    reference = spec.build_model(seed=3)
    ref_result = fit(reference, spec.build_task(), spec.recipe, seed=3, progress=False)
    for p, r in zip(again.model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, r, rtol=1e-4, atol=1e-5)
    assert again.meta["metrics"]["history"][0]["train_loss"] == pytest.approx(ref_result.history[0]["train_loss"], rel=1e-5)
    assert set(json.loads((checkpoint_dir(spec, 3, cache_dir=tmp_path) / "meta.json").read_text())) == \
        set(json.loads((checkpoint_dir(spec, 2, cache_dir=tmp_path) / "meta.json").read_text()))  # one layout


def test_cache_dir_defaults_to_the_settings(tmp_path, toy, monkeypatch):
    monkeypatch.setenv("LAYER_SIM_CACHE", str(tmp_path / "env-cache"))
    spec = _spec()
    train_or_load(spec, 0)
    assert (tmp_path / "env-cache" / spec.key() / "seed-0" / "meta.json").is_file()


def test_a_diverged_run_leaves_no_checkpoint(tmp_path, toy):
    spec = _spec(lr=1e30, warmup_epochs=0.0, schedule="constant", loss="mse_one_hot")
    for run in (lambda: train_or_load(spec, 0, cache_dir=tmp_path),
                lambda: train_or_load_ensemble(spec, [0, 1], cache_dir=tmp_path)):
        with pytest.raises(TrainingDivergedError, match="nothing was saved"):
            run()
        assert not list(tmp_path.rglob("meta.json")) and not list(tmp_path.rglob("model.pt"))


def test_a_checkpoint_of_another_network_in_the_slot_is_refused(tmp_path, toy):
    spec = _spec()
    train_or_load(spec, 1, cache_dir=tmp_path)
    path = checkpoint_dir(spec, 1, cache_dir=tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps(meta | {"seed": 4}))
    with pytest.raises(DataError, match=r"names key .*, seed 4, but this directory is for key .*, seed 1"):
        train_or_load(spec, 1, cache_dir=tmp_path)


def test_arguments_are_checked_before_any_work(tmp_path, toy):
    with pytest.raises(ConfigError, match="train_or_load: device='cuda:99' but "):
        train_or_load(_spec(), 0, cache_dir=tmp_path, device="cuda:99")  # no machine has 100 GPUs
    with pytest.raises(ConfigError, match="train_or_load_ensemble: seeds must be distinct"):
        train_or_load_ensemble(_spec(), [1, 1], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="spec must be a NetworkSpec"):
        train_or_load({"epochs": 1}, 0, cache_dir=tmp_path)
    assert toy == [] and not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- checkpoint files


def test_checkpoint_round_trip_restores_an_identical_model(tmp_path):
    net = MLP((20, 8, 8, 3), activation="tanh", skip=True, seed=3)
    x = torch.randn(64, 20)
    save_checkpoint(tmp_path / "ck", net, meta={"seed": 3, "metrics": {"acc": 0.5}})
    model, meta = load_checkpoint(tmp_path / "ck")
    assert type(model) is MLP and model.config == net.config and _same(model, net)
    net.eval()
    torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)
    assert meta["seed"] == 3 and meta["metrics"] == {"acc": 0.5}
    assert meta["versions"]["torch"] == torch.__version__
    assert json.loads((tmp_path / "ck" / "meta.json").read_text())["model_class"] == "MLP"
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["meta.json", "model.pt"]


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda d: (d / "model.pt").unlink(), "has no complete checkpoint"),
        (lambda d: (d / "model.pt").write_bytes((d / "model.pt").read_bytes()[:100]), r"model.pt is damaged"),
        (lambda d: (d / "model.pt").write_bytes(b""), r"model.pt is damaged"),
        (lambda d: (d / "meta.json").write_text("[1, 2]"), r"meta.json holds a JSON list, not an object"),
        (lambda d: (d / "meta.json").write_text('{"model_class": "MLP"'), r"meta.json is not valid JSON"),
        (lambda d: (d / "meta.json").write_text('{"model_class": "VGG", "model_config": {}}'),
         r"meta.json does not describe a layer_sim model"),
        (lambda d: (d / "meta.json").write_text('{"model_class": "MLP", "model_config": {"widths": [4, 5, 2]}}'),
         r"the weights in .*model.pt do not match the model that .*meta.json describes"),
    ],
)
def test_damaged_checkpoints_are_data_errors_naming_the_file(tmp_path, damage, match):
    save_checkpoint(tmp_path, MLP((4, 3, 2), seed=0))
    damage(tmp_path)
    with pytest.raises(DataError, match=match):
        load_checkpoint(tmp_path)


def test_overwriting_a_checkpoint_never_leaves_the_old_meta_beside_new_weights(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, MLP((4, 3, 2), seed=0), meta={"seed": 0})
    from layer_sim.training import checkpoint as ckpt_mod

    def crash_on_meta(path, write):
        if path.name == "meta.json":
            raise KeyboardInterrupt  # killed between the two renames
        return real(path, write)

    real = ckpt_mod.atomic_write
    monkeypatch.setattr(ckpt_mod, "atomic_write", crash_on_meta)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, MLP((4, 3, 2), seed=1), meta={"seed": 1})
    assert not (tmp_path / "meta.json").exists()  # incomplete, so never reused
