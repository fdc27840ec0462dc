"""The dynamics and correlation studies' sections of the report: their tables show what the store and the runs'
history files hold (read here with sqlite3, gzip and csv, and correlated with scipy), their figures are embedded
PNGs in the HTML page and files beside the Markdown twin, and the comparison with S2's r01 values picks the
runs of that protocol only."""

import csv
import gzip
import html
import json
import re
import sqlite3
from statistics import mean

import pytest
from scipy import stats
from typer.testing import CliRunner

from layer_sim.cli import app
from layer_sim.experiments import correlations as cp
from layer_sim.experiments import learning_dynamics as ld
from layer_sim.report.dynamics import s2_comparison
from layer_sim.report.sections import Figure, Table, build_report
from layer_sim.store import Store

DYNAMICS = "Learning dynamics: kernel–target alignment while MLPs learn MNIST digit pairs (S2's protocol)"
CORRELATIONS = "Correlations of hyperparameters and outcomes with alignment (Canatar & Pehlevan 2022, Table I)"
RUNS = [ld.PairRun(pair=pair, lr=0.2, readout_lr=0.1, seed=s, epochs=2, hidden=32, limit_train=300, probe_size=80)
        for pair in ((4, 6), (2, 7)) for s in (0, 1)]  # fmt: skip
DESIGN = [cp.CorrelationRun(skip=s, shift=sh, batch_size=b, lr=lr, momentum=m, seed=k, epochs=1, limit_train=300,
                            probe_size=100)
          for k, (s, sh, b, lr, m) in enumerate([(False, 0, 32, 0.1, 0.9), (True, 2, 128, 0.01, 0.0),
                                                 (False, 2, 32, 0.03, 0.5), (True, 0, 128, 0.1, 0.5),
                                                 (False, 0, 128, 0.01, 0.9), (True, 2, 32, 0.03, 0.0)])]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("dynamics-report") / "results.sqlite"
    ld.study(RUNS, path, command=["layer-sim", "dynamics", "sweep"])
    cp.correlation_study(DESIGN, path, n_boot=200, command=["layer-sim", "dynamics", "correlations"])
    return path


def _sections(path):
    with Store(path) as s:
        doc = build_report(s)
    return {sec.title: sec for sec in doc.sections}


def _stored(path, kind):
    """spec -> metrics of every done run of ``kind``, and key -> artefact paths, straight from the tables."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT r.key, r.spec, m.name, m.value FROM runs r JOIN metrics m ON m.key = r.key "
                           "WHERE r.kind = ? AND r.status = 'done'", (kind,)).fetchall()
        files = con.execute("SELECT key, name, path FROM artefacts").fetchall()
    finally:
        con.close()
    metrics, specs = {}, {}
    for key, spec, name, value in rows:
        metrics.setdefault(key, {})[name] = value
        specs[key] = json.loads(spec)
    artefacts = {}
    for key, name, p in files:
        artefacts.setdefault(key, {})[name] = p
    return specs, metrics, artefacts


def test_the_dynamics_table_is_the_mean_over_seeds_of_each_runs_last_epoch_of_batches(store):
    sec = _sections(store)[DYNAMICS]
    (table,) = [b for b in sec.blocks if isinstance(b, Table) and b.caption.startswith("Last epoch")]
    specs, metrics, artefacts = _stored(store, ld.PAIR_KIND)
    assert len(specs) == 4 and len(table.records) == 2
    for rec in table.records:
        keys = [k for k, s in specs.items() if f"[{s['pair'][0]} {s['pair'][1]}]" == rec["pair"]]
        assert len(keys) == 2 and rec["seeds"] == 2
        per_seed = []
        for k in keys:  # the raw per-step values of the last epoch, from the run's own history file
            path = artefacts[k]["history"]
            path = path if path.startswith("/") else str(store.parent / path)  # relative to the store's folder
            with gzip.open(path, "rt", newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r["split"] == "batch" and r["layer"] == ld.HIDDEN
                        and int(r["epoch"]) == 2]  # fmt: skip
            assert len(rows) == 2  # 300 images in batches of 200: two steps per epoch
            per_seed.append(mean(float(r["value"]) for r in rows))
        assert rec["batch_alignment"] == pytest.approx(mean(per_seed), abs=1e-12)
        assert rec["batch_alignment std"] == pytest.approx(stats.tstd(per_seed), abs=1e-12)
        assert rec["test_accuracy"] == pytest.approx(mean(metrics[k]["test_accuracy"] for k in keys), abs=1e-12)
    figures = [b for b in sec.blocks if isinstance(b, Figure)]
    assert [f.name for f in figures] == ["curves-2-7", "curves-4-6", "final-alignment"]
    assert all(f.png.startswith(b"\x89PNG") for f in figures)
    assert not any(isinstance(b, Table) and "S2" in (b.caption or "") for b in sec.blocks)  # no run of r01's protocol


def test_the_correlation_table_is_pearson_r_of_the_stored_outcomes(store):
    sec = _sections(store)[CORRELATIONS]
    tables = {b.caption: b for b in sec.blocks if isinstance(b, Table)}
    ours, pvals = tables["Pearson r [95 % bootstrap interval]"], tables["p-values"]
    specs, metrics, _ = _stored(store, cp.CORRELATION_KIND)
    by_seed = {specs[k]["seed"]: m for k, m in metrics.items()}
    values = {name: [] for _, name in cp.ROWS}
    for run in DESIGN:
        row = {"skip": float(run.skip), "augmentation": float(run.shift > 0), "batch_size": float(run.batch_size),
               "lr": run.lr, "momentum": run.momentum, **by_seed[run.seed]}  # fmt: skip
        for name in values:
            values[name].append(row[name])
    assert [r[""] for r in ours.records] == [label for label, _ in cp.ROWS]
    for (label, var), cells, ps in zip(cp.ROWS, ours.records, pvals.records):
        for col_label, col in cp.COLUMNS:
            if var == col:
                assert cells[col_label].startswith("+1.000")
                continue
            ref = stats.pearsonr(values[var], values[col])
            assert cells[col_label].split()[0] == f"{ref.statistic:+.3f}"
            assert ps[col_label] == f"{ref.pvalue:.2g}"
    report = tables["Canatar & Pehlevan's Table I as the report quotes it"]
    assert report.records[4]["CKA (Train)"] == "+0.936"  # Momentum vs CKA (Train), as the report prints it


def test_layer_sim_report_renders_both_sections_in_html_and_markdown(store, tmp_path):
    result = CliRunner().invoke(app, ["report", "--store", str(store), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    for title in (DYNAMICS, CORRELATIONS):
        assert html.escape(title) in page and title in markdown
    assert "layer-sim dynamics sweep" in page and "layer-sim dynamics correlations" in markdown  # provenance
    # 2 curves + final alignment + heatmap, as data: URIs in the page and as files beside the Markdown
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 4
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown)
    assert len(linked) == 4 and all((tmp_path / "out" / p).is_file() for p in linked)


def _record(run, values):
    rows = tuple({"epoch": e, "batch_alignment": v} for e, v in enumerate(values))
    return ld.PairRecord(run, "k", rows, {}, {})


def test_s2_comparison_averages_the_runs_of_r01s_protocol_only():
    r01 = dict(ld.S2_R01_RUN, epochs=2)
    a = ld.PairRun(**r01, seed=0)
    b = ld.PairRun(**r01, seed=1)
    other = ld.PairRun(**{**r01, "lr": 0.2}, seed=0)
    result = ld.StudyResult((_record(a, [None, 0.70, 0.74]), _record(b, [None, 0.72, 0.78]),
                             _record(other, [None, 0.1, 0.1])), None)  # fmt: skip
    rows = s2_comparison(result)
    assert [r["epoch"] for r in rows] == [1, 2]  # the epochs of S2_R01 both runs reached
    assert rows[0]["ours"] == pytest.approx(0.71) and rows[1]["ours"] == pytest.approx(0.76)
    assert (rows[1]["min"], rows[1]["max"], rows[1]["S2"]) == (0.74, 0.78, 0.7753)
    assert rows[0]["ours − S2"] == pytest.approx(0.71 - 0.7818)
