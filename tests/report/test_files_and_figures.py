"""report: SimilarityMatrix files (round trip, damaged files are DataErrors naming the file) and figures
(labelled heatmaps, written atomically)."""

import json
import os

import numpy as np
import pytest

from layer_sim.analysis import SimilarityMatrix
from layer_sim.errors import DataError, UnknownNameError
from layer_sim.report.figures import heatmap, save_figure
from layer_sim.report.files import load_matrix, save_matrix


def _matrix():
    return SimilarityMatrix(
        np.array([[1.0, 0.25, 1 / 3], [0.5, 0.125, 2.0]]), ("act1", "act2"), ("x", "y", "z"),
        "rbf_cka", {"sigma": 0.4}, row_label="network 0", col_label="network 1",
    )


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_save_load_round_trip(tmp_path, suffix):
    s = _matrix()
    back = load_matrix(save_matrix(s, tmp_path / f"m{suffix}"))
    np.testing.assert_array_equal(back.values, s.values)  # repr round-trips float64 exactly
    assert back.rows == s.rows and back.cols == s.cols
    if suffix == ".json":
        assert (back.measure, back.params, back.row_label) == ("rbf_cka", {"sigma": 0.4}, "network 0")
        assert json.loads((tmp_path / "m.json").read_text())["values"][1][2] == 2.0
    else:
        assert back.measure == "rbf_cka(sigma=0.4)"


def test_save_rejects_unknown_suffix(tmp_path):
    with pytest.raises(UnknownNameError, match=r"\.txt"):
        save_matrix(_matrix(), tmp_path / "m.txt")


def test_csv_is_what_pandas_reads(tmp_path):
    # An independent reader of the format: pandas, as a user would open the file.
    import pandas as pd

    frame = pd.read_csv(save_matrix(_matrix(), tmp_path / "m.csv"), index_col=0)
    assert frame.index.name == "rbf_cka(sigma=0.4)" and list(frame.columns) == ["x", "y", "z"]
    np.testing.assert_array_equal(frame.to_numpy(), _matrix().values)


_GOOD = {"measure": "m", "rows": ["a"], "cols": ["b", "c"], "values": [[1.0, 0.5]]}


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("empty.json", "", "invalid JSON"),
        ("truncated.json", json.dumps(_GOOD)[:-9], "invalid JSON"),
        ("list.json", "[1, 2]", "is a list, not an object"),
        ("norows.json", json.dumps({k: v for k, v in _GOOD.items() if k != "rows"}), "no rows"),
        ("ragged.json", json.dumps({**_GOOD, "values": [[1.0]]}), "1 lists of 2 numbers"),
        ("text.json", json.dumps({**_GOOD, "values": [[1.0, "high"]]}), "'high' is not a number"),
        ("nan.json", json.dumps({**_GOOD, "values": [[1.0, float("nan")]]}), "not a finite number"),
        ("names.json", json.dumps({**_GOOD, "cols": [1, 2]}), '"cols" must be a non-empty list'),
        ("empty.csv", "", "it is empty"),
        ("header.csv", "title\n", "no column names"),
        ("norows.csv", "title,b,c\n", "no rows"),
        ("ragged.csv", "title,b,c\na,1.0\n", "line 2 has 2 cells"),
        ("text.csv", "title,b,c\na,1.0,x\n", "line 2: 'x' is not a number"),
    ],
)
def test_damaged_files_are_data_errors_naming_file_and_problem(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=f"{path}.*{problem}"):
        load_matrix(path)


def test_binary_garbage_is_a_data_error(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(DataError, match="not a text file"):
        load_matrix(path)


def test_heatmap_has_labelled_axes_colorbar_and_annotations(tmp_path):
    ax = heatmap(_matrix())
    assert ax.get_xlabel() == "network 1 layer" and ax.get_ylabel() == "network 0 layer"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["act1", "act2"]
    assert "0.33" in [t.get_text() for t in ax.texts]
    assert len(ax.figure.axes) == 2  # heatmap + colour bar
    path = save_figure(ax.figure, tmp_path / "m.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_a_figure_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    path = save_figure(heatmap(_matrix()).figure, tmp_path / "m.png")
    before = path.read_bytes()

    from matplotlib.figure import Figure

    class Broken(Figure):
        def savefig(self, fh, **kw):
            fh.write(b"\x89PNG")  # a partial image, then the writer dies
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_figure(Broken(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.png"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_the_umask_allows(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        figure = save_figure(heatmap(_matrix()).figure, tmp_path / "m.png")
        matrix = save_matrix(_matrix(), tmp_path / "m.json")
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in (figure, matrix)] == [mode, mode]
