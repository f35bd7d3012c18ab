"""Triton kernels of the block-sparse convolution as implicit GEMM over NHWC activations (no
im2col is formed), and its two backward products.

The weight's 2-D view is ``[Cout, kh*kw*Cin]`` (taps outer, input channels inner), tiled into
``(BR, BC)`` blocks with ``BC`` dividing ``Cin``: block-column ``c`` is tap ``c // (Cin/BC)``
and channels ``(c % (Cin/BC)) * BC`` onwards. Pixels are the flattened ``B*Ho*Wo`` (output) or
``B*H*W`` (input) positions of row-contiguous NHWC tensors.

- forward: one program per (tile of output pixels, block-row ``r``): for each active block of
  the row, the tile's input pixels at that tap (zeros outside the image) times the block;
- ``dX``: one program per (tile of input pixels, channel block ``q``) sums over the taps the
  block-column ``tap * (Cin/BC) + q``'s blocks times the output gradient at the pixels that tap
  maps to (any stride: positions that no output pixel maps to are masked); no atomics;
- ``dvalues``: one program per active block and part of the pixels (SDDMM over gathered rows).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .config import input_precision, interpreting, matmul_configs, sddmm_configs
from .tiles import row_tile, split_parts, store_part, tile_grid


@triton.jit
def _pixel(p, HO, WO):
    n = p // (HO * WO)
    rem = p % (HO * WO)
    return n, rem // WO, rem % WO


@triton.autotune(configs=matmul_configs(), key=["P", "BR", "BC"])
@triton.jit
def _forward(x_ptr, v_ptr, cols_ptr, row_ptr_ptr, bias_ptr, y_ptr, P, H, W, CIN, HO, WO, COUT,
             KW, SH, SW, PH, PW, DH, DW, GRID_N,
             HAS_BIAS: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr, PRECISION: tl.constexpr,
             BLOCK_M: tl.constexpr):
    r, p, in_p = row_tile(GRID_N, P, BLOCK_M)  # output pixels
    n, ho, wo = _pixel(p, HO, WO)
    offs_r = tl.arange(0, BR)
    offs_c = tl.arange(0, BC)
    groups = CIN // BC
    start = tl.load(row_ptr_ptr + r)
    end = tl.load(row_ptr_ptr + r + 1)
    acc = tl.zeros((BLOCK_M, BR), dtype=tl.float32)
    for s in range(start, end):
        c = tl.load(cols_ptr + s)
        tap = c // groups
        ch = (c % groups) * BC
        hi = ho * SH - PH + (tap // KW) * DH
        wi = wo * SW - PW + (tap % KW) * DW
        ok = in_p & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
        base = ((n * H + hi) * W + wi) * CIN + ch
        xt = tl.load(x_ptr + base[:, None] + offs_c[None, :], mask=ok[:, None], other=0.0)
        wt = tl.load(v_ptr + tl.cast(s, tl.int64) * (BR * BC) + offs_r[None, :] * BC + offs_c[:, None])
        acc += tl.dot(xt, wt, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + r * BR + offs_r).to(tl.float32)[None, :]
    tl.store(y_ptr + p[:, None] * COUT + (r * BR + offs_r)[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=in_p[:, None])


@triton.autotune(configs=matmul_configs(), key=["P", "BR", "BC"])
@triton.jit
def _grad_input(dy_ptr, v_ptr, rows_ptr, col_ptr_ptr, col_perm_ptr, dx_ptr, P, H, W, CIN, HO, WO, COUT,
                KH, KW, SH, SW, PH, PW, DH, DW, GRID_N,
                BR: tl.constexpr, BC: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr):
    q, p, in_p = row_tile(GRID_N, P, BLOCK_M)  # input pixels
    n, h, w = _pixel(p, H, W)
    offs_r = tl.arange(0, BR)
    offs_c = tl.arange(0, BC)
    groups = CIN // BC
    acc = tl.zeros((BLOCK_M, BC), dtype=tl.float32)
    for tap in range(0, KH * KW):
        hnum = h + PH - (tap // KW) * DH
        wnum = w + PW - (tap % KW) * DW
        ho = hnum // SH
        wo = wnum // SW
        ok = in_p & (hnum >= 0) & (wnum >= 0) & (hnum % SH == 0) & (wnum % SW == 0) & (ho < HO) & (wo < WO)
        base = ((n * HO + ho) * WO + wo) * COUT
        c = tap * groups + q
        start = tl.load(col_ptr_ptr + c)
        end = tl.load(col_ptr_ptr + c + 1)
        for j in range(start, end):
            s = tl.cast(tl.load(col_perm_ptr + j), tl.int64)
            r = tl.cast(tl.load(rows_ptr + s), tl.int64)
            gt = tl.load(dy_ptr + base[:, None] + (r * BR + offs_r)[None, :], mask=ok[:, None], other=0.0)
            wt = tl.load(v_ptr + s * (BR * BC) + offs_r[:, None] * BC + offs_c[None, :])
            acc += tl.dot(gt, wt, input_precision=PRECISION)
    tl.store(dx_ptr + p[:, None] * CIN + (q * BC + offs_c)[None, :], acc.to(dx_ptr.dtype.element_ty),
             mask=in_p[:, None])


@triton.jit
def sddmm_block(dy_ptr, x_ptr, r, c, lo, hi, H, W, CIN, HO, WO, COUT, KW, SH, SW, PH, PW, DH, DW,
                BR: tl.constexpr, BC: tl.constexpr, PRECISION: tl.constexpr, BLOCK_K: tl.constexpr):
    """fp32 block ``(r, c)`` of ``dW = dY^T im2col(X)`` over output pixels ``lo:hi``."""
    groups = CIN // BC
    tap = c // groups
    ch = (c % groups) * BC
    offs_r = tl.arange(0, BR)
    offs_c = tl.arange(0, BC)
    acc = tl.zeros((BR, BC), dtype=tl.float32)
    for k0 in range(lo, hi, BLOCK_K):
        p = tl.cast(k0 + tl.arange(0, BLOCK_K), tl.int64)
        in_p = p < hi
        n, ho, wo = _pixel(p, HO, WO)
        hi_ = ho * SH - PH + (tap // KW) * DH
        wi = wo * SW - PW + (tap % KW) * DW
        ok = in_p & (hi_ >= 0) & (hi_ < H) & (wi >= 0) & (wi < W)
        gt = tl.load(dy_ptr + p[None, :] * COUT + (r * BR + offs_r)[:, None], mask=in_p[None, :], other=0.0)
        base = ((n * H + hi_) * W + wi) * CIN + ch
        xt = tl.load(x_ptr + base[:, None] + offs_c[None, :], mask=ok[:, None], other=0.0)
        acc += tl.dot(gt, xt, input_precision=PRECISION)
    return acc


@triton.autotune(configs=sddmm_configs(), key=["P", "BR", "BC"])
@triton.jit
def _grad_values(dy_ptr, x_ptr, rows_ptr, cols_ptr, dv_ptr, P, pixels_per_part, nnz, H, W, CIN, HO, WO, COUT,
                 KW, SH, SW, PH, PW, DH, DW,
                 BR: tl.constexpr, BC: tl.constexpr, PRECISION: tl.constexpr, BLOCK_K: tl.constexpr):
    s = tl.program_id(0)
    part = tl.program_id(1)
    r = tl.cast(tl.load(rows_ptr + s), tl.int64)
    c = tl.load(cols_ptr + s)
    lo = part * pixels_per_part
    hi = tl.minimum(lo + pixels_per_part, P)
    acc = sddmm_block(dy_ptr, x_ptr, r, c, lo, hi, H, W, CIN, HO, WO, COUT, KW, SH, SW, PH, PW, DH, DW,
                      BR, BC, PRECISION, BLOCK_K)
    store_part(dv_ptr, part, s, nnz, acc, BR, BC)


# ---- launchers: NHWC (row-contiguous) tensors in and out ----------------------------------------


def _geometry(kernel_size, stride, padding, dilation):
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    return kh, kw, sh, sw, ph, pw, dh, dw


def forward(x_nhwc, values, cols, row_ptr, bias, kernel_size, stride, padding, dilation, out,
            precision: str = "tf32"):
    """Writes ``y[B, Ho, Wo, Cout]`` of ``x_nhwc[B, H, W, Cin]`` into ``out`` (an NHWC tensor or
    view of that shape, unit channel stride, its size given by the caller) and returns it."""
    B, H, W, CIN = x_nhwc.shape
    _, HO, WO, out_channels = out.shape
    kh, kw, sh, sw, ph, pw, dh, dw = _geometry(kernel_size, stride, padding, dilation)
    _, BR, BC = values.shape
    y = out
    n = out_channels // BR
    torch.library.wrap_triton(_forward)[tile_grid(B * HO * WO, n)](
        x_nhwc, values, cols, row_ptr, bias if bias is not None else values, y, B * HO * WO, H, W, CIN, HO, WO,
        out_channels,
        kw, sh, sw, ph, pw, dh, dw, n, HAS_BIAS=bias is not None, BR=BR, BC=BC,
        PRECISION=input_precision(x_nhwc.dtype, precision))
    return y


def grad_input(dy_nhwc, values, rows, col_ptr, col_perm, input_shape, kernel_size, stride, padding, dilation,
               precision: str = "tf32"):
    """``dX[B, H, W, Cin]`` (NHWC) of the output gradient ``dy_nhwc[B, Ho, Wo, Cout]``."""
    B, H, W, CIN = input_shape
    _, HO, WO, COUT = dy_nhwc.shape
    kh, kw, sh, sw, ph, pw, dh, dw = _geometry(kernel_size, stride, padding, dilation)
    _, BR, BC = values.shape
    dx = dy_nhwc.new_empty((B, H, W, CIN))
    n = CIN // BC
    torch.library.wrap_triton(_grad_input)[tile_grid(B * H * W, n)](
        dy_nhwc, values, rows, col_ptr, col_perm, dx, B * H * W, H, W, CIN, HO, WO, COUT,
        kh, kw, sh, sw, ph, pw, dh, dw, n,
        BR=BR, BC=BC, PRECISION=input_precision(dy_nhwc.dtype, precision))
    return dx


def grad_values(dy_nhwc, x_nhwc, values, rows, cols, kernel_size, stride, padding, dilation,
                precision: str = "tf32", parts: int | None = None):
    """``dvalues[s]``: the block of ``dW = dY^T im2col(X)`` at each active slot ``s``."""
    B, H, W, CIN = x_nhwc.shape
    _, HO, WO, COUT = dy_nhwc.shape
    kh, kw, sh, sw, ph, pw, dh, dw = _geometry(kernel_size, stride, padding, dilation)
    nnz, BR, BC = values.shape
    P = B * HO * WO
    if parts is None:
        parts = 1 if interpreting() else split_parts(P, nnz)
    out = values.new_empty((parts, nnz, BR, BC), dtype=values.dtype if parts == 1 else torch.float32)
    if nnz:
        torch.library.wrap_triton(_grad_values)[(nnz, parts)](
            dy_nhwc, x_nhwc, rows, cols, out, P, triton.cdiv(P, parts), nnz, H, W, CIN, HO, WO, COUT,
            kw, sh, sw, ph, pw, dh, dw, BR=BR, BC=BC, PRECISION=input_precision(dy_nhwc.dtype, precision))
    return out[0] if parts == 1 else out.sum(0).to(values.dtype)
