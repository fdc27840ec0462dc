"""Peer CKA libraries on W1, each called through its documented API (run only with ``--peers``).

Install without letting pip replace torch::

    pip install --no-deps pytorch-cka ckatorch torch-cka simtorch
    pip install --no-deps tqdm seaborn pyyaml safetensors

Every peer is imported inside its task, so the benchmark works without them; an ImportError, a
crash, a timeout or a wrong answer is reported as such, never dropped.
"""

from __future__ import annotations

import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

from workloads import features, inputs, max_error, minimal_flops, nets, timed, widths

#: name -> (task function name, what the row means)
PEERS = {
    "pytorch-cka cka_from_features (full batch)": ("task_pytorch_cka_features", "features precomputed"),
    "pytorch-cka compute_cka (minibatch 1000)": ("task_pytorch_cka_minibatch", "extraction included; different estimator"),
    "torch-cka CKA.compare (minibatch 1000)": ("task_torch_cka", "extraction included; different estimator"),
    "simtorch CKA.compute (minibatch 1000)": ("task_simtorch", "extraction included"),
    "ckatorch CKA (minibatch 1000)": ("task_ckatorch", "extraction included; different estimator"),
    "ckatorch cka_base x36 (full batch)": ("task_ckatorch_base", "features precomputed"),
}

LAYERS = ("act1", "act2", "act3", "act4", "act5", "fc_out")


def _loader(cfg, batch: int = 1000) -> DataLoader:
    return DataLoader(TensorDataset(inputs(cfg["n1"])), batch_size=batch, shuffle=False)


def _flops(cfg):
    return minimal_flops(cfg["n1"], widths(cfg)[1:], widths(cfg)[1:])


def _layers(cfg):
    return list(LAYERS[: cfg["depth"]]) + ["fc_out"]


def task_pytorch_cka_features(cfg, *, reference=None) -> dict:
    from cka import cka_from_features

    fa, fb = features(cfg, cfg["n1"])
    with torch.no_grad():
        out, seconds = timed(lambda: cka_from_features(fa, fb))
    return {"seconds": seconds, "error": max_error(out, reference), "flops": _flops(cfg)}


def task_pytorch_cka_minibatch(cfg, *, reference=None) -> dict:
    from cka import compute_cka

    a, b = nets(cfg)
    loader = _loader(cfg)
    out, seconds = timed(lambda: compute_cka(a, b, loader, layers=_layers(cfg), progress=False)[0])
    return {"seconds": seconds, "error": max_error(out, reference), "flops": _flops(cfg)}


def task_torch_cka(cfg, *, reference=None) -> dict:
    from torch_cka import CKA

    a, b = nets(cfg)
    loader = _loader(cfg)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = CKA(a, b, model1_name="A", model2_name="B", model1_layers=_layers(cfg), model2_layers=_layers(cfg))
            c.compare(loader)
        return c.export()["CKA"]

    out, seconds = timed(run)
    return {"seconds": seconds, "error": max_error(out, reference), "flops": _flops(cfg)}


def task_simtorch(cfg, *, reference=None) -> dict:
    from simtorch.model.sim_model import SimilarityModel
    from simtorch.similarity.cka import CKA

    a, b = nets(cfg)
    loader = _loader(cfg)

    def run():
        sa = SimilarityModel(a, layers_to_include=_layers(cfg))
        sb = SimilarityModel(b, layers_to_include=_layers(cfg))
        with torch.no_grad():
            return CKA(sa, sb).compute(loader)

    out, seconds = timed(run)
    return {"seconds": seconds, "error": max_error(out, reference), "flops": _flops(cfg)}


def task_ckatorch(cfg, *, reference=None) -> dict:
    from ckatorch.cka import CKA

    a, b = nets(cfg)
    loader = _loader(cfg)

    def run():
        return CKA(a, b, layers=_layers(cfg)).__call__(loader, epochs=1)

    out, seconds = timed(run)
    return {"seconds": seconds, "error": max_error(out, reference), "flops": _flops(cfg)}


def task_ckatorch_base(cfg, *, reference=None) -> dict:
    from ckatorch.core import cka_base

    fa, fb = features(cfg, cfg["n1"])

    def run():
        with torch.no_grad():
            return torch.tensor([[float(cka_base(x, y)) for y in fb] for x in fa])

    out, seconds = timed(run)
    return {"seconds": seconds, "error": max_error(out, reference), "flops": _flops(cfg)}
