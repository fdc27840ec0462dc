"""Epoch checkpoints: a run interrupted (by an exception, or by kill -9) and restarted ends bit-identical to an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from layer_sim.data import Task
from layer_sim.errors import ConfigError, DataError
from layer_sim.models import MLP, LeNet5
from layer_sim.training import Recipe, fit
from layer_sim.training import resume as resume_mod


def _images(n=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    y = (x.flatten(1)[:, :4].argmax(1) + (x.mean((1, 2, 3)) > 0.5).long()) % 4
    return x, y


TASK = Task("toy", _images(), _images(30, seed=1), 4, "cross_entropy")
RECIPES = {
    # Momentum buffers, step annealing, clipping, augmentation (draws from the generator) and a warm-up.
    "sgd": Recipe(lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=16, epochs=4, schedule="step",
                  milestones=(2, 3), warmup_epochs=0.5, clip_norm=0.5, shift=1),  # fmt: skip
    # Adam's step counters and moments; cosine schedule.
    "adam": Recipe(optimizer="adam", lr=3e-3, batch_size=20, epochs=4, warmup_epochs=0.0),
}


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class _Crash(Exception):
    pass


class _CrashAt:
    def __init__(self, epoch, step_in_epoch):
        self.epoch, self.step_in_epoch, self.seen = epoch, step_in_epoch, 0

    def on_batch_end(self, state):
        if state.epoch == self.epoch:
            self.seen += 1
            if self.seen == self.step_in_epoch:
                raise _Crash


class _Counter:
    """A stateful callback: counts batches and records each epoch's test accuracy."""

    def __init__(self):
        self.batches, self.accuracies = 0, []

    def on_batch_end(self, state):
        self.batches += 1

    def on_epoch_end(self, state):
        self.accuracies.append(state.metrics["test_accuracy"])

    def state_dict(self):
        return {"batches": self.batches, "accuracies": list(self.accuracies)}

    def load_state_dict(self, d):
        self.batches, self.accuracies = d["batches"], list(d["accuracies"])


def _dropout_net(seed):
    """Dropout draws from the global RNG in train mode: resuming must restore that stream too."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                               torch.nn.Linear(16, 4))  # fmt: skip


MODELS = {"sgd": lambda seed: MLP((36, 12, 12, 4), seed=seed), "adam": lambda seed: MLP((36, 12, 12, 4), seed=seed),
          "dropout": _dropout_net}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_run_interrupted_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path, name):
    recipe, make = RECIPES.get(name, RECIPES["sgd"]), MODELS[name]
    whole, counter = make(1), _Counter()
    want = fit(whole, TASK, recipe, seed=3, callbacks=[counter], progress=False)

    first, c1 = make(1), _Counter()
    with pytest.raises(_Crash):
        fit(first, TASK, recipe, seed=3, callbacks=[c1, _CrashAt(3, 2)], checkpoint=tmp_path, progress=False)
    assert torch.load(tmp_path / "epoch.pt", weights_only=True)["epoch"] == 2

    # Another initialisation (and global RNG state): the checkpoint's must replace them.
    again, c2 = make(99), _Counter()
    got = fit(again, TASK, recipe, seed=3, callbacks=[c2], checkpoint=tmp_path, progress=False)
    assert _same(again, whole)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in got.history] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in want.history]  # fmt: skip
    assert (c2.batches, c2.accuracies) == (counter.batches, counter.accuracies)
    assert not _same(first, whole)  # the crashed model itself stopped mid-way

    # A checkpoint of the last epoch: nothing left to do, the finished state comes back.
    done = make(5)
    assert len(fit(done, TASK, recipe, seed=3, checkpoint=tmp_path, progress=False).history) == 4
    assert _same(done, whole)


def test_a_checkpoint_of_another_run_or_a_damaged_one_is_refused(tmp_path):
    recipe = RECIPES["adam"]
    fit(MLP((36, 8, 4), seed=0), TASK, recipe, seed=1, checkpoint=tmp_path, progress=False)
    with pytest.raises(DataError, match=r"epoch.pt is the epoch checkpoint of another run \(its seed differ"):
        fit(MLP((36, 8, 4), seed=0), TASK, recipe, seed=2, checkpoint=tmp_path, progress=False)
    with pytest.raises(DataError, match=r"its parameters, recipe differ"):
        fit(MLP((36, 9, 4), seed=0), TASK, Recipe(epochs=2), seed=1, checkpoint=tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"callback 0 \(_Counter\) has a state_dict, but the epoch checkpoint"):
        fit(MLP((36, 8, 4), seed=0), TASK, recipe, seed=1, callbacks=[_Counter()], checkpoint=tmp_path,
            progress=False)  # fmt: skip
    (tmp_path / "epoch.pt").write_bytes((tmp_path / "epoch.pt").read_bytes()[:200])
    with pytest.raises(DataError, match="epoch checkpoint .*epoch.pt is damaged"):
        fit(MLP((36, 8, 4), seed=0), TASK, recipe, seed=1, checkpoint=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="fit: checkpoint must be a directory path or None, got int"):
        fit(MLP((36, 8, 4), seed=0), TASK, recipe, seed=1, checkpoint=3)


def test_a_write_killed_half_way_leaves_the_previous_epoch(tmp_path, monkeypatch):
    recipe = RECIPES["sgd"]
    real = resume_mod.atomic_write
    calls = []

    def dies_on_the_third_write(path, write):
        calls.append(path)
        if len(calls) == 3:
            # What kill -9 during the write leaves: a partial temporary file, never a partial epoch.pt.
            (path.parent / f".{path.name}.x1y2.part").write_bytes(b"half")
            raise _Crash
        real(path, write)

    monkeypatch.setattr(resume_mod, "atomic_write", dies_on_the_third_write)
    with pytest.raises(_Crash):
        fit(MLP((36, 12, 4), seed=0), TASK, recipe, seed=0, checkpoint=tmp_path, progress=False)
    monkeypatch.setattr(resume_mod, "atomic_write", real)
    assert torch.load(tmp_path / "epoch.pt", weights_only=True)["epoch"] == 2
    net = MLP((36, 12, 4), seed=0)
    fit(net, TASK, recipe, seed=0, checkpoint=tmp_path, progress=False)
    whole = MLP((36, 12, 4), seed=0)
    fit(whole, TASK, recipe, seed=0, progress=False)
    assert _same(net, whole) and not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))


# ----------------------------------------------------------------------------- kill -9, in real processes

_CHILD = textwrap.dedent(
    """
    import sys, time, torch
    from pathlib import Path
    from layer_sim.data import TASKS, Task
    from layer_sim.training import NetworkSpec, cache, train_or_load
    from layer_sim.models import LeNet5Spec

    def toy_task(*, data_dir=None, limit_train=None, loss="cross_entropy"):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(240, 1, 28, 28, generator=g)
        y = (x[:, 0, 10:18, 10:18].flatten(1)[:, :3].argmax(1) + (x.mean((1, 2, 3)) > 0.5).long()) % 3
        return Task("toy28", (x[:200], y[:200]), (x[200:], y[200:]), 3, loss)

    TASKS["toy28"] = toy_task
    spec = NetworkSpec(model=LeNet5Spec(num_classes=3)).replace(
        name="toy28", lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=25, epochs=4, schedule="step",
        milestones=(2,), warmup_epochs=0.0, clip_norm=1.0, shift=1)

    class Stall:  # in epoch 3, after the epoch-2 checkpoint: tell the parent, then wait to be killed
        def __init__(self, marker):
            self.marker = marker

        def on_batch_end(self, state):
            if state.epoch == 3 and state.step % 8 == 3:
                self.marker.write_text("stalled")
                time.sleep(600)

    if __name__ == "__main__":
        mode, cache_dir, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
        if mode == "kill":
            real_fit = cache.fit
            cache.fit = lambda *a, **k: real_fit(*a, **k, callbacks=[Stall(out)])
        ckpt = train_or_load(spec, 4, cache_dir=cache_dir, progress=False)
        torch.save(ckpt.model.state_dict(), out)
    """
)


def _child(tmp_path, mode, cache_dir, out):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # every process sums in the same order
    return subprocess.Popen([sys.executable, str(script), mode, str(cache_dir), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def test_kill_9_mid_run_then_restart_equals_an_uninterrupted_run(tmp_path):
    killed_cache, whole_cache = tmp_path / "killed", tmp_path / "whole"
    marker = tmp_path / "stalled.txt"
    victim = _child(tmp_path, "kill", killed_cache, marker)
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert victim.poll() is None, victim.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the child never reached epoch 3"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    [slot] = [p for p in killed_cache.glob("*/seed-4")]
    assert sorted(p.name for p in slot.iterdir() if not p.name.startswith(".")) == ["epoch.pt"]  # no finished network
    assert torch.load(slot / "epoch.pt", weights_only=True)["epoch"] == 2

    restarted = _child(tmp_path, "run", killed_cache, tmp_path / "restarted.pt")
    # Meanwhile the uninterrupted reference, here, on one thread like the children.
    b = _uninterrupted(tmp_path, whole_cache)
    _, err = restarted.communicate(timeout=240)
    assert restarted.returncode == 0, err.decode()[-2000:]
    a = torch.load(tmp_path / "restarted.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in slot.iterdir()) == ["meta.json", "model.pt"]  # epoch.pt gone once finished
    history = json.loads((slot / "meta.json").read_text())["metrics"]["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert not _same(LeNet5(3, seed=4), _load(a))  # it did train


def _uninterrupted(tmp_path, cache_dir):
    import importlib.util

    from layer_sim.data import TASKS
    from layer_sim.training import train_or_load

    spec_ = importlib.util.spec_from_file_location("resume_child", tmp_path / "child.py")
    child = importlib.util.module_from_spec(spec_)
    threads = torch.get_num_threads()
    saved = TASKS.get("toy28")
    try:
        spec_.loader.exec_module(child)  # registers its task; runs nothing (not __main__)
        torch.set_num_threads(1)
        return train_or_load(child.spec, 4, cache_dir=cache_dir, progress=False).model.state_dict()
    finally:
        torch.set_num_threads(threads)
        TASKS.pop("toy28")
        if saved is not None:
            TASKS["toy28"] = saved


def _load(state):
    net = LeNet5(3)
    net.load_state_dict(state)
    return net
