"""Unit kinds of the sweep benchmark, in a module of their own so that pool and Ray workers import them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from layer_sim.runs import UnitResult, unit_kind


@unit_kind("bench.train")
def train(spec, context):
    """A small training run: an MLP 784-w-w-10 on a fixed random data set, ``steps`` SGD steps of ``batch``."""
    g = torch.Generator().manual_seed(spec["seed"])
    x = torch.randn(2048, 784, generator=g, device=context.device)
    y = torch.randint(0, 10, (2048,), generator=g, device=context.device)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(spec["seed"])
        w = spec["width"]
        model = nn.Sequential(nn.Linear(784, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 10)).to(context.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history, b = [], spec["batch"]
    for step in range(spec["steps"]):
        start = (step * b) % (2048 - b)
        loss = F.cross_entropy(model(x[start:start + b]), y[start:start + b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:
            history.append({"step": step, "loss": loss.item()})
    return UnitResult(metrics={"loss": loss.item()}, histories={"train": history})


@unit_kind("bench.noop")
def noop(spec, context):
    """No work: 5 metrics and a history of ``rows`` rows, to time what the driver and store add per unit."""
    return UnitResult(metrics={f"m{k}": float(k) for k in range(5)},
                      histories={"h": [{"step": s, "loss": 1.0 / (s + 1)} for s in range(spec["rows"])]})
