"""How the product kernels of ``bsr_linear.py`` and ``bsr_conv2d.py`` split their work: the
row tile of a program, its launch grid, the row parts of the SDDMM and where a part is written.
Shared so that both products and the gradient scores lay out their programs the same way."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def row_tile(GRID_N, M, BLOCK_M: tl.constexpr):
    """The program's (block index ``n`` in ``[0, GRID_N)``, int64 row indices, row mask).
    Consecutive programs take the ``GRID_N`` block-rows (block-columns) of one row tile, so the
    tile's activations are reused from L2."""
    pid = tl.program_id(0)
    rows = tl.cast((pid // GRID_N) * BLOCK_M + tl.arange(0, BLOCK_M), tl.int64)
    return pid % GRID_N, rows, rows < M


@triton.jit
def store_part(dv_ptr, part, s, nnz, acc, BR: tl.constexpr, BC: tl.constexpr):
    """Writes block ``s``'s partial ``dvalues`` of row part ``part`` (``dv[part, s]``)."""
    offs_r = tl.arange(0, BR)
    offs_c = tl.arange(0, BC)
    out = dv_ptr + (tl.cast(part, tl.int64) * nnz + tl.cast(s, tl.int64)) * (BR * BC)
    tl.store(out + offs_r[:, None] * BC + offs_c[None, :], acc.to(dv_ptr.dtype.element_ty))


def tile_grid(rows: int, n: int):
    """Launch grid of the ``row_tile`` kernels: one program per (row tile, one of ``n`` blocks)."""
    return lambda meta: (triton.cdiv(rows, meta["BLOCK_M"]) * n,)


def split_parts(M: int, nnz: int, sms: int = 132) -> int:
    """Parts of the row range per block for the SDDMM: about four programs per multiprocessor
    (132 on an H100/H200) when the blocks are few, each part at least 1024 rows, at most 16."""
    return max(1, min(16, 4 * sms // max(nnz, 1), M // 1024))
