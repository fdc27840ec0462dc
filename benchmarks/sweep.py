"""Sweep throughput (issue 12): 1 vs 2 local workers, Ray vs the local pool, store overhead per run.

    python benchmarks/sweep.py            # 16 training units of ~1 s, 200 no-op units; Ray if installed
    python benchmarks/sweep.py --smoke    # tiny sizes, in-process only (seconds)
    python benchmarks/sweep.py --no-ray

Prints Markdown tables. Every sweep writes a fresh store in a temporary directory. The machine's
load average is printed before and after: on a shared machine the numbers are measured under load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the unit kinds' module, for this process and (via spawn) its workers

import sweep_units  # noqa: E402,F401  (registers bench.*)
import torch  # noqa: E402

from layer_sim.runs import LocalPoolExecutor, SerialExecutor, Unit, run_sweep  # noqa: E402
from layer_sim.runs.executors import available_cores  # noqa: E402
from layer_sim.store.sqlite import Store  # noqa: E402

FULL = {"units": 16, "steps": 150, "width": 256, "batch": 64, "noop": 200, "rows": 1000, "repeat": 2}
SMOKE = {"units": 4, "steps": 5, "width": 16, "batch": 16, "noop": 20, "rows": 50, "repeat": 1}


def _train_units(cfg, offset=0):
    return [Unit("bench.train", {"seed": offset + s, "steps": cfg["steps"], "width": cfg["width"], "batch": cfg["batch"]})
            for s in range(cfg["units"])]


def _timed_sweep(units, executor, scratch, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` sweeps of ``units``, each into a fresh store (the best is the least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        path = Path(tempfile.mkdtemp(dir=scratch)) / "results.sqlite"
        t0 = time.perf_counter()
        summary = run_sweep(units, path, executor, retries=0)
        best = min(best, time.perf_counter() - t0)
        if summary.done != len(units):
            raise RuntimeError(f"benchmark sweep did not finish every unit: {summary} {summary.failures}")
    return best


def _warm(executor, cfg, scratch) -> float:
    """Start the executor's workers with a sweep of other units (imports, first torch call); return its time."""
    warm = {**cfg, "units": max(2, executor.capacity)}
    return _timed_sweep(_train_units(warm, offset=10_000), executor, scratch)


def throughput(cfg, scratch, *, pools: bool, ray: bool) -> str:
    cores = available_cores()
    units = _train_units(cfg)
    rows = []
    torch.set_num_threads(cores)
    serial = SerialExecutor()
    start = _warm(serial, cfg, scratch)
    t_serial = _timed_sweep(units, serial, scratch, cfg["repeat"])
    rows.append(("in-process (`--workers 1`)", f"1 × {cores}", f"{start:.1f}", t_serial))
    for workers in (1, 2) if pools else ():
        with LocalPoolExecutor(workers) as pool:
            start = _warm(pool, cfg, scratch)
            t = _timed_sweep(units, pool, scratch, cfg["repeat"])
        rows.append((f"local pool, `--workers {workers}`", f"{workers} × {pool.threads}", f"{start:.1f}", t))
    if ray:
        import ray as ray_module

        from layer_sim.runs.ray import LOCAL_RAY_OPTIONS, RayExecutor

        t0 = time.perf_counter()
        ray_module.init(num_cpus=cores, **LOCAL_RAY_OPTIONS, runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}},
                        log_to_driver=False)
        init = time.perf_counter() - t0
        try:
            with RayExecutor() as executor:
                start = _warm(executor, cfg, scratch)
                t = _timed_sweep(units, executor, scratch, cfg["repeat"])
        finally:
            ray_module.shutdown()
        rows.append(("Ray, local (`--backend ray`)", f"{executor.capacity} × 1", f"{init:.1f} + {start:.1f}", t))
    lines = [f"### Sweep throughput: {len(units)} training units (MLP 784-{cfg['width']}-{cfg['width']}-10, "
             f"{cfg['steps']} SGD steps of {cfg['batch']})", "",
             f"| executor | workers × threads | start-up (s) | sweep after start-up (s, best of {cfg['repeat']}) | units/s | speed-up vs in-process |",
             "|---|---|---:|---:|---:|---:|"]
    for name, shape, start, t in rows:
        lines.append(f"| {name} | {shape} | {start} | {t:.2f} | {len(units) / t:.2f} | {t_serial / t:.2f}× |")
    lines += ["", "Start-up is a warm-up sweep of other units with the same executor (workers started, torch "
              "imported and run once), plus `ray.init` for Ray; the timed sweep reuses the started workers."]
    if pools and ray:
        lines.append(f"Ray takes {100 * (rows[3][3] / rows[2][3] - 1):+.0f} % of the local pool of 2's time after start-up.")
    return "\n".join(lines)


def store_overhead(cfg, scratch) -> str:
    lines = ["### Store and driver overhead per run", "",
             "| what | runs | per run (ms) |", "|---|---:|---:|"]
    for rows in (0, cfg["rows"]):
        units = [Unit("bench.noop", {"i": i, "rows": rows}) for i in range(cfg["noop"])]
        t = _timed_sweep(units, SerialExecutor(), scratch)
        lines.append(f"| in-process sweep of no-op units, 5 metrics + {rows}-row history | {len(units)} | {1e3 * t / len(units):.2f} |")
    # the two transactions the driver commits per run, without the sweep around them
    path = Path(tempfile.mkdtemp(dir=scratch)) / "results.sqlite"
    with Store(path, write=True) as store:
        keys = [f"k{i}" for i in range(cfg["noop"])]
        store.plan((k, "bench.noop", "{}") for k in keys)
        history = {"h": [{"step": s, "loss": 1.0 / (s + 1)} for s in range(cfg["rows"])]}
        t0 = time.perf_counter()
        for k in keys:
            store.mark_running(k, worker="bench:0")
            store.record_done(k, metrics={f"m{j}": float(j) for j in range(5)}, histories=history, artefacts={},
                              started="", finished="", seconds=0.0, versions={}, worker="bench:0")
        t = time.perf_counter() - t0
    lines.append(f"| store writes only (`mark_running` + `record_done`, {cfg['rows']}-row history) | {len(keys)} | {1e3 * t / len(keys):.2f} |")
    lines += ["", "Each run is two committed transactions (WAL, `synchronous=FULL`: one fsync each)."]
    return "\n".join(lines)


def run(smoke: bool = False, ray: bool | None = None) -> str:
    """The tables as Markdown. ``smoke``: tiny units, in-process only (no worker start-ups);
    ``ray=None`` runs the Ray row when Ray is installed and not ``smoke``."""
    import importlib.util

    cfg = SMOKE if smoke else FULL
    if ray is None:
        ray = not smoke and importlib.util.find_spec("ray") is not None
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        body = throughput(cfg, scratch, pools=not smoke, ray=ray) + "\n\n" + store_overhead(cfg, scratch)
    after = os.getloadavg()
    return (f"Load average (1 min) {load[0]:.2f} before, {after[0]:.2f} after, on {available_cores()} cores: "
            f"{'measured under load' if max(load[0], after[0]) > 0.5 else 'an idle machine'}.\n\n{body}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, in-process only (seconds)")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray rows")
    args = p.parse_args(argv)
    print(run(smoke=args.smoke, ray=False if args.no_ray else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
