"""Launch configurations: autotuned for Hopper (H100/H200) on a GPU over four configurations
per kernel (tiles of 64/128 rows or 32/64 reduction steps, 4 or 8 warps, 3 pipeline stages:
a 128x128 bf16 block and its 128-row input tile fit three stages in 228 KB of shared memory;
configurations that do not fit are skipped by the autotuner); one small configuration
under ``TRITON_INTERPRET=1`` (the interpreter cannot autotune several, and runs every program
in Python, so tiles stay small). ``TRITON_INTERPRET`` must be set before this package is imported."""
from __future__ import annotations

import os

import triton


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def matmul_configs() -> list[triton.Config]:
    """Row tiles of the forward and ``dX`` kernels (one block-row or block-column per program)."""
    if interpreting():
        return [triton.Config({"BLOCK_M": 16}, num_warps=1, num_stages=1)]
    return [triton.Config({"BLOCK_M": bm}, num_warps=w, num_stages=3) for bm in (64, 128) for w in (4, 8)]


def sddmm_configs() -> list[triton.Config]:
    """Row chunks of the ``dvalues`` kernel (one active block per program)."""
    if interpreting():
        return [triton.Config({"BLOCK_K": 16}, num_warps=1, num_stages=1)]
    return [triton.Config({"BLOCK_K": bk}, num_warps=w, num_stages=3) for bk in (32, 64) for w in (4, 8)]
