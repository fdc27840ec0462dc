"""benchmarks/dynamics_overhead.py --smoke runs end to end and prints every row (so it cannot rot)."""

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "dynamics_overhead.py"


def test_smoke_run_prints_every_configuration_and_part(capsys):
    spec = importlib.util.spec_from_file_location("dynamics_overhead", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    for name in bench.configurations():
        assert re.search(rf"^\| {re.escape(name)} \| [0-9.]+ \| [0-9.]+ \| [+-][0-9.]+ % \|$", out, flags=re.M), name
    for part in ("plain forward pass (no hooks)", "extract (forward pass with hooks)", "linear CKA of features and targets"):
        assert re.search(rf"^\| {re.escape(part)} \| [0-9.]+ \| [0-9.]+ % \|$", out, flags=re.M), part
    assert re.search(r"^Target <= 5 %: every step [+-][0-9.]+ % \((met|not met)\)", out, flags=re.M)
