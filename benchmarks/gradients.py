"""Benchmarks of similarity with gradients (issue 11): exact gradient CKA at n = 10,000, extraction
with vs without gradients, and the count sketch's error against the exact value at several n and M.

    python benchmarks/gradients.py            # about 5 minutes on 2 quiet cores (longer under load)
    python benchmarks/gradients.py --smoke    # tiny sizes, seconds (run by the tests)

Prints Markdown tables. Representations are those of the sanity check's network 0 and 1
(784-256-256-256-256-10, from the checkpoint cache; trained if missing) on MNIST test images,
gradients of Tang et al.'s objective; peak memory is the process's ru_maxrss growth during the call.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from layer_sim import extract
from layer_sim.data import load_mnist
from layer_sim.measures import gradient_cka, gradient_nbs
from layer_sim.models import MLP


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _nets(smoke: bool):
    if smoke:
        return [MLP((784, 32, 32, 10), seed=s) for s in (0, 1)]
    from layer_sim.training import DEFAULT_SPEC, train_or_load_ensemble

    return [c.model for c in train_or_load_ensemble(DEFAULT_SPEC, [0, 1])]


def exact_at_n(nets, x, layer, n) -> dict:
    a = extract(nets[0], x[:n], gradients=True, objective="tang", layers=[layer])
    b = extract(nets[1], x[:n], gradients=True, objective="tang", layers=[layer])
    before = _rss_mb()
    t = time.perf_counter()
    v = gradient_cka(a[layer], b[layer], a.gradients[layer], b.gradients[layer])
    return {"n": n, "seconds": time.perf_counter() - t, "value": float(v), "rss_growth_mb": _rss_mb() - before,
            "nxn_mb": n * n * 8 / 2**20}


def extraction_overhead(net, x, repeats=3) -> dict:
    def best(f):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    plain = best(lambda: extract(net, x))
    grads = best(lambda: extract(net, x, gradients=True, objective="tang"))
    return {"n": x.shape[0], "features": plain, "with_gradients": grads, "ratio": grads / plain}


def sketch_errors(nets, x, layer, ns, buckets, seeds) -> list[dict]:
    rows = []
    for n in ns:
        a = extract(nets[0], x[:n], gradients=True, objective="tang", layers=[layer])
        b = extract(nets[1], x[:n], gradients=True, objective="tang", layers=[layer])
        args = (a[layer], b[layer], a.gradients[layer], b.gradients[layer])
        exact_cka, exact_nbs = float(gradient_cka(*args)), float(gradient_nbs(*args)) if n <= 2000 else None
        for m in buckets:
            cka = np.array([float(gradient_cka(*args, buckets=m, seed=s)) for s in range(seeds)])
            row = {"n": n, "M": m, "exact_cka": exact_cka, "cka_bias": cka.mean() - exact_cka, "cka_sd": cka.std(ddof=1),
                   "cka_max_err": np.abs(cka - exact_cka).max()}
            if exact_nbs is not None:
                nbs = np.array([float(gradient_nbs(*args, buckets=m, seed=s)) for s in range(seeds)])
                row |= {"exact_nbs": exact_nbs, "nbs_bias": nbs.mean() - exact_nbs, "nbs_max_err": np.abs(nbs - exact_nbs).max()}
            rows.append(row)
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    smoke = args.smoke
    x = load_mnist("test")[0]
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]
    nets = _nets(smoke)
    layer = "act2"
    out = {"exact": exact_at_n(nets, x, layer, 600 if smoke else 10_000),
           "overhead": extraction_overhead(nets[0], x[: 500 if smoke else 10_000]),
           "sketch": sketch_errors(nets, x, layer, [300] if smoke else [1000, 2000, 10_000],
                                   [16, 64] if smoke else [64, 256, 512, 1024], 2 if smoke else 5)}
    e, o = out["exact"], out["overhead"]
    print(f"| exact gradient CKA, {layer} vs {layer}, n | seconds | value | peak RSS growth (MiB) | one n x n float64 (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {e['n']} | {e['seconds']:.2f} | {e['value']:.4f} | {e['rss_growth_mb']:.0f} | {e['nxn_mb']:.0f} |")
    print("\n| extraction, n | features only (s) | with gradients (s) | ratio |\n|---:|---:|---:|---:|")
    print(f"| {o['n']} | {o['features']:.3f} | {o['with_gradients']:.3f} | {o['ratio']:.2f} |")
    print("\n| n | M | exact gradient CKA | sketch bias | sketch SD | max abs error | exact gradient NBS | NBS sketch bias | NBS max abs error |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in out["sketch"]:
        nbs = (f"{r['exact_nbs']:.4f} | {r['nbs_bias']:+.4f} | {r['nbs_max_err']:.4f}" if "exact_nbs" in r else "— | — | —")
        print(f"| {r['n']} | {r['M']} | {r['exact_cka']:.4f} | {r['cka_bias']:+.4f} | {r['cka_sd']:.4f} | {r['cka_max_err']:.4f} | {nbs} |")
    return out


if __name__ == "__main__":
    main()
