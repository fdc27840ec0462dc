"""MNIST loader: IDX parsing, lookup order, checksum/truncation/magic errors, atomic download."""

import gzip
import hashlib
import os
import struct
import urllib.error

import numpy as np
import pytest
import torch

from layer_sim.data import load_mnist, mnist_dir
from layer_sim._io import atomic_write
from layer_sim.data import mnist as mnist_mod
from layer_sim.errors import ConfigError, DataError



def _idx_images(arr: np.ndarray) -> bytes:
    n, r, c = arr.shape
    return struct.pack(">IIII", 2051, n, r, c) + arr.astype(np.uint8).tobytes()


def _idx_labels(arr: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(arr)) + arr.astype(np.uint8).tobytes()


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """Tiny train split (5 images of 28x28) in tmp_path; its checksums registered; no network."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    files = {
        "train-images-idx3-ubyte.gz": gzip.compress(_idx_images(images)),
        "train-labels-idx1-ubyte": _idx_labels(labels),  # one raw, one compressed
    }
    sums = {}
    for name, payload in files.items():
        (tmp_path / name).write_bytes(payload)
        sums[name] = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(mnist_mod, "SHA256", sums)

    def no_network(url):
        raise AssertionError(f"test tried to download {url}")

    monkeypatch.setattr(mnist_mod, "_fetch", no_network)
    return tmp_path, images, labels


def test_parses_gz_and_raw_idx(synthetic):
    root, images, labels = synthetic
    x, y = load_mnist("train", root)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    np.testing.assert_array_equal(y.numpy(), labels)
    np.testing.assert_allclose(x[:, 0].numpy(), images / 255.0, rtol=1e-6)
    assert x[0, 0, 0, 0] == 0.0 and x[0, 0, 0, 1] == 1.0


def test_returned_tensors_are_independent_of_the_cache(synthetic):
    root, images, _ = synthetic
    x, y = load_mnist("train", root)
    x.zero_()
    y.zero_()
    x2, y2 = load_mnist("train", root)
    np.testing.assert_allclose(x2[:, 0].numpy(), images / 255.0, rtol=1e-6)
    assert y2.sum() > 0


def test_lookup_order_argument_then_env_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYER_SIM_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist_dir(tmp_path / "arg") == tmp_path / "arg"
    assert mnist_dir() == tmp_path / "env"
    monkeypatch.delenv("LAYER_SIM_DATA")
    assert mnist_dir() == tmp_path / "home" / ".cache" / "layer_sim" / "mnist"


def test_env_variable_is_used(synthetic, monkeypatch):
    root, _, labels = synthetic
    monkeypatch.setenv("LAYER_SIM_DATA", str(root))
    _, y = load_mnist("train")
    np.testing.assert_array_equal(y.numpy(), labels)


def test_truncated_file_names_the_file(synthetic, monkeypatch):
    root, _, _ = synthetic
    path = root / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte is truncated: 11 bytes.*13"):
        load_mnist("train", root)


def test_truncated_gzip_names_the_file(synthetic):
    root, _, _ = synthetic
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is truncated or not a valid gzip"):
        load_mnist("train", root)


def test_wrong_magic_names_the_file(synthetic, monkeypatch):
    root, _, labels = synthetic
    payload = struct.pack(">II", 2051, len(labels)) + labels.tobytes()
    (root / "train-labels-idx1-ubyte").write_bytes(payload)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte has magic number 2051, expected 2049"):
        load_mnist("train", root)


def test_checksum_mismatch_names_the_file(synthetic, monkeypatch):
    root, _, labels = synthetic
    # Structurally valid, different content: only the checksum can catch it.
    (root / "train-labels-idx1-ubyte").write_bytes(_idx_labels(labels[::-1]))
    with pytest.raises(DataError, match="checksum mismatch for .*train-labels-idx1-ubyte"):
        load_mnist("train", root)


def test_unknown_split_is_a_config_error(synthetic):
    with pytest.raises(ConfigError, match="unknown split 'validation'"):
        load_mnist("validation", synthetic[0])


def test_missing_and_offline_gives_one_line_hint(tmp_path, monkeypatch):
    def offline(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(mnist_mod, "_fetch", offline)
    with pytest.raises(DataError) as info:
        load_mnist("test", tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "t10k-images-idx3-ubyte.gz not found in " + str(tmp_path) in msg
    assert "LAYER_SIM_DATA" in msg and "could not be downloaded" in msg
    assert "--data-dir" in msg  # the CLI users' way to point at the files
    assert list(tmp_path.iterdir()) == []


def test_missing_without_download_is_not_fetched(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_mod, "_fetch", lambda url: pytest.fail("fetched"))
    with pytest.raises(DataError, match="not found in"):
        load_mnist("train", tmp_path, download=False)


def test_download_writes_verified_file_atomically(tmp_path, monkeypatch):
    images = np.zeros((2, 28, 28), np.uint8)
    payloads = {
        "t10k-images-idx3-ubyte.gz": gzip.compress(_idx_images(images)),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(_idx_labels(np.array([7, 2]))),
    }
    monkeypatch.setattr(
        mnist_mod, "SHA256", {k: hashlib.sha256(v).hexdigest() for k, v in payloads.items()}
    )
    calls = []

    def fake_fetch(url):
        calls.append(url)
        if url.startswith(mnist_mod.MIRRORS[0]):  # first mirror down, second one works
            raise urllib.error.URLError("mirror down")
        return payloads[url.rsplit("/", 1)[1]]

    monkeypatch.setattr(mnist_mod, "_fetch", fake_fetch)
    dest = tmp_path / "new" / "dir"
    x, y = load_mnist("test", dest)
    assert y.tolist() == [7, 2] and x.shape == (2, 1, 28, 28)
    assert sorted(p.name for p in dest.iterdir()) == sorted(payloads)
    assert len(calls) == 4
    # Second load finds the files: no more fetches.
    load_mnist("test", dest)
    assert len(calls) == 4


def test_corrupt_download_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_mod, "_fetch", lambda url: b"<html>not the file</html>")
    with pytest.raises(DataError, match="checksum mismatch for https://.*train-images-idx3-ubyte.gz"):
        load_mnist("train", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "f.gz", lambda fh: fh.write(b"abc"))
    assert list(tmp_path.iterdir()) == []


def test_real_mnist_files():
    # The product's own lookup (LAYER_SIM_DATA, set by conftest/CI, else the cache, else a
    # download): never a skip, so missing data fails visibly like the sanity-check tests do.
    x_test, y_test = load_mnist("test")
    assert x_test.shape == (10000, 1, 28, 28)
    # Published class counts of the MNIST test set.
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(y_test).tolist() == counts
    assert float(x_test.min()) == 0.0 and float(x_test.max()) == 1.0
    x_train, y_train = load_mnist("train")
    assert x_train.shape == (60000, 1, 28, 28) and len(y_train) == 60000
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    # Independent parse with the stdlib: gzip + struct.
    raw = gzip.decompress((mnist_dir() / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert struct.unpack(">IIII", raw[:16]) == (2051, 10000, 28, 28)
    first = np.frombuffer(raw[16 : 16 + 784], np.uint8).reshape(28, 28)
    np.testing.assert_allclose(x_test[0, 0].numpy(), first / 255.0, rtol=1e-6)
