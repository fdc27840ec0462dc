"""Benchmark workloads W1-W4 and the GEMM bound; each ``task_*`` runs inside its own subprocess.

A task builds its inputs (untimed unless the row says "extraction included"), times the work
once after a warm-up BLAS call, and returns a dict (``seconds``, ``error``, ``note``, ...). The
driver (``run.py``) adds the subprocess's peak RSS. Peers live in ``peers.py``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import layer_sim
from layer_sim import StreamingLinearCKA, extract, linear_cka_matrix
from layer_sim.measures import available, get
from layer_sim.models import MLP


# --------------------------------------------------------------------------- shared set-up


def widths(cfg) -> tuple[int, ...]:
    return (784,) + (cfg["width"],) * cfg["depth"] + (10,)


def nets(cfg) -> tuple[MLP, MLP]:
    """The two random-init ReLU MLPs of W1/W2 (PyTorch default init, seeds 0 and 1)."""
    return MLP(widths(cfg), seed=0).eval(), MLP(widths(cfg), seed=1).eval()


def inputs(n: int, *, seed: int = 1234) -> torch.Tensor:
    return torch.randn(n, 784, generator=torch.Generator().manual_seed(seed))


def input_batches(n: int, batch: int, *, seed: int = 1234):
    """The same rows as ``inputs(n)`` would give, generated batch by batch (never all n at once)."""
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        yield torch.randn(min(batch, n - start), 784, generator=g)


def features(cfg, n: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """fp32 representations (5 hidden post-activations + logits) of both nets on n inputs."""
    a, b = nets(cfg)
    x = inputs(n)
    return list(extract(a, x, batch_size=n).values()), list(extract(b, x, batch_size=n).values())


def warm_up() -> None:
    """Start the BLAS thread pools outside the timed region."""
    a = np.ones((256, 256))
    _ = a @ a
    t = torch.ones(256, 256)
    _ = t @ t


def minimal_flops(n: int, pa, pb) -> float:
    """Cross products 2 n (sum p_a)(sum p_b) + SYRK self-products n sum p^2 per network."""
    return 2.0 * n * sum(pa) * sum(pb) + n * (sum(p * p for p in pa) + sum(q * q for q in pb))


def timed(fn):
    warm_up()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def max_error(result, reference_path: str | None) -> float | None:
    if reference_path is None:
        return None
    ref = np.load(reference_path)
    got = result.detach().cpu().numpy() if isinstance(result, torch.Tensor) else np.asarray(result)
    if got.shape != ref.shape:
        raise ValueError(f"result shape {got.shape} != reference shape {ref.shape}")
    return float(np.abs(got.astype(np.float64) - ref).max())


# --------------------------------------------------------------------------- GEMM bound


def task_gemm(cfg, *, dtype: str, backend: str) -> dict:
    """Best-of-3 rate of ``A.T @ B`` with the shape of the W1 cross GEMM (k rows x sum p)."""
    P = sum(widths(cfg)[1:])
    k = min(4096, cfg["n1"])
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, P)).astype(dtype)
    b = rng.standard_normal((k, P)).astype(dtype)
    if backend == "torch":
        a, b = torch.from_numpy(a), torch.from_numpy(b)
    warm_up()
    _ = a.T @ b
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        _ = a.T @ b
        best = min(best, time.perf_counter() - t0)
    return {"seconds": best, "gflops": 2.0 * k * P * P / best / 1e9, "note": f"({k} x {P})^T ({k} x {P})"}


# --------------------------------------------------------------------------- W1


def task_w1_reference(cfg, *, save: str) -> dict:
    """Plain float64 NumPy feature route, per pair (centre once, self norms once): the reference."""
    fa, fb = features(cfg, cfg["n1"])

    def run():
        xa = [f.double().numpy() for f in fa]
        xb = [f.double().numpy() for f in fb]
        xa = [x - x.mean(axis=0) for x in xa]
        xb = [y - y.mean(axis=0) for y in xb]
        na = [np.linalg.norm(x.T @ x) for x in xa]
        nb = [np.linalg.norm(y.T @ y) for y in xb]
        return np.array([[np.linalg.norm(x.T @ y) ** 2 / (sx * sy) for y, sy in zip(xb, nb)] for x, sx in zip(xa, na)])

    ref, seconds = timed(run)
    np.save(save, ref)
    return {"seconds": seconds, "error": 0.0, "flops": minimal_flops(cfg["n1"], *_widths(fa, fb))}


def _widths(fa, fb):
    return [f.shape[1] for f in fa], [f.shape[1] for f in fb]


def task_w1_numpy_fp32(cfg, *, reference: str | None = None) -> dict:
    """What a user writes in NumPy for the fp32 matrix: centre in float32, one cross GEMM of the
    concatenated layers, one SYRK (``x.T @ x``) per layer, block norms in float64."""
    fa, fb = features(cfg, cfg["n1"])

    def run():
        xa = [x - x.mean(axis=0) for x in (f.numpy() for f in fa)]
        xb = [y - y.mean(axis=0) for y in (f.numpy() for f in fb)]
        oa, ob = np.cumsum([0] + [x.shape[1] for x in xa]), np.cumsum([0] + [y.shape[1] for y in xb])
        cross = np.concatenate(xa, axis=1).T @ np.concatenate(xb, axis=1)
        na = [np.linalg.norm((x.T @ x).astype(np.float64)) for x in xa]
        nb = [np.linalg.norm((y.T @ y).astype(np.float64)) for y in xb]
        return np.array([[np.linalg.norm(cross[oa[i]:oa[i + 1], ob[j]:ob[j + 1]].astype(np.float64)) ** 2 / (na[i] * nb[j])
                          for j in range(len(xb))] for i in range(len(xa))])

    out, seconds = timed(run)
    return {"seconds": seconds, "error": max_error(out, reference), "flops": minimal_flops(cfg["n1"], *_widths(fa, fb))}


def task_w1_ours(cfg, *, precision: str, reference: str | None = None) -> dict:
    fa, fb = features(cfg, cfg["n1"])
    out, seconds = timed(lambda: linear_cka_matrix(fa, fb, precision=precision))
    return {"seconds": seconds, "error": max_error(out, reference), "flops": minimal_flops(cfg["n1"], *_widths(fa, fb))}


def task_w1_compare(cfg, *, reference: str | None = None) -> dict:
    """``compare(a, b, measure="linear_cka")``: prepare every layer, then ``matrix_fn`` if wired."""
    fa, fb = features(cfg, cfg["n1"])
    a = dict(zip(map(str, range(len(fa))), fa))
    b = dict(zip(map(str, range(len(fb))), fb))
    out, seconds = timed(lambda: layer_sim.compare(a, b, measure="linear_cka").values)
    wired = get("linear_cka").matrix_fn is not None
    return {
        "seconds": seconds,
        "error": max_error(out, reference),
        "flops": minimal_flops(cfg["n1"], *_widths(fa, fb)),
        "note": "matrix_fn wired" if wired else "matrix_fn not wired: per-pair score loop",
    }


def task_w1_models(cfg, *, route: str, precision: str = "fp64", reference: str | None = None) -> dict:
    """From the models: forward with hooks (``extract``), then ``linear_cka_matrix`` (route
    ``"matrix"``) or ``compare(measure="linear_cka")`` (route ``"compare"``); the forward pass is
    timed separately too (``forward_seconds``)."""
    a, b = nets(cfg)
    x = inputs(cfg["n1"])
    n = cfg["n1"]
    forward = 0.0

    def run():
        nonlocal forward
        t0 = time.perf_counter()
        fa, fb = extract(a, x, batch_size=n), extract(b, x, batch_size=n)
        forward = time.perf_counter() - t0
        if route == "compare":
            return layer_sim.compare(fa, fb, measure="linear_cka").values
        return linear_cka_matrix(list(fa.values()), list(fb.values()), precision=precision)

    out, seconds = timed(run)
    return {"seconds": seconds, "forward_seconds": forward, "error": max_error(out, reference),
            "flops": minimal_flops(n, widths(cfg)[1:], widths(cfg)[1:]), "note": f"forward {forward:.2f} s"}


# --------------------------------------------------------------------------- W2


def task_w2_stream(cfg, *, precision: str, batch: int, reference: str | None = None) -> dict:
    """n inputs generated and pushed through both nets batch by batch into StreamingLinearCKA."""
    a, b = nets(cfg)
    n = cfg["n2"]
    acc = StreamingLinearCKA(precision=precision)
    forward = 0.0

    def run():
        nonlocal forward
        for xb in input_batches(n, batch):
            t0 = time.perf_counter()
            ra = extract(a, xb, batch_size=batch)
            rb = extract(b, xb, batch_size=batch)
            forward += time.perf_counter() - t0
            acc.update(ra, rb)
        return acc.value()

    out, seconds = timed(run)
    np.save(cfg["scratch"] + f"/w2_{precision}.npy", out)
    return {
        "seconds": seconds,
        "cka_seconds": seconds - forward,
        "error": max_error(out, reference),
        "flops": minimal_flops(n, widths(cfg)[1:], widths(cfg)[1:]),
        "state_mb": acc.state_bytes() / 2**20,
        "note": f"batches of {batch}; forward {forward:.1f} s",
    }


# --------------------------------------------------------------------------- W3


def task_w3_rbf(cfg, *, n: int) -> dict:
    """6x6 RBF CKA (sigma = 0.8 x median distance) through ``compare``, features precomputed."""
    fa, fb = features(cfg, n)
    a = dict(zip(map(str, range(len(fa))), fa))
    b = dict(zip(map(str, range(len(fb))), fb))
    out, seconds = timed(lambda: layer_sim.compare(a, b, measure="rbf_cka").values)
    return {"seconds": seconds, "note": f"full 6×6; diagonal mean {float(np.mean(np.diag(out))):.4f}"}


def task_w3_rbf_pair(cfg, *, n: int) -> dict:
    """One layer pair (act3 of each net) timed as prepare x2 + score; the 6×6 time is extrapolated
    as 12 prepares + 36 scores (what ``compare`` does), for sizes where the full matrix would
    exceed the suite's time budget."""
    fa, fb = features(cfg, n)
    x, y = fa[2], fb[2]
    del fa, fb
    m = get("rbf_cka")
    warm_up()
    t0 = time.perf_counter()
    px = m.prepare(x)
    t1 = time.perf_counter()
    py = m.prepare(y)
    t2 = time.perf_counter()
    value = float(m.score(px, py))
    t3 = time.perf_counter()
    prepare, score = ((t1 - t0) + (t2 - t1)) / 2, t3 - t2
    return {
        "seconds": t3 - t0,
        "note": f"one pair (value {value:.4f}): prepare {prepare:.1f} s, score {score:.1f} s; "
        f"6×6 extrapolated {12 * prepare + 36 * score:.0f} s",
    }


# --------------------------------------------------------------------------- W4


W4_PARAMS = {"minibatch_cka": lambda n: {"batch_size": max(4, n // 10)}}


def task_w4(cfg, *, measure: str) -> dict:
    """Kornblith sanity check: 10 random-init nets (seeds 0-9), ``layer_identification`` timed."""
    n, k = cfg["n4"], cfg["nets4"]
    x = inputs(n)
    reps = [extract(MLP(cfg["widths4"], seed=s).eval(), x, batch_size=n) for s in range(k)]
    params = W4_PARAMS.get(measure, lambda n: {})(n)
    out, seconds = timed(lambda: layer_sim.layer_identification(reps, measure, **params))
    return {"seconds": seconds, "note": f"accuracy {out.accuracy:.2f} (random init)"}


def w4_measures() -> list[str]:
    # W4 extracts features only; gradient-aware indexes are timed in benchmarks/gradients.py.
    from layer_sim.measures import get

    return [name for name in available() if not get(name, **W4_PARAMS.get(name, lambda n: {})(10)).uses_gradients]
