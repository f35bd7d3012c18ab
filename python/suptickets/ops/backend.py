"""Which implementation runs an op, decided per call from the tensors (DESIGN.md, "Ops").

CPU float32/float64 tensors with blocks larger than (1, 1) run the C++ kernels; anything
else runs the reference. ``SUPTICKETS_BACKEND`` overrides: ``reference`` forces the
reference, ``cpu`` makes a call the C++ kernels cannot take an error instead of a
silent fallback, ``auto`` (or unset) is the default.
"""
from __future__ import annotations

import os

import torch

from . import _extension

CHOICES = ("auto", "cpu", "reference")
_KERNEL_DTYPES = (torch.float32, torch.float64)


def requested() -> str:
    value = os.environ.get("SUPTICKETS_BACKEND", "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"SUPTICKETS_BACKEND must be one of {', '.join(CHOICES)}; got {value!r}")
    return value


def check_operands(op: str, x: torch.Tensor, values: torch.Tensor, bias) -> None:
    """Clear errors for mixed dtypes or devices, before any kernel sees them."""
    if values.dim() != 3:
        raise ValueError(f"{op}: values must be [nnz, br, bc], got shape {tuple(values.shape)}")
    if x.dtype != values.dtype:
        raise TypeError(f"{op}: input dtype {x.dtype} does not match values dtype {values.dtype}")
    if x.device != values.device:
        raise ValueError(f"{op}: input is on device {x.device} but values are on device {values.device}")
    if bias is not None and (bias.dtype != values.dtype or bias.device != values.device):
        raise TypeError(
            f"{op}: bias ({bias.dtype}, {bias.device}) must match values ({values.dtype}, {values.device})"
        )


def choose(x: torch.Tensor, values: torch.Tensor, block_size) -> str:
    """'cpu' or 'reference' for a product (bsr_linear, bsr_conv2d) on these operands."""
    return choose_for(x, unit_blocks=tuple(block_size) != (1, 1))


def choose_for(*tensors: torch.Tensor, unit_blocks: bool = True) -> str:
    """'cpu' or 'reference' for an op on ``tensors`` (float CPU tensors run the C++ kernels);
    ``unit_blocks=False`` sends (1, 1) blocks to the reference."""
    want = requested()
    if want == "reference":
        return "reference"
    reason = None
    bad_device = next((t.device for t in tensors if t.device.type != "cpu"), None)
    bad_dtype = next((t.dtype for t in tensors if t.dtype not in _KERNEL_DTYPES), None)
    if bad_device is not None:
        reason = f"tensors are on {bad_device}"
    elif bad_dtype is not None:
        reason = f"dtype {bad_dtype} (the CPU kernels take float32 and float64)"
    elif not unit_blocks:
        reason = "block size (1, 1) runs through the reference"
    elif not _extension.available:
        reason = "the C++ extension is not built"
        if want == "auto":
            _extension.warn_unavailable_once()
    if reason is None:
        return "cpu"
    if want == "cpu":
        raise RuntimeError(f"SUPTICKETS_BACKEND=cpu, but the C++ kernels cannot run this call: {reason}")
    return "reference"
