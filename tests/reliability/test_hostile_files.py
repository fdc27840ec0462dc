"""Files, as users, crashes and other programs leave them: damaged files are DataErrors naming the file,
unwritable places are refused before any work, and what we write gets the umask's mode and leaves nothing behind."""

import errno
import json
import os

import pytest
import torch

from layer_sim.errors import ConfigError, DataError, UnitsFailedError
from layer_sim.store import Store


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_results_store_gets_the_mode_the_umask_allows(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with Store(tmp_path / "results.sqlite", write=True):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "results.sqlite").stat().st_mode & 0o777 == mode


def test_the_leftovers_of_a_store_creation_killed_by_kill_9_are_removed(tmp_path):
    # What a creator killed between mkstemp and the rename leaves: the half-made database and its WAL files.
    leftovers = [tmp_path / f".results.sqlite.0123456789ab.part{s}" for s in ("", "-wal", "-shm")]
    for p in leftovers:
        p.write_bytes(b"half")
    with Store(tmp_path / "results.sqlite", write=True) as store:
        assert store.plan([("k", "toy", "{}")]) == {"k": "pending"}
    assert sorted(os.listdir(tmp_path)) == ["results.sqlite", "results.sqlite.lock"]


# ----------------------------------------------------------------------------- damaged checkpoints

WIDTHS = (16, 6, 3)


@pytest.fixture
def toy(monkeypatch):
    """A registered 4x4-image task 'toy' so that specs can name it; records every build."""
    from layer_sim.data import TASKS, Task

    builds = []

    def toy_task(*, data_dir=None, limit_train=None, loss="cross_entropy"):
        builds.append(data_dir)
        g = torch.Generator().manual_seed(0)
        x = torch.rand(48, 1, 4, 4, generator=g)
        y = x.flatten(1)[:, :3].argmax(1)
        return Task("toy", (x[:32], y[:32]), (x[32:], y[32:]), 3, loss)

    monkeypatch.setitem(TASKS, "toy", toy_task)
    return builds


def _spec():
    from layer_sim.training import NetworkSpec

    return NetworkSpec().replace(name="toy", widths=WIDTHS, epochs=1, batch_size=16)


def _edit_meta(change):
    def edit(d):
        meta = json.loads((d / "meta.json").read_text())
        change(meta)
        (d / "meta.json").write_text(json.dumps(meta))

    return edit


def _weights(transform):
    def edit(d):
        state = torch.load(d / "model.pt", weights_only=True)
        torch.save({k: transform(v) for k, v in state.items()}, d / "model.pt")

    return edit


def _replace_with_directory(name):
    def edit(d):
        (d / name).unlink()
        (d / name).mkdir()

    return edit


DAMAGE = {
    "NaN weights": (_weights(lambda t: t * float("nan")), r"model.pt holds NaN or Inf in fc1.weight \(the weights of a diverged network\)"),
    "Inf weights": (_weights(lambda t: t.masked_fill(t > 0, float("inf"))), r"model.pt holds NaN or Inf in"),
    "integer weights": (_weights(lambda t: t.long()), r"model.pt holds fc1.weight as torch.int64, not floating-point weights"),
    "meta.json a directory": (_replace_with_directory("meta.json"), r"meta.json is a directory, not a JSON file"),
    "metrics missing": (_edit_meta(lambda m: m.pop("metrics")), r"meta.json has no numeric metrics.test_accuracy and metrics.train_seconds"),
    "metrics a list": (_edit_meta(lambda m: m.__setitem__("metrics", [0.98])), r"meta.json has no numeric metrics"),
    "accuracy missing": (_edit_meta(lambda m: m["metrics"].pop("test_accuracy")), r"meta.json has no numeric metrics"),
    "accuracy as text": (_edit_meta(lambda m: m["metrics"].__setitem__("test_accuracy", "high")), r"meta.json has no numeric metrics"),
    "train seconds missing": (_edit_meta(lambda m: m["metrics"].pop("train_seconds")), r"meta.json has no numeric metrics"),
    "accuracy a bool": (_edit_meta(lambda m: m["metrics"].__setitem__("test_accuracy", True)), r"meta.json has no numeric metrics"),
}


@pytest.mark.parametrize("reader", ["train_or_load", "train_or_load_ensemble", "train_seeds"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cached_checkpoint_is_a_data_error_naming_the_file(tmp_path, toy, damage, reader):
    from layer_sim.experiments.seeds import train_seeds
    from layer_sim.training import checkpoint_dir, train_or_load, train_or_load_ensemble

    spec = _spec()
    train_or_load(spec, 0, cache_dir=tmp_path)
    edit, message = DAMAGE[damage]
    edit(checkpoint_dir(spec, 0, cache_dir=tmp_path))
    read = {
        "train_or_load": lambda: train_or_load(spec, 0, cache_dir=tmp_path),
        "train_or_load_ensemble": lambda: train_or_load_ensemble(spec, [0], cache_dir=tmp_path),
        "train_seeds": lambda: train_seeds([0], store=tmp_path / "results.sqlite", spec=spec, cache_dir=tmp_path),
    }[reader]
    # train_seeds runs the seed as a unit of a sweep: its DataError is the first error of the failed units.
    error = UnitsFailedError if reader == "train_seeds" else DataError
    with pytest.raises(error, match=message) as info:
        read()
    assert str(checkpoint_dir(spec, 0, cache_dir=tmp_path)) in str(info.value)
    assert len(toy) == 1  # never retrained over, never trained on


@pytest.mark.parametrize("damage", [d for d in DAMAGE if "weights" in d or "directory" in d])
def test_load_checkpoint_refuses_the_same_damage(tmp_path, toy, damage):
    from layer_sim.training import checkpoint_dir, load_checkpoint, train_or_load

    train_or_load(_spec(), 0, cache_dir=tmp_path)
    path = checkpoint_dir(_spec(), 0, cache_dir=tmp_path)
    edit, message = DAMAGE[damage]
    edit(path)
    with pytest.raises(DataError, match=message if "directory" not in damage else "has no complete checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("meta, message", [([1, 2], "meta must be a dict, got list"),
                                           ({"x": object()}, "meta must hold only what JSON can")])
def test_save_checkpoint_refuses_metadata_json_cannot_hold(tmp_path, meta, message):
    from layer_sim.models import MLP
    from layer_sim.training import save_checkpoint

    with pytest.raises(ConfigError, match=f"save_checkpoint: {message}"):
        save_checkpoint(tmp_path / "ck", MLP((4, 2)), meta=meta)
    assert not (tmp_path / "ck" / "meta.json").exists()


# ----------------------------------------------------------------------------- unwritable places, before any work


def test_a_cache_directory_that_is_a_file_is_refused_before_training(tmp_path, toy):
    from layer_sim.training import train_or_load, train_or_load_ensemble

    cache = tmp_path / "cache"
    cache.write_text("not a directory")
    for where, call in (("train_or_load", lambda: train_or_load(_spec(), 0, cache_dir=cache)),
                        ("train_or_load_ensemble", lambda: train_or_load_ensemble(_spec(), [0, 1], cache_dir=cache))):
        with pytest.raises(ConfigError, match=f"{where}: checkpoint directory {cache}/.*: exists and is not a directory"):
            call()
    assert toy == [] and cache.read_text() == "not a directory"


def test_a_cache_directory_nothing_can_be_written_in_is_refused_before_training(tmp_path, toy, monkeypatch):
    from layer_sim import _io
    from layer_sim.training import train_or_load

    # Root ignores permission bits: the refusal of a read-only file system is simulated where the
    # check writes its probe (the CLI tests exercise real permission bits in a subprocess).
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(_io.tempfile, "NamedTemporaryFile", read_only)
    with pytest.raises(ConfigError, match=r"train_or_load: checkpoint directory .*: cannot write there \(Read-only file system\)"):
        train_or_load(_spec(), 0, cache_dir=tmp_path / "cache")
    assert toy == [] and os.listdir(tmp_path) == []


def test_train_seeds_refuses_a_cache_that_is_a_file_before_training(tmp_path, toy):
    from layer_sim.experiments.seeds import train_seeds

    (tmp_path / "cache").write_text("x")
    with pytest.raises(UnitsFailedError, match=f"train_or_load: checkpoint directory {tmp_path / 'cache'}/.*: exists and is not a directory"):
        train_seeds([0], store=tmp_path / "results.sqlite", cache_dir=tmp_path / "cache", spec=_spec())
    assert toy == [] and (tmp_path / "cache").read_text() == "x"


def test_the_writability_check_creates_nothing(tmp_path):
    from layer_sim._io import writable_dir

    assert writable_dir(tmp_path / "a" / "b", what="--output") == tmp_path / "a" / "b"
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- reports: matrices, tables, figures


def _matrix(values=((1.0, 0.5),)):
    import numpy as np

    from layer_sim.analysis import SimilarityMatrix

    values = np.array(values)
    return SimilarityMatrix(values, tuple(f"a{i}" for i in range(values.shape[0])),
                            tuple(f"b{j}" for j in range(values.shape[1])), "linear_cka")  # fmt: skip


MATRIX_FILES = {
    "deeply nested JSON": ("m.json", "[" * 100_000 + "]" * 100_000, r"invalid JSON \(nested too deeply"),
    "repeated row names (JSON)": ("m.json", json.dumps({"measure": "x", "rows": ["a", "a"], "cols": ["b"], "values": [[1], [2]]}),
                                  "row name\\(s\\) 'a' appear more than once"),
    "repeated column names (CSV)": ("m.csv", "linear_cka,b,b\na,1,2\n", "column name\\(s\\) 'b' appear more than once"),
    "no rows (JSON)": ("m.json", json.dumps({"measure": "x", "rows": [], "cols": ["b"], "values": []}), '"rows" must be a non-empty list'),
    "no rows key": ("m.json", json.dumps({"measure": "x", "cols": ["b"], "values": [[1]]}), "no rows"),
    "NaN token": ("m.json", '{"measure": "x", "rows": ["a"], "cols": ["b"], "values": [[NaN]]}', "row 'a': nan is not a finite number"),
    "header only (CSV)": ("m.csv", "linear_cka,b1\n", "it has no rows"),
}


@pytest.mark.parametrize("name", list(MATRIX_FILES))
def test_a_damaged_matrix_file_is_a_data_error_naming_it(tmp_path, name):
    from layer_sim.report.files import load_matrix

    file, text, problem = MATRIX_FILES[name]
    (tmp_path / file).write_text(text)
    with pytest.raises(DataError, match=f"load_matrix: {tmp_path / file} is not a similarity matrix: {problem}"):
        load_matrix(tmp_path / file)


def test_deeply_nested_meta_json_is_a_data_error(tmp_path):
    from layer_sim.training import load_checkpoint, save_checkpoint
    from layer_sim.models import MLP

    save_checkpoint(tmp_path, MLP((4, 2)))
    (tmp_path / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"meta.json is not valid JSON \(nested too deeply"):
        load_checkpoint(tmp_path)


def test_a_table_with_nan_is_written_as_strict_json(tmp_path):
    from layer_sim.report.tables import write_table

    paths = write_table([{"measure": "x", "accuracy": float("nan"), "stderr": float("inf")}], tmp_path)
    records = json.loads((tmp_path / "table.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert records == [{"measure": "x", "accuracy": None, "stderr": None}] and len(paths) == 3


@pytest.mark.parametrize("call, error, message", [
    (lambda p: _save_figure(_heatmap(), p / "m.xyz"), "UnknownNameError", r"save_figure: unknown image format '.xyz' of .*; use one of .*\.png"),
    (lambda p: _save_figure(_heatmap(), p / "m.png", dpi=0), "ConfigError", r"save_figure: dpi must be a finite number in \(0, inf\], got 0"),
    (lambda p: _save_figure(_heatmap(), p / "m.png", dpi=float("nan")), "ConfigError", "save_figure: dpi must be a finite number"),
    (lambda p: _save_figure("figure.png", p / "m.png"), "InputError", "save_figure: fig must be a matplotlib Figure, got str"),
    (lambda p: _heatmap([[1.0]]), "InputError", "heatmap: matrix must be a SimilarityMatrix"),
    (lambda p: _grid([]), "InputError", "grid_figure: no matrices to draw"),
    (lambda p: _grid([_matrix()], titles=["a", "b"]), "ConfigError", "grid_figure: 2 titles for 1 matrices"),
    (lambda p: _save_matrix([[1.0]], p / "m.json"), "InputError", "save_matrix: matrix must be a SimilarityMatrix"),
])
def test_report_arguments_are_refused_naming_them(tmp_path, call, error, message):
    import layer_sim.errors

    with pytest.raises(getattr(layer_sim.errors, error), match=message):
        call(tmp_path)
    assert os.listdir(tmp_path) == []


def _heatmap(matrix=None):
    from layer_sim.report.figures import heatmap

    return heatmap(_matrix() if matrix is None else matrix).figure


def _grid(matrices, **kw):
    from layer_sim.report.figures import grid_figure

    return grid_figure(matrices, **kw)


def _save_figure(fig, path, **kw):
    from layer_sim.report.figures import save_figure

    return save_figure(fig, path, **kw)


def _save_matrix(matrix, path):
    from layer_sim.report.files import save_matrix

    return save_matrix(matrix, path)
