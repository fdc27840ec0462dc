"""The one input gate every public measure calls first, and the one result check; kernels trust them.

Input rules (every violation is an :class:`~layer_sim.errors.InputError` naming the argument):

- NumPy arrays, anything ``numpy.asarray`` turns into a numeric array, or strided torch tensors;
  rows are examples, higher-rank inputs are flattened per example, rank 1 is refused.
- Sparse torch tensors (COO, CSR, CSC, BSR, BSC) and ``scipy.sparse`` matrices are refused with
  the fix (``.to_dense()`` / ``.toarray()``): every index needs the dense values, and densifying
  silently could exhaust memory. Quantized tensors (fix: ``.dequantize()``), nested tensors and
  tensors on the ``meta`` device (no values) are refused too.
- ``np.longdouble`` is accepted by converting to float64 (the accumulation dtype), and refused
  if a value lies outside float64's range (it would become inf or 0).
- NumPy masked arrays are refused unless no element is masked (the mask would otherwise be
  dropped silently); an unmasked one is used as its data.
- Non-numeric (strings, objects, dates, durations), complex, NaN/Inf, too few rows, no columns.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from layer_sim.errors import DegenerateInputError, InputError

__all__ = ["as_matrix", "as_square", "check_pair", "accumulation_dtype", "to_output", "to_array", "check_range"]


def accumulation_dtype(device: torch.device) -> torch.dtype:
    """float64 everywhere it exists; MPS has no float64, so there we accumulate in float32."""
    return torch.float32 if device.type == "mps" else torch.float64


def _is_scipy_sparse(x) -> bool:
    return type(x).__module__.startswith("scipy.sparse")


def _to_tensor(x, name: str, fn: str) -> torch.Tensor:
    """``x`` as a strided tensor (no copy when possible), refusing what cannot be used as is."""
    if isinstance(x, torch.Tensor):
        if x.is_nested:
            raise InputError(f"{fn}: {name} is a nested tensor; the indexes need one (n, p) matrix: pad or stack it")
        if x.layout != torch.strided:
            raise InputError(
                f"{fn}: {name} is a sparse tensor (layout {x.layout}); the indexes need dense values: "
                f"pass {name}.to_dense()"
            )
        if x.is_quantized:
            raise InputError(
                f"{fn}: {name} is a quantized tensor ({x.dtype}); the indexes need real values: "
                f"pass {name}.dequantize()"
            )
        if x.is_meta:
            raise InputError(f"{fn}: {name} is on the meta device, which holds shapes but no values")
        return x
    if _is_scipy_sparse(x):
        raise InputError(
            f"{fn}: {name} is a scipy.sparse {type(x).__name__}; the indexes need dense values: "
            f"pass {name}.toarray()"
        )
    if isinstance(x, np.ma.MaskedArray):
        masked = int(np.ma.count_masked(x))
        if masked:
            raise InputError(
                f"{fn}: {name} is a masked array with {masked} masked value(s); the indexes have no "
                "notion of missing values: drop those examples or fill them (e.g. with .filled(value))"
            )
        x = np.ma.getdata(x)
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise InputError(f"{fn}: {name} is not array-like ({type(x).__name__}): {exc}") from exc
    # timedelta64 counts as a NumPy number (a signed integer), but durations are not features.
    if arr.dtype == object or np.issubdtype(arr.dtype, np.timedelta64) or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ):
        raise InputError(f"{fn}: {name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise InputError(f"{fn}: {name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype == np.longdouble and np.longdouble != np.float64:
        with np.errstate(over="ignore", under="ignore"):  # counted below and refused in one message
            converted = arr.astype(np.float64)
        lost = np.count_nonzero(~np.isfinite(converted)) - np.count_nonzero(~np.isfinite(arr))
        lost += np.count_nonzero(arr) - np.count_nonzero(converted)
        if lost:
            raise InputError(
                f"{fn}: {name} has {lost} {arr.dtype} value(s) outside the float64 range "
                "(they would become inf or 0); the indexes compute in float64: rescale the input"
            )
        arr = converted
    # ascontiguousarray makes a 0-d array 1-d, and the shape error would then misreport it.
    return torch.from_numpy(np.ascontiguousarray(arr) if arr.ndim else arr)


def as_matrix(x, *, name: str = "x", fn: str = "measure", min_n: int = 2, keep_float: bool = False) -> torch.Tensor:
    """Return ``x`` as an ``(n, p)`` tensor in the accumulation dtype, rows = examples.

    ``keep_float=True`` leaves floating-point input in its own dtype (no full float64 copy), for
    kernels that cast chunk by chunk themselves (``layer_sim.linear_cka_matrix``).

    NumPy arrays are wrapped without copying when possible; torch tensors keep their device
    and autograd history. Inputs of rank > 2 are flattened per example; rank 1 is rejected
    (ambiguous: one example or one feature?). See the module docstring for the other rules.
    """
    t = _to_tensor(x, name, fn)
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


def as_square(K, *, name: str, fn: str, min_n: int = 1) -> torch.Tensor:
    """A symmetric ``(n, n)`` matrix (e.g. a Gram matrix) in the accumulation dtype.

    Symmetric to rounding is accepted (``max|K - K^T| <= sqrt(eps) max|K|``) and replaced by
    its symmetric part, since the centring formulas assume symmetry; more is refused.
    """
    t = _to_tensor(K, name, fn)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise InputError(f"{fn}: {name} must be a square (n, n) matrix, got shape {tuple(t.shape)}")
    t = as_matrix(t, name=name, fn=fn, min_n=min_n)
    td = t.detach()
    scale = float(td.abs().amax())
    asym = float((td - td.mT).abs().amax())
    if asym > math.sqrt(torch.finfo(t.dtype).eps) * scale:
        raise InputError(
            f"{fn}: {name} is not symmetric (max |{name} - {name}^T| = {asym:.3g}, max |{name}| = {scale:.3g}); "
            "a Gram matrix k(x_i, x_j) is symmetric"
        )
    return 0.5 * t + 0.5 * t.mT


def check_pair(x, y, *, fn: str, min_n: int = 2) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate two representations of the same examples.

    Returns ``(X, Y, numpy_out)``: both as ``(n, p)`` tensors in the accumulation dtype on one
    device, and whether the caller should return a Python float (no tensor among the inputs).
    """
    X = as_matrix(x, name="x", fn=fn, min_n=min_n)
    Y = as_matrix(y, name="y", fn=fn, min_n=min_n)
    check_rows(X, Y, fn)
    if X.dtype != Y.dtype:  # only when one side is on MPS; pick the narrower accumulation
        X, Y = X.to(torch.float32), Y.to(torch.float32)
    return X, Y, is_numpy_pair(x, y)


def check_rows(X: torch.Tensor, Y: torch.Tensor, fn: str) -> None:
    """The pair rules: same number of examples, same device."""
    if X.shape[0] != Y.shape[0]:
        raise InputError(
            f"{fn}: x and y must have the same number of examples (rows), got {X.shape[0]} and {Y.shape[0]}"
        )
    if X.device != Y.device:
        raise InputError(f"{fn}: x is on {X.device} but y is on {Y.device}; move both to one device")


def is_numpy_pair(x, y) -> bool:
    """Whether a pairwise function should return a Python float (no tensor among its inputs)."""
    return not isinstance(x, torch.Tensor) and not isinstance(y, torch.Tensor)


def to_output(value: torch.Tensor, numpy_out: bool):
    """A Python float for NumPy callers, a 0-d tensor (same device, autograd kept) for torch callers."""
    return float(value.detach().cpu()) if numpy_out else value


def to_array(value: torch.Tensor, like):
    """An ndarray for NumPy input ``like``, the tensor itself (device and autograd kept) for torch input."""
    return value if isinstance(like, torch.Tensor) else value.detach().cpu().numpy()


def check_range(
    fn: str, value: torch.Tensor, *, lower: float = 0.0, rounding: torch.dtype | None = None
) -> torch.Tensor:
    """The one result check of a bounded index: ``value`` (any shape) in ``[lower, 1]``.

    The bound holds exactly (Cauchy-Schwarz for CKA), so only rounding can cross it: excursions
    up to ``sqrt(eps)`` of ``rounding`` (the dtype the products were computed in; default the
    value's) are clipped, and a larger one, or NaN, raises instead of being hidden by a clamp.
    """
    tol = math.sqrt(torch.finfo(rounding or value.dtype).eps)
    v = value.detach()
    outside = ~((v >= lower - tol) & (v <= 1 + tol))  # also catches NaN
    if outside.any():
        raise DegenerateInputError(
            f"{fn}: value {float(v[outside][0])!r} lies outside [{lower:g}, 1] by more than rounding ({tol:.1e}); "
            "the representations are too close to degenerate for this estimator"
        )
    return value.clamp(lower, 1.0)
