"""Figures for similarity matrices and layer identification (matplotlib ``Figure``s, no pyplot/display)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from layer_sim._io import atomic_write
from layer_sim._options import Int, Real, check, strict_signature
from layer_sim.analysis import LayerIdentification, SimilarityMatrix
from layer_sim.errors import ConfigError, InputError, UnknownNameError

__all__ = ["heatmap", "grid_figure", "per_layer_accuracy_figure", "save_figure"]

# Cells beyond this many rows/columns get no numbers written in them (they would be unreadable).
_MAX_ANNOTATED = 16


@strict_signature
def heatmap(matrix: SimilarityMatrix, ax=None, *, annotate: bool = True, cmap: str = "magma",
            vmin=None, vmax=None, colorbar: bool = True, title: str | None = None):
    """Draw ``matrix`` as a heatmap: rows top to bottom, columns left to right, values written in.

    Returns the Axes; without ``ax`` a new ``Figure`` (reachable as ``ax.figure``) is made, with
    labelled axes and a colour bar. Cells are annotated up to 16 rows/columns.

    Examples
    --------
    >>> import numpy as np
    >>> ax = heatmap(SimilarityMatrix(np.eye(2), ("a1", "a2"), ("b1", "b2"), "linear_cka",
    ...                               row_label="network 0", col_label="network 1"))
    >>> ax.get_xlabel(), ax.get_ylabel(), [t.get_text() for t in ax.texts]
    ('network 1 layer', 'network 0 layer', ['1.00', '0.00', '0.00', '1.00'])
    """
    if not isinstance(matrix, SimilarityMatrix):
        raise InputError(f"heatmap: matrix must be a SimilarityMatrix, got {type(matrix).__name__}")
    if ax is None:
        rows, cols = matrix.values.shape
        fig = Figure(figsize=(1.2 + 0.55 * max(cols, 4), 0.9 + 0.5 * max(rows, 4)), layout="constrained")
        ax = fig.add_subplot()
    v = matrix.values
    im = ax.imshow(v, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(matrix.cols)), matrix.cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(matrix.rows)), matrix.rows, fontsize=8)
    ax.set_xlabel(f"{matrix.col_label} layer")
    ax.set_ylabel(f"{matrix.row_label} layer")
    ax.set_title(matrix.title if title is None else title, fontsize=9)
    if annotate and max(v.shape) <= _MAX_ANNOTATED:
        lo, hi = im.get_clim()
        mid = (lo + hi) / 2
        for i in range(v.shape[0]):
            for j in range(v.shape[1]):
                # Dark text on light cells, light text on dark cells (magma is dark at the low end).
                ax.text(j, i, _fmt(v[i, j]), ha="center", va="center", fontsize=6,
                        color="black" if v[i, j] > mid else "white")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=matrix.measure)
    return ax


@strict_signature
def grid_figure(matrices: Sequence[SimilarityMatrix], *, titles: Sequence[str] | None = None,
                ncols: int = 4, suptitle: str | None = None) -> Figure:
    """All ``matrices`` side by side in one figure, each with its own colour bar."""
    n = len(matrices)
    if n == 0:
        raise InputError("grid_figure: no matrices to draw")
    if titles is not None and len(titles) != n:
        raise ConfigError(f"grid_figure: {len(titles)} titles for {n} matrices")
    ncols = max(1, min(check("grid_figure", "ncols", Int(1), ncols), n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.2 * nrows), layout="constrained")
    for k, mat in enumerate(matrices):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        heatmap(mat, ax=ax, annotate=max(mat.values.shape) <= 8,
                title=None if titles is None else titles[k])
    if suptitle:
        fig.suptitle(suptitle)
    return fig


@strict_signature
def per_layer_accuracy_figure(results: Sequence[LayerIdentification], *,
                              labels: Sequence[str] | None = None) -> Figure:
    """Layer identification accuracy (%) as a measures x layers heatmap, every cell annotated.

    A table-like heatmap rather than one line per measure: with a dozen measures many lines
    coincide (e.g. all at 100%) and hide each other.
    """
    labels = [r.measure for r in results] if labels is None else list(labels)
    layers = list(results[0].layers) if results else []
    acc = np.array([[100 * r.per_layer[k] for k in layers] for r in results]).reshape(len(results), len(layers))
    fig = Figure(figsize=(2.6 + 0.9 * max(len(layers), 3), 1.2 + 0.38 * max(len(results), 3)), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(acc, cmap="viridis", vmin=0, vmax=100, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(layers)), layers)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("layer of network A")
    ax.set_ylabel("similarity index")
    ax.set_title("Per-layer identification accuracy (%)", fontsize=10)
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            ax.text(j, i, f"{acc[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="black" if acc[i, j] > 50 else "white")
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    return fig


@strict_signature
def save_figure(fig: Figure, path, *, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, e.g. ``.png``, ``.pdf``) atomically.

    The image goes to a temporary file that replaces ``path`` only when complete, so an
    interrupted run never leaves a truncated image; the file gets the mode the umask allows.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = save_figure(Figure(), Path(d) / "empty.png", dpi=20)
    ...     path.name, path.read_bytes()[1:4]
    ('empty.png', b'PNG')
    """
    if not isinstance(fig, Figure):
        raise InputError(f"save_figure: fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    formats = fig.canvas.get_supported_filetypes()
    if fmt not in formats:
        raise UnknownNameError(f"save_figure: unknown image format {path.suffix!r} of {path}; "
                               f"use one of {', '.join('.' + f for f in sorted(formats))}")
    dpi = check("save_figure", "dpi", Real(0, low_open=True), dpi)
    atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi))
    return path


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return ""
    return f"{x:.2f}" if abs(x) < 100 else f"{x:.3g}"
