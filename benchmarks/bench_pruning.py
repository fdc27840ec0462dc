"""Issue 14: does torch.nn.utils.prune's reparametrisation cost training time? LeNet-5, SGD steps.

    python benchmarks/bench_pruning.py            # 30 steps x 7 repetitions (~1 min)
    python benchmarks/bench_pruning.py --smoke    # seconds

Three routes train LeNet-5 (seed 0) with SGD (lr 0.01, momentum 0.9, weight decay 1e-4) on the
same random 28×28 batches of 128: ``plain`` (no pruning), ``torch.prune`` (S1's patterns pruned
50 % by :func:`layer_sim.training.pruning.global_magnitude_prune`: every forward pass computes
``w_orig * w_mask``), and ``manual mask`` (the weights zeroed once, then re-zeroed after every
step, the cheapest alternative with our own masks). The routes are timed alternately and the
median time per step is reported, so a burst of load from other processes hits all alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from layer_sim.models import LeNet5
from layer_sim.training.pruning import global_magnitude_prune, masks


def _steps(net, x, y, *, batch, after_step=None) -> float:
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    start = time.perf_counter()
    for i in range(len(x) // batch):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[i * batch : (i + 1) * batch]), y[i * batch : (i + 1) * batch]).backward()
        opt.step()
        if after_step is not None:
            after_step()
    return (time.perf_counter() - start) / (len(x) // batch)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    steps, reps, batch = (3, 2, 16) if args.smoke else (30, 7, 128)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(steps * batch, 1, 28, 28, generator=g), torch.randint(0, 10, (steps * batch,), generator=g)
    times = {"plain": [], "torch.prune": [], "manual mask": []}
    for _ in range(reps):
        times["plain"].append(_steps(LeNet5(seed=0), x, y, batch=batch))
        pruned = LeNet5(seed=0)
        global_magnitude_prune(pruned, rate=0.5)
        times["torch.prune"].append(_steps(pruned, x, y, batch=batch))
        manual = LeNet5(seed=0)
        kept = [(manual.get_parameter(n), m) for n, m in masks(pruned).items()]

        def rezero():
            with torch.no_grad():
                for p, m in kept:
                    p.mul_(m)

        rezero()
        times["manual mask"].append(_steps(manual, x, y, batch=batch, after_step=rezero))
    print(f"LeNet-5, SGD, batch {batch}, {steps} steps x {reps} repetitions, {torch.get_num_threads()} threads")
    print("| route | median ms/step | min ms/step |\n|---|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {1000 * statistics.median(ts):.2f} | {1000 * min(ts):.2f} |")


if __name__ == "__main__":
    main()
