"""Loads the Triton kernels (``suptickets_kernels``) when Triton is installed and usable; when
it is not, ``available`` is False and ``load_error`` says why (the package imports either way,
and calls that need the kernels say so)."""
from __future__ import annotations

import os
from typing import Any

import torch

kernels: Any
load_error: Exception | None

try:
    if not hasattr(torch.library, "triton_op"):
        raise ImportError(f"the Triton kernels need torch >= 2.6 (torch.library.triton_op); "
                          f"torch is {torch.__version__}")
    import suptickets_kernels as kernels

    available = True
    load_error = None
except Exception as exc:  # triton missing, torch too old, or triton unusable here (< 3.4 needs a GPU driver)
    kernels = None
    available = False
    load_error = exc


def interpreting() -> bool:
    """True when Triton runs its interpreter (``TRITON_INTERPRET=1``, set before import)."""
    return available and kernels.interpreting()


def define(name: str, mutates_args=()):
    """Decorator that registers a Python function calling Triton kernels as an operator:
    ``torch.library.triton_op`` on GPUs (``torch.compile`` traces into the kernels), an opaque
    ``torch.library.custom_op`` under the interpreter (whose kernels cannot be traced with fake
    tensors); both get the fake implementations registered next to them."""
    if interpreting():
        return torch.library.custom_op(name, mutates_args=mutates_args)
    return torch.library.triton_op(name, mutates_args=mutates_args)


def fp32_precision() -> str:
    """``input_precision`` of float32 products: ``SUPTICKETS_FP32_PRECISION`` = "tf32" (default,
    TensorFloat-32 tensor cores) or "ieee" (exact float32, slower)."""
    value = os.environ.get("SUPTICKETS_FP32_PRECISION", "tf32").strip().lower() or "tf32"
    if value not in ("tf32", "ieee"):
        raise ValueError(f"SUPTICKETS_FP32_PRECISION must be 'tf32' or 'ieee'; got {value!r}")
    return value
