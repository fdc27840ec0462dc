"""The gradient study's section of the report: its tables show what the store holds (read here with plain sqlite3),
its three figures (side-by-side heatmaps, per-layer accuracy, curves) are embedded PNGs, and an unfinished or damaged
study is reported, not fatal."""

import base64
import json
import re
import shutil
import sqlite3

import pytest
from _reading import report_section
from matplotlib.image import imread
from typer.testing import CliRunner

from layer_sim._io import canonical_json
from layer_sim.cli import app
from layer_sim.experiments import experiment_key
from layer_sim.experiments import gradient_study as gs
from layer_sim.report.html import render_html
from layer_sim.report.sections import Figure, Table, Text, build_report
from layer_sim.store import Store
from layer_sim.training import NetworkSpec

TINY = NetworkSpec().replace(widths=(784, 12, 12, 10), epochs=2, limit_train=300, batch_size=50, warmup_epochs=0)
SPEC = gs.GradientStudySpec(TINY, nets=3, examples=40, trajectory_seeds=(0, 1))
COMMAND = ["layer-sim", "gradient-study", "--output", "out", "--nets", "3"]
TITLE = "Gradient CKA vs vanilla CKA (Tang et al. 2020): layer identification and training"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradient-report")
    path = root / "study" / "results.sqlite"
    gs.run_gradient_study(SPEC, path, cache_dir=root / "cache", command=COMMAND)
    return path


def _identification_metrics(path) -> dict[str, dict[str, float]]:
    """Index label -> metrics of its identification run, straight from the store's tables."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT r.spec, m.name, m.value FROM runs r JOIN metrics m ON m.key = r.key "
                           "WHERE r.kind = 'gradient_study.identification' AND r.status = 'done'").fetchall()
    finally:
        con.close()
    out: dict[str, dict[str, float]] = {}
    for spec, name, value in rows:
        out.setdefault(json.loads(spec)["index"]["label"], {})[name] = value
    return out


def test_the_tables_show_the_store_s_identifications(store):
    doc, sec = report_section(store, TITLE)
    assert len(doc.sections) == 1  # every run belongs to the experiment: no generic section
    stored = _identification_metrics(store)
    assert set(stored) == {i.label for i in gs.INDEXES}
    tables = {b.caption: b for b in sec.blocks if isinstance(b, Table)}
    main = tables["Layer identification accuracy (%) with and without gradients"]
    assert [r["index"] for r in main.records] == [i.label for i in gs.INDEXES]  # in the study's order
    for r in main.records:
        m = stored[r["index"]]
        assert r["accuracy"] == pytest.approx(100 * m["accuracy"], abs=1e-4)
        assert r["stderr"] == pytest.approx(100 * m["stderr"], abs=1e-4)
    # each accuracy is a share of the 3 * 2 ordered network pairs times 2 layers
    assert all(round(r["accuracy"] * 12 / 100, 3).is_integer() for r in main.records)
    per_layer = tables["Identification accuracy per layer (%)"]
    for r in per_layer.records:
        assert {k: r[k] for k in ("act1", "act2")} == pytest.approx(
            {k: 100 * stored[r["index"]][f"per_layer/{k}"] for k in ("act1", "act2")}, abs=0.005)
    texts = " ".join(b.text for b in sec.blocks if isinstance(b, Text))
    assert "3 MLPs [784, 12, 12, 10]" in texts and "40 MNIST test images" in texts and "beta = 0.5" in texts
    assert "Seeds: 0, 1, 2." in texts  # provenance: the networks' and the trajectories' seeds


def test_the_three_figures_are_pngs_that_are_not_blank(store, tmp_path):
    _, sec = report_section(store, TITLE)
    figures = [b for b in sec.blocks if isinstance(b, Figure)]
    assert [f.name for f in figures] == ["grid", "per-layer", "curves"]
    for f in figures:
        (tmp_path / f"{f.name}.png").write_bytes(f.png)
        pixels = imread(tmp_path / f"{f.name}.png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0.01, f.name


def test_layer_sim_report_renders_the_section_in_html_and_markdown(store, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--store", str(store), "--output", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert TITLE in page and "layer-sim gradient-study --output out --nets 3" in page
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    for s in sources:
        assert base64.b64decode(s.split(",", 1)[1], validate=True)[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 3 and all((out / link).is_file() for link in links)
    acc = _identification_metrics(store)["gradient CKA (Tang)"]
    assert f"| gradient CKA (Tang) | tang | {100 * acc['accuracy']:.1f} | {100 * acc['stderr']:.1f} |" in md
    assert page.count("<table>") == md.count("|---|")


def test_an_unfinished_study_is_reported_as_such(tmp_path):
    path = tmp_path / "results.sqlite"
    with Store(path, write=True) as s:  # recorded, nothing run yet (as while stage 1 trains)
        s.record_experiment(experiment_key(gs.NAME, SPEC), name=gs.NAME, spec_json=canonical_json(SPEC.to_dict()))
    _, sec = report_section(path, TITLE)
    assert any(b.text.startswith("Not complete, so not shown: gradient study: 11 of 11 units are not done")
               for b in sec.blocks if isinstance(b, Text))


def test_a_missing_identification_file_is_reported_not_fatal(store, tmp_path):
    copy = tmp_path / "study"
    shutil.copytree(store.parent, copy)
    victims = sorted((copy / "artefacts").glob("*/identification.npz"))
    assert len(victims) == len(gs.INDEXES)
    victims[0].unlink()
    with Store(copy / "results.sqlite") as s:
        page = render_html(build_report(s))
    assert "Cannot be shown: gradient study: the identification file" in page and "cannot be read" in page
