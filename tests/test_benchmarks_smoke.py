"""The benchmark script's smoke mode runs end to end (so benchmarks/ cannot rot) and its numbers are sane."""

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def row(text: str, label: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == label:
            return cells
    raise AssertionError(f"no table row {label!r} in:\n{text}")


def test_smoke_run_prints_every_table(capsys):
    spec = importlib.util.spec_from_file_location("bench_run", BENCH)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    assert run.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    for title in ("### GEMM bound", "### W1", "### W2", "### W3", "### W4", "### W5"):
        assert title in out
    assert "timeout" not in out and not re.search(r"\w+(Error|Exception): ", out), out
    # W1: columns are route, time, time/bound, max abs err, ...; errors vs the float64 reference route
    assert float(row(out, "linear_cka_matrix fp64")[3]) <= 1e-9
    assert float(row(out, "linear_cka_matrix fp32")[3]) <= 1e-6
    assert float(row(out, "compare(a, b, measure='linear_cka')")[3]) <= 1e-9
    assert float(row(out, "extract + linear_cka_matrix fp64")[3]) <= 1e-9
    # W2: fp32 streaming agrees with fp64 streaming
    assert float(re.search(r"Max \|fp32 − fp64\| over the 6×6 matrix: (\S+)\.", out).group(1)) <= 1e-6
    # W4: every registered measure of features alone produced an identification accuracy
    import sys

    sys.path.insert(0, str(BENCH.parent))
    from workloads import w4_measures as run_w4_measures

    for name in run_w4_measures():
        assert "accuracy" in row(out, name)[-1]
