"""Loads the Triton kernels (``suptickets_kernels``) the first time something needs them: a
CUDA tensor reaching an op, the Triton backend asked for by name, or a read of ``available``,
``load_error`` or ``kernels``. ``import suptickets`` alone does not import Triton. When Triton is
missing or unusable, ``available`` is False and ``load_error`` says why (the package works
either way, and calls that need the kernels say so).

An op file registers its Triton operators in a function decorated with :func:`on_load`, which
runs once the kernels are loaded (at once if they already are)."""
from __future__ import annotations

import os
from typing import Any, Callable

import torch

_loaded = False
_hooks: list[Callable[[Any], None]] = []
# set by _load() (annotated only, so that their first read goes through __getattr__)
kernels: Any
available: bool
load_error: Exception | None


def _load() -> None:
    """Imports the kernels once and runs every registered hook with them."""
    global _loaded, kernels, available, load_error
    if _loaded:
        return
    _loaded = True
    try:
        if not hasattr(torch.library, "triton_op"):
            raise ImportError(f"the Triton kernels need torch >= 2.6 (torch.library.triton_op); "
                              f"torch is {torch.__version__}")
        import suptickets_kernels

        kernels, available, load_error = suptickets_kernels, True, None
    except Exception as exc:  # triton missing, torch too old, or triton unusable here (< 3.4 needs a GPU driver)
        kernels, available, load_error = None, False, exc
        return
    for hook in _hooks:
        hook(kernels)


def __getattr__(name: str):
    """``available``, ``load_error`` and ``kernels`` load the kernels on first read."""
    if name in ("available", "load_error", "kernels"):
        _load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def on_load(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """Runs ``hook(kernels)`` once the kernels are loaded (now, if they are)."""
    _hooks.append(hook)
    if _loaded and available:
        hook(kernels)
    return hook


def interpreting() -> bool:
    """True when Triton runs its interpreter (``TRITON_INTERPRET=1``, set before import)."""
    _load()
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
