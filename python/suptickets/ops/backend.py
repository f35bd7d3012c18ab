"""Which implementation runs an op, decided per call from the tensors (DESIGN.md, "Ops").

CPU float32/float64 tensors with blocks larger than (1, 1) run the C++ kernels; CUDA tensors
run the Triton kernels where an op has one (``bsr_linear`` so far) and its operands fit
(float16/bfloat16/float32, block sides powers of two >= 16); anything else runs the
reference. ``SUPTICKETS_BACKEND`` overrides: ``reference`` forces the reference, ``cpu``
makes a call the C++ kernels cannot take an error instead of a silent fallback, ``triton``
does the same for the Triton kernels and sends CPU tensors to them too (which runs them in
Triton's interpreter when ``TRITON_INTERPRET=1``), ``auto`` (or unset) is the default.
"""
from __future__ import annotations

import os

import torch

from . import _extension

CHOICES = ("auto", "cpu", "triton", "reference")
_KERNEL_DTYPES = (torch.float32, torch.float64)
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


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


def choose(x: torch.Tensor, values: torch.Tensor, block_size, triton: bool = False, min_block: int = 16,
           cpu_unit_blocks: bool = False) -> str:
    """'cpu', 'triton' or 'reference' for an op on these operands. ``triton``: the op has Triton
    kernels, which take block sides that are powers of two >= ``min_block`` (16 where they use
    ``tl.dot``); ``cpu_unit_blocks``: its C++ kernel takes (1, 1) blocks too."""
    want = requested()
    if want == "triton" or (want == "auto" and x.device.type == "cuda"):
        reason = triton_reason(x, values, block_size, min_block) if triton else "this op has no Triton kernel yet"
        if reason is None:
            return "triton"
        if want == "triton":
            raise RuntimeError(f"SUPTICKETS_BACKEND=triton, but the Triton kernels cannot run this call: {reason}")
        return "reference"
    return choose_for(x, unit_blocks=cpu_unit_blocks or tuple(block_size) != (1, 1))


def triton_reason(x: torch.Tensor, values: torch.Tensor, block_size, min_block: int = 16) -> str | None:
    """Why the Triton kernels cannot take these operands, or None."""
    from . import _triton

    if not _triton.available:
        return f"Triton kernels are unavailable ({_triton.load_error})"
    if x.device.type == "cpu" and not _triton.interpreting():
        return "CPU tensors run Triton only under TRITON_INTERPRET=1"
    if x.dtype not in _TRITON_DTYPES:
        return f"dtype {x.dtype} (the Triton kernels take float16, bfloat16 and float32)"
    if any(b < min_block or b & (b - 1) for b in block_size):
        return f"block size {tuple(block_size)} (the Triton kernels need powers of two >= {min_block})"
    return None


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
