"""MNIST from the original IDX files: locate, download (atomically), verify SHA-256, parse."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from layer_sim import settings
from layer_sim._io import atomic_write
from layer_sim._options import Flag, Int, check, strict_signature
from layer_sim.errors import ConfigError, DataError

__all__ = ["load_mnist", "digit_pair", "mnist_dir", "FILES", "SHA256", "MIRRORS"]

#: IDX file stems per split: (images, labels).
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: SHA-256 of the original files, both gzip-compressed (as distributed) and decompressed.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Mirrors of the original ``.gz`` files, tried in order (yann.lecun.com itself is unreliable).
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

_MAGIC = {"images": 2051, "labels": 2049}  # IDX: 0x0000 08 (ubyte) 03 / 01 (number of dims)
_ENV = settings.DATA_ENV


@strict_signature
def mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory MNIST is read from (and downloaded into).

    Lookup order: the ``data_dir`` argument, then the environment variable ``LAYER_SIM_DATA``,
    then ``~/.cache/layer_sim/mnist``. The first one that is set wins; it need not exist yet.
    """
    return settings.data_dir(data_dir)


@strict_signature
def load_mnist(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Load one MNIST split as tensors, verifying every file's SHA-256.

    Pixel bytes :math:`b \in \{0, \dots, 255\}` become :math:`x = b / 255 \in [0, 1]`;
    no mean/std normalisation is applied.

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        60,000 training or 10,000 test examples (LeCun et al., 1998).
    data_dir : path-like or None, default=None
        Directory holding the four IDX files, either ``.gz`` (as distributed) or decompressed.
        ``None`` uses ``$LAYER_SIM_DATA``, then ``~/.cache/layer_sim/mnist`` (see :func:`mnist_dir`).
    download : bool, default=True
        If a file is missing, fetch the ``.gz`` from :data:`MIRRORS`, check its SHA-256 and move
        it into place atomically (temporary file + :func:`os.replace`), so an interrupted or
        corrupt download never leaves a partial file behind.

    Returns
    -------
    images : torch.Tensor of shape (n, 1, 28, 28), dtype float32, values in [0, 1]
    labels : torch.Tensor of shape (n,), dtype int64, values in 0..9

    Raises
    ------
    DataError
        A file is missing and cannot be downloaded (the message says where to put it), is truncated,
        has a wrong IDX magic number, or its SHA-256 differs from the published one. The message
        names the file.
    ConfigError
        ``split`` is not "train" or "test".

    References
    ----------
    Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document
    recognition. Proc. IEEE 86(11), 1998. IDX format: http://yann.lecun.com/exdb/mnist/
    """
    if not isinstance(split, str) or split not in FILES:
        raise ConfigError(f"load_mnist: unknown split {split!r}; choose 'train' or 'test'")
    download = check("load_mnist", "download", Flag(), download)
    root = mnist_dir(data_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"MNIST: the data directory {root} is a file, not a directory")
    img_stem, lbl_stem = FILES[split]
    img_path = _locate(root, img_stem, download=download)
    lbl_path = _locate(root, lbl_stem, download=download)
    images = _read_idx(str(img_path), *_stamp(img_path), kind="images")
    labels = _read_idx(str(lbl_path), *_stamp(lbl_path), kind="labels")
    if len(images) != len(labels):
        raise DataError(
            f"MNIST: {img_path.name} has {len(images)} images but {lbl_path.name} has {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"MNIST: {lbl_path} contains label {int(labels.max())} outside 0..9")
    # Fresh tensors per call: callers may modify them without touching the in-process cache.
    x = torch.from_numpy(np.divide(images, np.float32(255.0), dtype=np.float32)).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


@strict_signature
def digit_pair(
    a: int,
    b: int,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The MNIST images of two digits, relabelled 0 (digit ``a``) and 1 (digit ``b``).

    Every image of ``split`` whose label is ``a`` or ``b``, in file order, with the pixels of
    :func:`load_mnist` (:math:`x = b / 255 \in [0, 1]`, no normalisation): the inputs of the
    digit-pair runs of S2 (``shared/reference/seed-systems.md``), which flatten them to 784.
    The result is an ``(inputs, labels)`` pair, so it goes straight to
    :func:`~layer_sim.representations.extract`; :func:`~layer_sim.data.digit_pair_task` makes the
    :class:`~layer_sim.data.Task` that :func:`~layer_sim.training.fit` trains on.

    Parameters
    ----------
    a, b : int in 0..9, a != b
        The digits; ``a`` becomes label 0 and ``b`` label 1 (so ``digit_pair(7, 2)`` swaps them).
    split : {"train", "test"}, default="train"
    data_dir : path-like or None, default=None
        See :func:`load_mnist`.
    download : bool, default=True
        See :func:`load_mnist`.

    Returns
    -------
    images : torch.Tensor of shape (n, 1, 28, 28), float32 in [0, 1]
    labels : torch.Tensor of shape (n,), int64 in {0, 1}

    Raises
    ------
    ConfigError
        A digit outside 0..9, not an integer, or ``a == b``; an unknown ``split``.

    Examples
    --------
    >>> x, y = digit_pair(0, 1, "test")
    >>> x.shape, int((y == 0).sum()), int((y == 1).sum())  # 980 zeros and 1135 ones
    (torch.Size([2115, 1, 28, 28]), 980, 1135)
    """
    a, b = _check_digits("digit_pair", a, b)
    images, labels = load_mnist(split, data_dir, download=download)
    keep = (labels == a) | (labels == b)
    return images[keep], (labels[keep] == b).to(torch.int64)


def _check_digits(where: str, a, b) -> tuple[int, int]:
    a, b = check(where, "a", Int(0, 9), a), check(where, "b", Int(0, 9), b)
    if a == b:
        raise ConfigError(f"{where}: the two digits must differ, got a = b = {a}")
    return a, b


def _stamp(path: Path) -> tuple[int, int, int]:
    # Cache key: a replaced or rewritten file changes inode, mtime or size, and is parsed anew.
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _locate(root: Path, stem: str, *, download: bool) -> Path:
    """The existing ``stem.gz`` or ``stem`` in ``root``; otherwise download ``stem.gz`` there."""
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    target = root / (stem + ".gz")
    hint = (
        f"put the MNIST IDX files ({stem}.gz etc.) in {root}, or point data_dir= (CLI: --data-dir) or "
        f"{_ENV} to the folder holding them"
    )
    if not download:
        raise DataError(f"MNIST file {target.name} not found in {root}; {hint}")
    errors = []
    for mirror in MIRRORS:
        try:
            payload = _fetch(mirror + target.name)
        except (OSError, urllib.error.URLError) as exc:  # offline, DNS, HTTP error, timeout
            errors.append(f"{mirror}: {exc}")
            continue
        _check_sha(target.name, payload, source=mirror + target.name)
        atomic_write(target, lambda fh: fh.write(payload))
        return target
    raise DataError(
        f"MNIST file {target.name} not found in {root} and could not be downloaded "
        f"({'; '.join(errors)}); {hint}"
    )


def _fetch(url: str) -> bytes:
    """Bytes at ``url``; tests replace this function so they never touch the network."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def _check_sha(name: str, payload: bytes, *, source: str) -> None:
    expected = SHA256.get(name)
    got = hashlib.sha256(payload).hexdigest()
    if expected is not None and got != expected:
        raise DataError(
            f"MNIST: checksum mismatch for {source}: SHA-256 {got}, expected {expected}; "
            "delete the file and let it download again, or replace it with the original"
        )


@functools.lru_cache(maxsize=8)
def _read_idx(path: str, inode: int, mtime_ns: int, size: int, *, kind: str) -> np.ndarray:
    """Parse and verify one IDX file into a read-only uint8 array; cached per file version."""
    name = os.path.basename(path)
    stored = Path(path).read_bytes()
    raw = stored
    if name.endswith(".gz"):
        try:
            raw = gzip.decompress(stored)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"MNIST: {path} is truncated or not a valid gzip file ({exc})") from exc
    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"MNIST: {path} is truncated: {len(raw)} bytes, shorter than the IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _MAGIC[kind]:
        raise DataError(
            f"MNIST: {path} has magic number {magic}, expected {_MAGIC[kind]} for an IDX {kind} file"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"MNIST: {path} is {state}: {len(raw)} bytes, header {dims} implies {expected}"
        )
    # Structure first, checksum second: "truncated" is a more useful message than "mismatch".
    _check_sha(name, stored, source=path)
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    arr.flags.writeable = False
    return arr
