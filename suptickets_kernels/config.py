"""Launch configurations: autotuned for Hopper (H100/H200) on a GPU over a few configurations per
kernel (row tiles of 128 rows with 8 warps, 64 with 4, or 256 with 8, 3 pipeline stages; for the
SDDMM, 64 or 32 reduction steps): a 128x128 bf16 block and its 128-row input tile fit three
stages in 228 KB of shared memory, and configurations that do not fit are skipped by the
autotuner. The 256-row tile halves how often a row tile re-reads the weight blocks from L2
(with 64x64 blocks at density 0.1 and 8192 rows: 105 MB instead of 210 MB per product, against
the 410 MB of input columns every tile size reads). Each configuration is a compilation (about
a second) per block size and dtype, so the list stays short; one small configuration under
``TRITON_INTERPRET=1`` (the interpreter cannot autotune several, and runs every program in
Python, so tiles stay small). ``TRITON_INTERPRET`` must be set before this package is imported."""
from __future__ import annotations

import os

import triton


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def matmul_configs() -> list[triton.Config]:
    """Row tiles of the forward and ``dX`` kernels (one block-row or block-column per program)."""
    if interpreting():
        return [triton.Config({"BLOCK_M": 16}, num_warps=1, num_stages=1)]
    return [triton.Config({"BLOCK_M": 128}, num_warps=8, num_stages=3),
            triton.Config({"BLOCK_M": 64}, num_warps=4, num_stages=3),
            triton.Config({"BLOCK_M": 256}, num_warps=8, num_stages=3)]


def sddmm_configs() -> list[triton.Config]:
    """Row chunks of the ``dvalues`` kernel (one active block per program)."""
    if interpreting():
        return [triton.Config({"BLOCK_K": 16}, num_warps=1, num_stages=1)]
    return [triton.Config({"BLOCK_K": 64}, num_warps=4, num_stages=3),
            triton.Config({"BLOCK_K": 32}, num_warps=4, num_stages=4)]


def input_precision(dtype, precision: str) -> str:
    """``tl.dot``'s ``input_precision``: ``precision`` ("tf32" or "ieee") for float32 operands;
    "ieee" (the only meaningful one) for float16 and bfloat16."""
    import torch

    return precision if dtype == torch.float32 else "ieee"
