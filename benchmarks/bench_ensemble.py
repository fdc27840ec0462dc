"""W5 (issue 6): training throughput of K seeds, sequential ``fit`` vs batched ``fit_ensemble``.

    python benchmarks/bench_ensemble.py            # K = 10, default and small MLP (~1-2 min)
    python benchmarks/bench_ensemble.py --smoke    # tiny sizes (seconds)

Both routes train the same K networks (``MLP(widths, seed=s)``, s = 0..K-1) for one epoch on the
same ``n`` random 28×28 images (uniform pixels, 10 random classes: the cost of dense training
does not depend on pixel values, and the benchmark then needs no dataset) with the default recipe (SGD momentum 0.9, weight decay 5e-4,
cosine schedule with warm-up, batch 128), without a test set so that only training is timed.
Sequential = ``fit`` called K times; batched = one ``fit_ensemble`` call. The two are timed
alternately ``reps`` times and the medians are reported, so a burst of load from other processes
hits both routes alike; the ratio column is the median of the per-repetition ratios. Each
configuration is timed twice: wall-clock with torch's default threads (what a user sees on a quiet
machine) and thread CPU time with one thread (robust to other processes on the cores).
``GFLOP/s`` counts the minimal training work per example, 2·Σ d_in·d_out (forward) + 2·Σ d_in·d_out
(weight gradients) + 2·Σ_{l>1} d_in·d_out (input gradients; none for the first layer).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import torch

from layer_sim.data import Task
from layer_sim.models import DEFAULT_WIDTHS, MLP
from layer_sim.training import DEFAULT_RECIPE, fit, fit_ensemble

SMALL_WIDTHS = (784, 64, 64, 64, 64, 10)
FULL = {"k": 10, "n": 6400, "reps": 3, "configs": {"default": DEFAULT_WIDTHS, "small": SMALL_WIDTHS}}
SMOKE = {"k": 3, "n": 256, "reps": 1, "configs": {"tiny": (784, 16, 16, 10)}}


def training_flops(widths) -> int:
    """Minimal FLOPs of one training example (forward, weight and input gradients)."""
    pairs = list(zip(widths[:-1], widths[1:]))
    return sum(6 * a * b for a, b in pairs) - 2 * pairs[0][0] * pairs[0][1]


def images(n: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random MNIST-shaped images ``(n, 1, 28, 28)`` in [0, 1) and labels in 0..9."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def measure(widths, *, k: int = 10, n: int = 6400, reps: int = 3, threads: int | None = None) -> dict:
    """Median examples/s of sequential ``fit`` and batched ``fit_ensemble`` for ``k`` seeds.

    ``threads=None`` times wall-clock with torch's default thread count (the number that matters
    to a user). ``threads=1`` times this thread's CPU time (``time.thread_time``) with one torch
    thread: time the process spends waiting for a core then does not count, so the figure is
    far less sensitive to other processes (shared caches still are).

    Returns a dict with ``sequential``, ``batched`` (examples/s, medians over ``reps``),
    ``ratio`` (median of per-repetition ratios), ``ratios`` (all of them) and ``gflops``
    (batched route, minimal FLOPs).
    """
    x, y = images(n)
    seeds = list(range(k))
    recipe = dataclasses.replace(DEFAULT_RECIPE, epochs=1)
    task = Task("random-images", (x, y), None, 10, "cross_entropy")
    examples = k * len(x)
    clock = time.perf_counter if threads is None else time.thread_time
    saved = torch.get_num_threads()
    seq, bat, ratios = [], [], []
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        # Untimed warm-up of both routes: first calls pay for lazy initialisation (kernels,
        # thread pools, allocator), which would otherwise be charged to whichever runs first.
        warm = Task("random-images", (x[: 2 * recipe.batch_size], y[: 2 * recipe.batch_size]), None, 10,
                    "cross_entropy")
        fit(MLP(widths, seed=0), warm, recipe, seed=0, progress=False)
        fit_ensemble([MLP(widths, seed=s) for s in seeds], warm, recipe, seeds=seeds, progress=False)
        for _ in range(reps):
            models = [MLP(widths, seed=s) for s in seeds]
            start = clock()
            for m, s in zip(models, seeds):
                fit(m, task, recipe, seed=s, progress=False)
            t_seq = clock() - start
            models = [MLP(widths, seed=s) for s in seeds]
            start = clock()
            fit_ensemble(models, task, recipe, seeds=seeds, progress=False)
            t_bat = clock() - start
            seq.append(examples / t_seq)
            bat.append(examples / t_bat)
            ratios.append(t_seq / t_bat)
    finally:
        torch.set_num_threads(saved)
    batched = statistics.median(bat)
    return {
        "sequential": statistics.median(seq),
        "batched": batched,
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "gflops": batched * training_flops(widths) / 1e9,
    }


def run(smoke: bool = False) -> str:
    """The W5 Markdown table (``smoke``: tiny sizes, for the test suite)."""
    cfg = SMOKE if smoke else FULL
    load_before = os.getloadavg()[0]
    rows = []
    n_threads = torch.get_num_threads()
    wall = f"wall, {n_threads} thread{'s' if n_threads != 1 else ''}"
    for threads, clock in ((None, wall), (1, "CPU time, 1 thread")):
        for name, widths in cfg["configs"].items():
            r = measure(widths, k=cfg["k"], n=cfg["n"], reps=cfg["reps"], threads=threads)
            rows.append(
                f"| {name} | {'→'.join(map(str, widths))} | {clock} | {r['sequential']:,.0f} "
                f"| {r['batched']:,.0f} | **{r['ratio']:.2f}×** ({', '.join(f'{q:.2f}' for q in r['ratios'])}) "
                f"| {r['gflops']:.1f} |"
            )
    load_after = os.getloadavg()[0]
    head = (
        f"K = {cfg['k']} seeds, 1 epoch on {cfg['n']:,} random MNIST-shaped images each, batch "
        f"{DEFAULT_RECIPE.batch_size}, float32, median of {cfg['reps']} alternating repetitions; "
        f"1-min load average {load_before:.1f} before, {load_after:.1f} after (above "
        f"{os.cpu_count()} = other processes shared the cores; trust the CPU-time rows more then).\n\n"
        "| MLP | widths | clock | sequential `fit` (examples/s) | batched `fit_ensemble` (examples/s) "
        "| speed-up (per repetition) | batched GFLOP/s |\n|---|---|---|---:|---:|---:|---:|\n"
    )
    return head + "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    args = p.parse_args(argv)
    print("### W5: ensemble training throughput\n\n" + run(smoke=args.smoke))
    return 0


if __name__ == "__main__":
    sys.exit(main())
