"""layer_sim benchmark suite (issue 6): prints Markdown tables for W1-W5 and the GEMM bound, and sweeps (issue 12).

    python benchmarks/run.py            # full run (est. 12-18 min on 2 quiet cores; 37 min measured under load)
    python benchmarks/run.py --smoke    # tiny sizes, no peers, in-process, seconds (run by the tests)
    python benchmarks/run.py --only gemm,w1 --no-peers

Every measurement runs in its own subprocess, so its peak RSS (``os.wait4`` rusage of that child)
is its own; a measurement that crashes or exceeds its time limit is reported as such.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "width": 1024, "depth": 5, "n1": 10_000, "n2": 50_000, "stream_batch": 5_000,
    "w3_ns": [5_000], "w3_pair_ns": [20_000], "n4": 1_000, "nets4": 10, "widths4": [784, 256, 256, 256, 256, 10],
    "timeout": 300, "peer_timeout": 90,
}
SMOKE = {
    "width": 24, "depth": 5, "n1": 300, "n2": 1_000, "stream_batch": 256,
    "w3_ns": [120], "w3_pair_ns": [160], "n4": 60, "nets4": 3, "widths4": [784, 16, 16, 10],
    "timeout": 120, "peer_timeout": 60, "in_process": True,
}
WORKLOADS = ("gemm", "w1", "w2", "w3", "w4", "w5", "sweep")
CORRECT = 1e-4  # a full-data peer whose max abs error vs the float64 reference exceeds this is wrong


# --------------------------------------------------------------------------- subprocess per measurement


def measure(module: str, task: str, cfg: dict, timeout: float, **kwargs) -> dict:
    """Run ``module.task(cfg, **kwargs)`` in a fresh interpreter; add its peak RSS (MiB).

    ``cfg["in_process"]`` (the smoke run) calls it directly instead: seconds instead of minutes of
    interpreter start-ups, but the RSS column is then this process's peak so far.
    """
    if cfg.get("in_process"):
        sys.path.insert(0, str(HERE))
        try:
            result = getattr(__import__(module), task)(cfg, **kwargs)
        except Exception as exc:  # reported in the table, like a crashed subprocess
            result = {"failed": f"{type(exc).__name__}: {exc}"[:160]}
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return result
    with tempfile.NamedTemporaryFile(suffix=".json", dir=cfg["scratch"], delete=False) as f:
        out = f.name
    spec = json.dumps({"module": module, "task": task, "cfg": cfg, "kwargs": kwargs, "out": out})
    proc = subprocess.Popen([sys.executable, str(HERE / "run.py"), "--child", spec], cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.kill(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return {"failed": f"timeout > {timeout:.0f} s", "rss_mb": usage.ru_maxrss / 1024}
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss / 1024  # Linux: KiB
    err = proc.stderr.read().decode(errors="replace").strip()
    proc.stderr.close()
    if proc.returncode != 0:
        last = err.splitlines()[-1] if err else f"exit code {proc.returncode}"
        return {"failed": last[:160], "rss_mb": rss}
    result = json.loads(Path(out).read_text())
    result["rss_mb"] = rss
    return result


def child(spec: str) -> None:
    spec = json.loads(spec)
    sys.path.insert(0, str(HERE))
    mod = __import__(spec["module"])
    result = getattr(mod, spec["task"])(spec["cfg"], **spec["kwargs"])
    Path(spec["out"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------- formatting


def fmt(x, spec=".2f", empty="—"):
    return empty if x is None else format(x, spec)


def table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i in (0, len(header) - 1) else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    import numpy
    import torch

    import layer_sim

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        mem = float("nan")
    blas = "OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "(unset)")
    return (
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · {cpu}, {os.cpu_count()} logical CPUs, "
        f"{mem:.1f} GiB RAM · Python {platform.python_version()}, torch {torch.__version__} "
        f"(threads {torch.get_num_threads()}), NumPy {numpy.__version__}, layer_sim {layer_sim.__version__} · {blas}"
    )


# --------------------------------------------------------------------------- workloads


def run_gemm(cfg):
    rows, best = [], {}
    for dtype in ("float32", "float64"):
        for backend in ("numpy", "torch"):
            r = measure("workloads", "task_gemm", cfg, cfg["timeout"], dtype=dtype, backend=backend)
            if "failed" not in r:
                best[dtype] = max(best.get(dtype, 0.0), r["gflops"])
            rows.append([f"{dtype} · {'NumPy (OpenBLAS)' if backend == 'numpy' else 'torch (MKL)'}",
                         fmt(r.get("gflops"), ".1f"), r.get("note", r.get("failed", ""))])
    text = "### GEMM bound\n\n" + table(["dtype · backend", "GFLOP/s", "shape"], rows)
    text += f"\n\nBound rates used below (best backend): fp32 {fmt(best.get('float32'), '.1f')}, fp64 {fmt(best.get('float64'), '.1f')} GFLOP/s."
    return text, best


def _ratio(r, rate):
    if "failed" in r or not rate or not r.get("flops"):
        return None
    return r["seconds"] / (r["flops"] / (rate * 1e9))


# The linear-CKA routes of issue 16, in the order printed: (key, label, precision, task, kwargs, note).
W1_ROUTES = [
    ("numpy64", "plain NumPy fp64, one pair at a time (reference)", "fp64", "task_w1_reference", {}, "features precomputed"),
    ("ours64", "linear_cka_matrix fp64", "fp64", "task_w1_ours", dict(precision="fp64"), "features precomputed"),
    ("numpy32", "NumPy fp32, one cross GEMM + SYRK self-products", "fp32", "task_w1_numpy_fp32", {}, "features precomputed"),
    ("ours32", "linear_cka_matrix fp32", "fp32", "task_w1_ours", dict(precision="fp32"), "features precomputed"),
    ("compare", "compare(a, b, measure='linear_cka')", "fp64", "task_w1_compare", {}, "features precomputed"),
    ("extract64", "extract + linear_cka_matrix fp64", "fp64", "task_w1_models", dict(route="matrix"), "extraction included"),
    ("extract_compare", "extract + compare(measure='linear_cka')", "fp64", "task_w1_models", dict(route="compare"), "extraction included"),
    ("extract32", "extract + linear_cka_matrix fp32", "fp32", "task_w1_models", dict(route="matrix", precision="fp32"), "extraction included"),
]


def run_w1(cfg, best, peers: bool):
    """The W1 table and the results by route key (for the targets table)."""
    ref = str(Path(cfg["scratch"]) / "w1_reference.npy")
    t = cfg["timeout"]
    results, rows = {}, []
    for key, label, prec, task, kw, note in W1_ROUTES:
        kw = dict(save=ref) if key == "numpy64" else dict(kw, reference=ref)
        r = results[key] = measure("workloads", task, cfg, t, **kw)
        rows.append((label, prec, r, note + ("; " + r["note"] if r.get("note") else "")))
    peer_rows = []
    if peers:
        import peers as peer_mod

        for label, (task, note) in peer_mod.PEERS.items():
            r = measure("peers", task, cfg, cfg["peer_timeout"], reference=ref)
            peer_rows.append((label, "fp32", r, note))
    correct = [r["seconds"] for _, _, r, note in peer_rows if "failed" not in r and r.get("error") is not None and r["error"] <= CORRECT]
    best_peer = min(correct) if correct else None
    lines = []
    for label, prec, r, note in rows + peer_rows:
        rate = best.get("float64" if prec == "fp64" else "float32")
        wrong = r.get("error") is not None and r["error"] > CORRECT
        lines.append([
            label,
            fmt(r.get("seconds")),
            fmt(_ratio(r, rate)),
            fmt(r.get("error"), ".1e") + (" **(wrong)**" if wrong else ""),
            fmt(r.get("rss_mb"), ".0f"),
            fmt(best_peer / r["seconds"] if best_peer and "failed" not in r else None, ".1f") + ("×" if best_peer and "failed" not in r else ""),
            r.get("failed", note),
        ])
    head = (f"### W1: 6×6 linear CKA, two ReLU MLPs 784→{cfg['width']}×{cfg['depth']}→10, n = {cfg['n1']:,}\n\n"
            "time/bound: minimal flops (2·n·Σp_a·Σp_b + n·Σp² per net) at the same-run GEMM rate of the row's precision. "
            f"Error: max abs vs the float64 NumPy reference; a peer above {CORRECT:g} is wrong. "
            "Speed-up: fastest correct peer's time / this row's.\n\n")
    return head + table(["route", "time (s)", "time/bound", "max abs err", "peak RSS (MiB)", "speed-up vs best correct peer", "note"], lines), results


def run_targets(best, w1: dict, w2: dict) -> str:
    """Issue 16's targets, each with the value measured in this run and whether it is met."""
    def ok(r):
        return r is not None and "failed" not in r

    def ratio(key, prec):
        r = w1.get(key)
        return _ratio(r, best.get("float64" if prec == "fp64" else "float32")) if ok(r) else None

    def rel(a, b, field="seconds"):
        return w1[a][field] / w1[b][field] if ok(w1.get(a)) and ok(w1.get(b)) else None

    def extract_overhead():
        # extract → compare against linear_cka_matrix + the forward pass measured in the same task
        a, b = w1.get("extract_compare"), w1.get("ours64")
        return a["seconds"] / (b["seconds"] + a["forward_seconds"]) if ok(a) and ok(b) else None

    routes = [k for k, *_ in W1_ROUTES if k != "numpy64"]
    rss = max((w1[k]["rss_mb"] for k in routes if ok(w1.get(k))), default=None)
    w2_ratio = None
    if ok(w2.get("fp64")) and best.get("float64"):
        w2_ratio = w2["fp64"]["cka_seconds"] / (w2["fp64"]["flops"] / (best["float64"] * 1e9))
    targets = [
        ("linear_cka_matrix fp64 / fp64 bound", ratio("ours64", "fp64"), 1.05),
        ("linear_cka_matrix fp64 / plain NumPy fp64", rel("ours64", "numpy64"), 1.0),
        ("linear_cka_matrix fp32 / fp32 bound", ratio("ours32", "fp32"), 1.15),
        ("linear_cka_matrix fp32: max abs err vs float64", w1.get("ours32", {}).get("error"), 1e-6),
        ("compare / linear_cka_matrix fp64", rel("compare", "ours64"), 1.05),
        ("extract → compare / (linear_cka_matrix fp64 + forward)", extract_overhead(), 1.05),
        ("max peak RSS of our routes / plain NumPy's", rss / w1["numpy64"]["rss_mb"] if rss and ok(w1.get("numpy64")) else None, 1.0),
        ("StreamingLinearCKA fp64 (W2) CKA part / fp64 bound", w2_ratio, 1.15),
    ]
    lines = [[name, fmt(v, ".1e" if limit < 1e-3 else ".3f"), f"≤ {limit:g}", "—" if v is None else ("yes" if v <= limit else "**no**")]
             for name, v, limit in targets]
    return "### Issue 16 targets (same-run ratios)\n\n" + table(["target", "measured", "limit", "met"], lines)


def run_w2(cfg, best):
    lines = []
    res = {}
    for prec in ("fp64", "fp32"):
        r = measure("workloads", "task_w2_stream", cfg, cfg["timeout"] * 2, precision=prec, batch=cfg["stream_batch"])
        res[prec] = r
        rate = best.get("float64" if prec == "fp64" else "float32")
        cka_ratio = None if "failed" in r or not rate else r["cka_seconds"] / (r["flops"] / (rate * 1e9))
        lines.append([f"StreamingLinearCKA {prec} (6 layers per side)", fmt(r.get("seconds")), fmt(r.get("cka_seconds")),
                      fmt(cka_ratio), fmt(r.get("rss_mb"), ".0f"), fmt(r.get("state_mb"), ".0f"), r.get("failed", r.get("note", ""))])
    diff = None
    try:
        import numpy as np

        diff = float(np.abs(np.load(Path(cfg["scratch"]) / "w2_fp32.npy") - np.load(Path(cfg["scratch"]) / "w2_fp64.npy")).max())
    except (OSError, ValueError):
        pass
    feats_mb = cfg["n2"] * sum([cfg["width"]] * cfg["depth"] + [10]) * 4 * 2 / 2**20
    head = (f"### W2: streaming, n = {cfg['n2']:,} (inputs generated, forwarded and accumulated batch by batch)\n\n"
            f"Accumulator state O((Σp)²); the fp32 features of both nets alone would take {feats_mb:,.0f} MiB. "
            f"Max |fp32 − fp64| over the 6×6 matrix: {fmt(diff, '.1e')}.\n\n")
    return head + table(["route", "total (s)", "CKA part (s)", "CKA/bound", "peak RSS (MiB)", "state (MiB)", "note"], lines), res


def run_w3(cfg):
    lines = []
    for n in cfg["w3_ns"]:
        r = measure("workloads", "task_w3_rbf", cfg, cfg["timeout"] * 2, n=n)
        lines.append([f"{n:,}", fmt(r.get("seconds")), fmt(r.get("rss_mb"), ".0f"), r.get("failed", r.get("note", ""))])
    for n in cfg["w3_pair_ns"]:
        r = measure("workloads", "task_w3_rbf_pair", cfg, cfg["timeout"] * 2, n=n)
        lines.append([f"{n:,}", fmt(r.get("seconds")), fmt(r.get("rss_mb"), ".0f"), r.get("failed", r.get("note", ""))])
    head = "### W3: 6×6 RBF CKA (σ = 0.8 × median distance) via compare(measure='rbf_cka'), features precomputed\n\n"
    return head + table(["n", "time (s)", "peak RSS (MiB)", "note"], lines)


def run_w4(cfg):
    sys.path.insert(0, str(HERE))
    from workloads import w4_measures

    lines = []
    for name in w4_measures():
        r = measure("workloads", "task_w4", cfg, cfg["timeout"], measure=name)
        lines.append([name, fmt(r.get("seconds")), fmt(r.get("rss_mb"), ".0f"), r.get("failed", r.get("note", ""))])
    head = (f"### W4: sanity-check stage (layer_identification), {cfg['nets4']} random-init MLPs "
            f"{'→'.join(map(str, cfg['widths4']))}, n = {cfg['n4']:,}, every registered measure\n\n")
    return head + table(["measure", "time (s)", "peak RSS (MiB)", "note"], lines)


def run_w5(smoke: bool):
    """Training throughput: ``run(smoke)`` of ``benchmarks/bench_ensemble.py`` (helper E2's module)."""
    if not (HERE / "bench_ensemble.py").exists():
        return "### W5: ensemble training throughput\n\nNot run: benchmarks/bench_ensemble.py is not present."
    sys.path.insert(0, str(HERE))
    import bench_ensemble

    return "### W5: ensemble training throughput\n\n" + bench_ensemble.run(smoke=smoke)


def run_sweep_bench(smoke: bool):
    """Sweep throughput and store overhead: ``run(smoke)`` of ``benchmarks/sweep.py``."""
    sys.path.insert(0, str(HERE))
    import sweep

    return sweep.run(smoke=smoke)


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, no peers (a few seconds)")
    p.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    p.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    only = set(args.only.split(","))
    unknown = only - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workload(s) {sorted(unknown)}; choose from {','.join(WORKLOADS)}")
    cfg = dict(SMOKE if args.smoke else FULL)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="layer_sim_bench_") as scratch:
        cfg["scratch"] = scratch
        print(f"## layer_sim benchmarks{' (smoke)' if args.smoke else ''}\n\n{machine()}\n", flush=True)
        best = {}
        if "gemm" in only or "w1" in only or "w2" in only:
            text, best = run_gemm(cfg)
            print(text + "\n", flush=True)
        w1, w2 = {}, {}
        if "w1" in only:
            text, w1 = run_w1(cfg, best, peers=not (args.smoke or args.no_peers))
            print(text + "\n", flush=True)
        if "w2" in only:
            text, w2 = run_w2(cfg, best)
            print(text + "\n", flush=True)
        if "w1" in only:
            print(run_targets(best, w1, w2) + "\n", flush=True)
        if "w3" in only:
            print(run_w3(cfg) + "\n", flush=True)
        if "w4" in only:
            print(run_w4(cfg) + "\n", flush=True)
        if "w5" in only:
            print(run_w5(args.smoke) + "\n", flush=True)
        if "sweep" in only:
            print(run_sweep_bench(args.smoke) + "\n", flush=True)
    print(f"Total wall time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
