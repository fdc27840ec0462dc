"""The Canatar & Pehlevan correlation study: the quoted table, the design, the study's table against scipy
on the stored outcomes, and the command."""

import csv
import json

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from layer_sim.cli import app
from layer_sim.errors import ConfigError, UnknownNameError
from layer_sim.experiments import correlations as cp
from layer_sim.store import Store


def test_the_reports_table_is_quoted_cell_for_cell():
    assert set(cp.REPORT_TABLE_I) == {(r, c) for r, _ in cp.ROWS for c, _ in cp.COLUMNS}
    # Values as printed in shared/reference/report-2022-11-18.txt (and seed-systems.md).
    assert cp.REPORT_TABLE_I[("Momentum", "CKA (Train)")] == 0.936
    assert cp.REPORT_TABLE_I[("Aug.", "Test Acc.")] == 0.806
    assert cp.REPORT_TABLE_I[("Avg. CKA (Test)", "Test Acc.")] == 0.920
    assert cp.REPORT_TABLE_I[("Batch Size", "Loss")] == -0.039
    assert cp.REPORT_TABLE_I[("Avg. CKA (Train)", "CKA (Train)")] == 0.837


def test_the_design_is_a_full_factorial_whose_hyperparameters_are_uncorrelated():
    runs = cp.correlation_design()
    assert len(runs) == 108 and [r.seed for r in runs] == list(range(108))
    assert {(r.epochs, r.limit_train, r.probe_size) for r in runs} == {(5, 20000, 5000)}
    variables = np.array([list(r.variables().values()) for r in runs])
    corr = np.corrcoef(variables.T)
    assert np.allclose(corr, np.eye(5), atol=1e-12)  # orthogonal: every pair of levels equally often
    assert len({tuple(r.variables().values()) for r in runs}) == 108
    full = cp.correlation_design(full=True)
    assert len(full) == 216 and {(r.epochs, r.limit_train) for r in full} == {(10, None)}
    subset = cp.correlation_design(runs=20)
    assert len(subset) == 20 and subset == cp.correlation_design(runs=20) and set(subset) < set(runs)
    with pytest.raises(ConfigError, match="runs=200 exceeds the 108 runs"):
        cp.correlation_design(runs=200)
    with pytest.raises(ConfigError, match="CorrelationRun: momentum must be a finite number in"):
        cp.CorrelationRun(skip=False, shift=0, batch_size=32, lr=0.1, momentum=1.0, seed=0)
    with pytest.raises(UnknownNameError, match=r"unknown field\(s\) \['nesterov'\]"):
        cp.CorrelationRun.from_spec({**runs[0].to_spec(), "nesterov": True})


def _tiny_design():
    return [cp.CorrelationRun(skip=s, shift=sh, batch_size=b, lr=lr, momentum=m, seed=k, epochs=1, limit_train=300,
                              probe_size=100)
            for k, (s, sh, b, lr, m) in enumerate([(False, 0, 32, 0.1, 0.9), (True, 2, 128, 0.01, 0.0),
                                                   (False, 2, 32, 0.03, 0.5), (True, 0, 128, 0.1, 0.5),
                                                   (False, 0, 128, 0.01, 0.9), (True, 2, 32, 0.03, 0.0)])]  # fmt: skip


def test_the_study_correlates_the_stored_outcomes_as_scipy_does(tmp_path):
    design = _tiny_design()
    result = cp.correlation_study(design, tmp_path / "results.sqlite", n_boot=200)
    assert len(result.table) == len(cp.ROWS) * len(cp.COLUMNS)
    with Store(tmp_path / "results.sqlite") as db:
        runs = db.runs(kind=cp.CORRELATION_KIND)
        long = db.metrics(kind=cp.CORRELATION_KIND)
    stored = {json.loads(spec)["seed"]: dict(zip(g.name, g.value))
              for spec, (_, g) in zip(runs.spec, long.groupby("key", sort=True))}  # fmt: skip
    values = {name: [] for _, name in cp.ROWS}
    for run in design:
        row = {**run.variables(), **stored[run.seed]}
        for name in values:
            values[name].append(row[name])
        # The table's outcomes: the last hidden layer (res3 with skips, else act3) and the mean over hidden layers.
        last = "res3" if run.skip else "act3"
        hidden = ["act1", "res2", "res3"] if run.skip else ["act1", "act2", "act3"]
        assert stored[run.seed]["cka_test"] == stored[run.seed][f"test/{last}"]
        assert stored[run.seed]["avg_cka_train"] == pytest.approx(np.mean([stored[run.seed][f"train/{h}"] for h in hidden]))
    for rec in result.table:
        if rec["row"] == rec["col"]:
            assert rec["r"] == pytest.approx(1.0)
            continue
        ref = stats.pearsonr(values[rec["row"]], values[rec["col"]])
        assert abs(rec["r"] - ref.statistic) <= 1e-12 and abs(rec["p_value"] - ref.pvalue) <= 1e-9
        assert rec["ci_low"] <= rec["r"] <= rec["ci_high"]
        assert rec["report_r"] == cp.REPORT_TABLE_I[(rec["row_label"], rec["col_label"])]
    again = cp.correlation_study(design, tmp_path / "results.sqlite", n_boot=200)
    assert (again.summary.done, again.summary.skipped) == (0, 6) and again.table == result.table


def test_the_command_writes_the_table_beside_the_reports_and_the_heatmap(tmp_path):
    out = tmp_path / "c"
    result = CliRunner().invoke(app, ["dynamics", "correlations", "--runs", "6", "--epochs", "1", "--limit-train",
                                      "300", "--probe-size", "100", "--n-boot", "200", "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6 units: 6 done" in result.output and "Canatar & Pehlevan (2022), Table I" in result.output
    text = (out / "table.md").read_text()
    assert "| Momentum | +0.099 | +0.448 | +0.823 | +0.936 |" in text  # the report's row, beside ours
    with open(out / "correlations.csv", newline="") as fh:
        cells = list(csv.DictReader(fh))
    assert len(cells) == 44 and set(cells[0]) == {"row_label", "col_label", "r", "ci_low", "ci_high", "p_value", "n",
                                                  "n_boot", "report_r"}  # fmt: skip
    with open(out / "runs.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    assert (out / "heatmap.png").stat().st_size > 0
