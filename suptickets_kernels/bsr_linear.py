"""Triton kernels of the block-sparse product ``y = x @ W^T (+ b)`` and its two backward
products, for a weight ``W[R, C]`` held as ``values[nnz, BR, BC]`` with the row-major slot
lists of ``suptickets.BlockLayout`` (``rows``, ``cols``, ``row_ptr``, ``col_ptr``,
``col_perm``; int32).

- forward: one program per (tile of ``BLOCK_M`` rows of ``x``, block-row ``r``) walks the
  block-row's active blocks (``row_ptr``) with ``tl.dot`` into an fp32 accumulator, bias in
  the epilogue; an empty block-row writes the bias (or zeros);
- ``dX = dY @ W``: one program per (row tile, block-column ``c``) walks the block-column's
  blocks through ``col_perm`` (no atomics);
- ``dvalues[s] = dY[:, r]^T @ X[:, c]`` (SDDMM): one program per active block and part of
  the rows (split-K: parts summed afterwards when there are few blocks).

Inputs are 2-D and row-contiguous (the launchers make them so); fp16, bf16 and fp32 with
fp32 accumulation; fp32 products use ``input_precision`` ("tf32" by default on GPUs,
"ieee" for exact fp32). Block sides must be powers of two >= 16 (``tl.dot``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .config import input_precision, interpreting, matmul_configs, sddmm_configs
from .tiles import row_tile, split_parts, store_part, tile_grid


@triton.autotune(configs=matmul_configs(), key=["M", "BR", "BC"])
@triton.jit
def _forward(x_ptr, v_ptr, cols_ptr, row_ptr_ptr, bias_ptr, y_ptr, M, stride_x, stride_y, GRID_N,
             HAS_BIAS: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr, PRECISION: tl.constexpr,
             BLOCK_M: tl.constexpr):
    r, rows64, in_m = row_tile(GRID_N, M, BLOCK_M)
    offs_r = tl.arange(0, BR)
    offs_c = tl.arange(0, BC)
    start = tl.load(row_ptr_ptr + r)
    end = tl.load(row_ptr_ptr + r + 1)
    acc = tl.zeros((BLOCK_M, BR), dtype=tl.float32)
    for s in range(start, end):
        c = tl.cast(tl.load(cols_ptr + s), tl.int64)
        xt = tl.load(x_ptr + rows64[:, None] * stride_x + (c * BC + offs_c)[None, :], mask=in_m[:, None], other=0.0)
        block = v_ptr + tl.cast(s, tl.int64) * (BR * BC)
        wt = tl.load(block + offs_r[None, :] * BC + offs_c[:, None])  # values[s]^T: [BC, BR]
        acc += tl.dot(xt, wt, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + r * BR + offs_r).to(tl.float32)[None, :]
    out = y_ptr + rows64[:, None] * stride_y + (r * BR + offs_r)[None, :]
    tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=in_m[:, None])


@triton.autotune(configs=matmul_configs(), key=["M", "BR", "BC"])
@triton.jit
def _grad_input(dy_ptr, v_ptr, rows_ptr, col_ptr_ptr, col_perm_ptr, dx_ptr, M, stride_dy, stride_dx, GRID_N,
                BR: tl.constexpr, BC: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr):
    c, rows64, in_m = row_tile(GRID_N, M, BLOCK_M)
    offs_r = tl.arange(0, BR)
    offs_c = tl.arange(0, BC)
    start = tl.load(col_ptr_ptr + c)
    end = tl.load(col_ptr_ptr + c + 1)
    acc = tl.zeros((BLOCK_M, BC), dtype=tl.float32)
    for j in range(start, end):
        s = tl.cast(tl.load(col_perm_ptr + j), tl.int64)
        r = tl.cast(tl.load(rows_ptr + s), tl.int64)
        gt = tl.load(dy_ptr + rows64[:, None] * stride_dy + (r * BR + offs_r)[None, :], mask=in_m[:, None], other=0.0)
        wt = tl.load(v_ptr + s * (BR * BC) + offs_r[:, None] * BC + offs_c[None, :])  # values[s]: [BR, BC]
        acc += tl.dot(gt, wt, input_precision=PRECISION)
    out = dx_ptr + rows64[:, None] * stride_dx + (c * BC + offs_c)[None, :]
    tl.store(out, acc.to(dx_ptr.dtype.element_ty), mask=in_m[:, None])


@triton.jit
def sddmm_block(dy_ptr, x_ptr, r, c, lo, hi, stride_dy, stride_x, BR: tl.constexpr, BC: tl.constexpr,
                PRECISION: tl.constexpr, BLOCK_K: tl.constexpr):
    """fp32 ``dY[lo:hi, r-th BR columns]^T @ X[lo:hi, c-th BC columns]``: one block of ``dW``."""
    offs_r = tl.arange(0, BR)
    offs_c = tl.arange(0, BC)
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BR, BC), dtype=tl.float32)
    for k0 in range(lo, hi, BLOCK_K):
        k = tl.cast(k0 + offs_k, tl.int64)
        in_k = k < hi
        gt = tl.load(dy_ptr + k[None, :] * stride_dy + (r * BR + offs_r)[:, None], mask=in_k[None, :], other=0.0)
        xt = tl.load(x_ptr + k[:, None] * stride_x + (c * BC + offs_c)[None, :], mask=in_k[:, None], other=0.0)
        acc += tl.dot(gt, xt, input_precision=PRECISION)
    return acc


@triton.autotune(configs=sddmm_configs(), key=["M", "BR", "BC"])
@triton.jit
def _grad_values(dy_ptr, x_ptr, rows_ptr, cols_ptr, dv_ptr, M, rows_per_part, stride_dy, stride_x, nnz,
                 BR: tl.constexpr, BC: tl.constexpr, PRECISION: tl.constexpr, BLOCK_K: tl.constexpr):
    s = tl.program_id(0)
    part = tl.program_id(1)
    r = tl.cast(tl.load(rows_ptr + s), tl.int64)
    c = tl.cast(tl.load(cols_ptr + s), tl.int64)
    lo = part * rows_per_part
    hi = tl.minimum(lo + rows_per_part, M)
    acc = sddmm_block(dy_ptr, x_ptr, r, c, lo, hi, stride_dy, stride_x, BR, BC, PRECISION, BLOCK_K)
    store_part(dv_ptr, part, s, nnz, acc, BR, BC)


# ---- launchers (plain tensors in, plain tensors out) ------------------------------------------


def forward(x2d, values, cols, row_ptr, bias, out_features: int, precision: str = "tf32", out=None):
    """``y[M, R] = x2d[M, C] @ W^T (+ bias)``, written into ``out`` (``[M, R]``, unit column
    stride) when given."""
    M = x2d.shape[0]
    _, BR, BC = values.shape
    y = x2d.new_empty((M, out_features)) if out is None else out
    n = out_features // BR
    torch.library.wrap_triton(_forward)[tile_grid(M, n)](
        x2d, values, cols, row_ptr, bias if bias is not None else values, y, M, x2d.stride(0), y.stride(0), n,
        HAS_BIAS=bias is not None, BR=BR, BC=BC, PRECISION=input_precision(x2d.dtype, precision))
    return y


def grad_input(dy2d, values, rows, col_ptr, col_perm, in_features: int, precision: str = "tf32"):
    """``dX[M, C] = dY[M, R] @ W``."""
    M = dy2d.shape[0]
    _, BR, BC = values.shape
    dx = dy2d.new_empty((M, in_features))
    n = in_features // BC
    torch.library.wrap_triton(_grad_input)[tile_grid(M, n)](
        dy2d, values, rows, col_ptr, col_perm, dx, M, dy2d.stride(0), dx.stride(0), n,
        BR=BR, BC=BC, PRECISION=input_precision(dy2d.dtype, precision))
    return dx


def grad_values(dy2d, x2d, values, rows, cols, precision: str = "tf32", parts: int | None = None):
    """``dvalues[s] = dY[:, rows[s]]^T @ X[:, cols[s]]`` for every active block ``s``, the rows
    in ``parts`` ranges summed in fp32 (default: ``split_parts``; 1 in the interpreter)."""
    M = dy2d.shape[0]
    nnz, BR, BC = values.shape
    if parts is None:
        parts = 1 if interpreting() else split_parts(M, nnz)
    rows_per_part = triton.cdiv(M, parts)
    out = values.new_empty((parts, nnz, BR, BC), dtype=values.dtype if parts == 1 else torch.float32)
    if nnz:
        torch.library.wrap_triton(_grad_values)[(nnz, parts)](
            dy2d, x2d, rows, cols, out, M, rows_per_part, dy2d.stride(0), x2d.stride(0), nnz,
            BR=BR, BC=BC, PRECISION=input_precision(dy2d.dtype, precision))
    return out[0] if parts == 1 else out.sum(0).to(values.dtype)
