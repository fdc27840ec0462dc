"""benchmarks/gradients.py runs in its smoke mode and its numbers are sane."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "gradients.py"


def test_gradient_benchmark_smoke(capsys):
    spec = importlib.util.spec_from_file_location("bench_gradients", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--smoke"])
    text = capsys.readouterr().out
    assert "exact gradient CKA" in text and "sketch bias" in text
    assert 0 <= out["exact"]["value"] <= 1 and out["overhead"]["ratio"] > 0
    assert all(0 <= r["cka_max_err"] <= 1 for r in out["sketch"])
