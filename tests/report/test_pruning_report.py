"""The pruning study's section of the report: its tables show what the store holds (read here with plain sqlite3),
its two figures (similarity and accuracy against sparsity) are embedded PNGs, and an unfinished study is reported as
such, not fatal."""

import base64
import json
import math
import re
import sqlite3

import pytest
from _reading import report_section
from matplotlib.image import imread
from typer.testing import CliRunner

from layer_sim._io import canonical_json
from layer_sim.cli import app
from layer_sim.experiments import experiment_key
from layer_sim.experiments import pruning as study
from layer_sim.report.sections import Figure, Table, Text
from layer_sim.store import Store

ARGS = ["--seeds", "0,1", "--epochs", "1", "--iterations", "1", "--examples", "300", "--limit-train", "300"]
SPEC = study.PruningStudySpec(seeds=(0, 1), epochs=1, iterations=1, examples=300, limit_train=300)
TITLE = "Pruning study: IMP-pruned vs complete LeNet-5, layer by layer"
LAYERS = ["features.1", "features.2", "features.4", "features.5", "classifier.1", "classifier.3", "output"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The tiny study run by its command (MNIST's test split cut to 1,000 images: every training evaluates on it)."""
    from layer_sim.data import TASKS, Task, mnist_task

    def mnist_1k(**kw):
        t = mnist_task(**kw)
        return Task(t.name, t.train, (t.test[0][:1000], t.test[1][:1000]), t.num_classes, t.loss)

    root = tmp_path_factory.mktemp("pruning-report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TASKS, "mnist", mnist_1k)
        res = CliRunner().invoke(app, ["pruning-study", "--output", str(root / "study"), *ARGS,
                                       "--cache-dir", str(root / "cache")])  # fmt: skip
    assert res.exit_code == 0, res.output
    return root / "study" / "results.sqlite"


def _runs(path) -> list[tuple[str, dict, dict[str, float]]]:
    """(kind, spec, metrics) of every done run, straight from the store's tables."""
    con = sqlite3.connect(path)
    try:
        runs = con.execute("SELECT key, kind, spec FROM runs WHERE status = 'done'").fetchall()
        metrics = con.execute("SELECT key, name, value FROM metrics").fetchall()
    finally:
        con.close()
    by_key: dict[str, dict[str, float]] = {}
    for key, name, value in metrics:
        by_key.setdefault(key, {})[name] = value
    return [(kind, json.loads(spec), by_key.get(key, {})) for key, kind, spec in runs]


def test_the_tables_show_the_store_s_networks_and_similarities(store):
    doc, sec = report_section(store, TITLE)
    assert len(doc.sections) == 1  # every run belongs to the experiment: no generic section
    runs = _runs(store)
    assert sorted(kind for kind, _, _ in runs) == ["network.train"] * 2 + ["pruning.compare"] * 3 + ["pruning.imp"] * 2
    tables = {b.caption.split(":")[0]: b for b in sec.blocks if isinstance(b, Table)}

    networks = tables["Networks (iteration 0"].records
    accuracy = {(spec["seed"], 0): m["test_accuracy"] for kind, spec, m in runs if kind == "network.train"}
    accuracy |= {(spec["seed"], 1): m["test_accuracy/1"] for kind, spec, m in runs if kind == "pruning.imp"}
    assert {(r["seed"], r["iteration"]): r["test_accuracy"] for r in networks} == accuracy
    # One iteration at rate 0.5 of LeNet-5's 43,576 prunable weights (S1's patterns) prunes exactly half of them.
    assert [(r["iteration"], r["sparsity"], r["pruned"], r["prunable"]) for r in networks] == \
        [(0, 0.0, 0, 43576), (1, 0.5, 21788, 43576)] * 2  # fmt: skip

    def values(reference, seed, iteration, key, layer):
        return [m[f"{key}/{layer}"] for kind, spec, m in runs if kind == "pruning.compare"
                and (spec["reference"], spec["other"]["seed"], spec["other"]["iteration"]) == (reference, seed, iteration)]

    summary = tables["Per index and layer"]
    labels = {m.label: k for k, m in study.MEASURES.items()}
    assert [(r["measure"], r["layer"]) for r in summary.records] == [(study.MEASURES[k].label, layer)
                                                                     for k in SPEC.measures for layer in LAYERS]
    for r in summary.records:
        key, layer = labels[r["measure"]], r["layer"]
        (floor,) = values(0, 1, 0, key, layer)
        pruned = values(0, 0, 1, key, layer) + values(1, 1, 1, key, layer)
        assert r["noise_floor"] == pytest.approx(floor, abs=1e-12)
        assert r["iteration_1"] == pytest.approx(math.fsum(pruned) / 2, abs=1e-12)
        assert r["margin"] == pytest.approx(min(pruned) - floor, abs=1e-12)
        assert 0.0 <= r["noise_floor"] <= 1.0 and 0.0 <= r["iteration_1"] <= 1.0

    per_tensor = tables["Share pruned per prunable tensor and iteration (mean over seeds)"].records
    assert len(per_tensor) == 8 and sum(r["size"] for r in per_tensor) == 43576
    assert sum(r["size"] * r["iteration_1"] for r in per_tensor) == pytest.approx(21788, abs=1e-6)

    texts = " ".join(b.text for b in sec.blocks if isinstance(b, Text))
    assert "seeds 0, 1, 1 epochs per training" in texts and "first 300 MNIST test images" in texts
    assert "features.1 as 172800 x 6" in texts  # 300 images x 24 x 24 positions, 6 channels
    assert "classifier.1 as" not in texts  # dense layers are one row per image under any layout
    assert "by linear CKA; NBS; mean CCA, SVD 99 %; PWCCA;" in texts
    assert "Seeds: 0, 1." in texts  # provenance


def test_the_two_figures_are_pngs_that_are_not_blank(store, tmp_path):
    _, sec = report_section(store, TITLE)
    figures = [b for b in sec.blocks if isinstance(b, Figure)]
    assert [f.name for f in figures] == ["accuracy-vs-sparsity", "similarity-vs-sparsity"]
    for f in figures:
        (tmp_path / f"{f.name}.png").write_bytes(f.png)
        pixels = imread(tmp_path / f"{f.name}.png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0.01, f.name


def test_layer_sim_report_renders_the_section_in_html_and_markdown(store, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--store", str(store), "--output", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert TITLE in page and "layer-sim pruning-study --output " in page and " ".join(ARGS[:4]) in page
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    for s in sources:
        assert base64.b64decode(s.split(",", 1)[1], validate=True)[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 2 and all((out / link).is_file() for link in links)
    assert page.count("<table>") == md.count("|---|")


def test_an_unfinished_study_is_reported_as_such(tmp_path):
    path = tmp_path / "results.sqlite"
    with Store(path, write=True) as s:  # recorded, nothing run yet (as while stage 1 trains)
        s.record_experiment(experiment_key(study.NAME, SPEC), name=study.NAME, spec_json=canonical_json(SPEC.to_dict()))
    _, sec = report_section(path, TITLE)
    assert any(b.text.startswith("Not complete, so not shown: pruning study: 7 of 7 units are not done")
               for b in sec.blocks if isinstance(b, Text))
