"""Where the time of ``linear_cka_matrix`` goes on W1 (issue 16): GEMMs, the chunk copy, the rest.

    python benchmarks/profile_linear.py [--n 10000] [--precision fp32]

Wraps the engine's two phases (``_Mat.addmm_``: every GEMM; ``_CoMoments._fill``: the copy of a
chunk into the GEMM buffer with shift, scaling and column sums) with timers, runs W1 once, and
prints each phase's share next to the GEMM bound measured in the same process. Wall-clock timers:
under load the shares are indicative, the ratio to the same-run bound less so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import features, minimal_flops, task_gemm, warm_up  # noqa: E402

from layer_sim import linear_cka_matrix  # noqa: E402
from layer_sim.measures import all_pairs  # noqa: E402


def timer(owner, name: str, totals: dict) -> None:
    real = getattr(owner, name)

    def wrapped(*a, **k):
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - t0

    setattr(owner, name, wrapped)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--precision", choices=("fp64", "fp32"), default="fp64")
    args = p.parse_args(argv)
    cfg = {"width": args.width, "depth": 5, "n1": args.n}
    fa, fb = features(cfg, args.n)
    rate = task_gemm(cfg, dtype={"fp64": "float64", "fp32": "float32"}[args.precision], backend="torch")["gflops"]
    totals: dict[str, float] = {}
    timer(all_pairs._Mat, "addmm_", totals)
    timer(all_pairs._CoMoments, "_fill", totals)
    warm_up()
    t0 = time.perf_counter()
    linear_cka_matrix(fa, fb, precision=args.precision)
    total = time.perf_counter() - t0
    bound = minimal_flops(args.n, [f.shape[1] for f in fa], [f.shape[1] for f in fb]) / (rate * 1e9)
    gemm, fill = totals.get("addmm_", 0.0), totals.get("_fill", 0.0)
    print(f"linear_cka_matrix {args.precision}, n = {args.n:,}, threads {torch.get_num_threads()}: {total:.2f} s; "
          f"bound {bound:.2f} s at {rate:.1f} GFLOP/s (same process) -> {total / bound:.3f}x")
    for label, t in (("GEMMs (cross + staircase self)", gemm), ("chunk copy, shift, column sums", fill),
                     ("rest (norms, sampling, flushes)", total - gemm - fill)):
        print(f"  {label:34s} {t:7.2f} s  {100 * t / total:5.1f} %")
    print(f"  GEMMs alone / bound: {gemm / bound:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
