"""The one input gate every public measure calls first; private kernels trust its output."""

from __future__ import annotations

import numpy as np
import torch

from layer_sim.errors import InputError

__all__ = ["as_matrix", "check_pair", "accumulation_dtype", "to_output"]


def accumulation_dtype(device: torch.device) -> torch.dtype:
    """float64 everywhere it exists; MPS has no float64, so there we accumulate in float32."""
    return torch.float32 if device.type == "mps" else torch.float64


def as_matrix(x, *, name: str = "x", fn: str = "measure", min_n: int = 2, keep_float: bool = False) -> torch.Tensor:
    """Return ``x`` as an ``(n, p)`` tensor in the accumulation dtype, rows = examples.

    ``keep_float=True`` leaves floating-point input in its own dtype (no full float64 copy), for
    kernels that cast chunk by chunk themselves (``layer_sim.linear_cka_matrix``).

    NumPy arrays are wrapped without copying when possible; torch tensors keep their device
    and autograd history. Inputs of rank > 2 are flattened per example; rank 1 is rejected
    (ambiguous: one example or one feature?).
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise InputError(f"{fn}: {name} is not array-like ({type(x).__name__})") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputError(f"{fn}: {name} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise InputError(f"{fn}: {name} must be real, got complex dtype {t.dtype}")
    if t.ndim < 2:
        raise InputError(
            f"{fn}: {name} must have shape (n_examples, n_features), got shape {tuple(t.shape)}; "
            "reshape a single feature with x.reshape(-1, 1)"
        )
    if t.ndim > 2:
        t = t.reshape(t.shape[0], -1)
    n, p = t.shape
    if n < min_n:
        raise InputError(
            f"{fn}: {name} has {n} example(s) (shape={tuple(t.shape)}) while a minimum of {min_n} is required"
        )
    if p < 1:
        raise InputError(f"{fn}: {name} has no features (shape={tuple(t.shape)})")
    if not (keep_float and t.is_floating_point()):
        t = t.to(accumulation_dtype(t.device))
    # One cheap reduction first; the element-wise scan only runs to build the message.
    if not torch.isfinite(t.detach().sum()):
        bad = int((~torch.isfinite(t.detach())).sum())
        if bad:
            raise InputError(f"{fn}: {name} contains {bad} NaN or Inf value(s)")
    return t


def check_pair(x, y, *, fn: str, min_n: int = 2) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate two representations of the same examples.

    Returns ``(X, Y, numpy_out)``: both as ``(n, p)`` tensors in the accumulation dtype on one
    device, and whether the caller should return a Python float (no tensor among the inputs).
    """
    X = as_matrix(x, name="x", fn=fn, min_n=min_n)
    Y = as_matrix(y, name="y", fn=fn, min_n=min_n)
    if X.shape[0] != Y.shape[0]:
        raise InputError(
            f"{fn}: x and y must have the same number of examples (rows), got {X.shape[0]} and {Y.shape[0]}"
        )
    if X.device != Y.device:
        raise InputError(f"{fn}: x is on {X.device} but y is on {Y.device}; move both to one device")
    if X.dtype != Y.dtype:  # only when one side is on MPS; pick the narrower accumulation
        X, Y = X.to(torch.float32), Y.to(torch.float32)
    numpy_out = not isinstance(x, torch.Tensor) and not isinstance(y, torch.Tensor)
    return X, Y, numpy_out


def to_output(value: torch.Tensor, numpy_out: bool):
    """A Python float for NumPy callers, a 0-d tensor (same device, autograd kept) for torch callers."""
    return float(value.detach().cpu()) if numpy_out else value
