"""Triton kernels of the block scores used by topology updates:

- ``block_scores``: the L1 or L2 norm of each active block ``values[s]`` (one program per block);
- the fused gradient score: the norm of every block of the dense weight gradient
  ``dW = dY^T X`` (linear) or ``dY^T im2col(X)`` (conv, NHWC), one program per grid block,
  formed in registers by the SDDMM block of ``bsr_linear``/``bsr_conv2d`` and reduced at once:
  no ``[R, C]`` tensor exists. Scores are fp32.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import bsr_conv2d, bsr_linear
from .config import input_precision, sddmm_configs

KINDS = {"l1": 1, "l2": 2}


@triton.jit
def block_norm(block, KIND: tl.constexpr):
    """L1 (KIND 1) or L2 (KIND 2) norm of an fp32 block."""
    if KIND == 1:
        return tl.sum(tl.sum(tl.abs(block), axis=1), axis=0)
    return tl.sqrt(tl.sum(tl.sum(block * block, axis=1), axis=0))


@triton.jit
def _block_scores(v_ptr, out_ptr, BR: tl.constexpr, BC: tl.constexpr, KIND: tl.constexpr):
    s = tl.cast(tl.program_id(0), tl.int64)
    offs_r = tl.arange(0, BR)
    offs_c = tl.arange(0, BC)
    block = tl.load(v_ptr + s * (BR * BC) + offs_r[:, None] * BC + offs_c[None, :]).to(tl.float32)
    tl.store(out_ptr + s, block_norm(block, KIND))


@triton.autotune(configs=sddmm_configs(), key=["M", "BR", "BC"])
@triton.jit
def _linear_grad_scores(dy_ptr, x_ptr, out_ptr, M, stride_dy, stride_x, GRID_C, BR: tl.constexpr, BC: tl.constexpr,
                        KIND: tl.constexpr, PRECISION: tl.constexpr, BLOCK_K: tl.constexpr):
    r = tl.cast(tl.program_id(0), tl.int64)
    c = tl.cast(tl.program_id(1), tl.int64)
    acc = bsr_linear.sddmm_block(dy_ptr, x_ptr, r, c, 0, M, stride_dy, stride_x, BR, BC, PRECISION, BLOCK_K)
    tl.store(out_ptr + r * GRID_C + c, block_norm(acc, KIND))


@triton.autotune(configs=sddmm_configs(), key=["P", "BR", "BC"])
@triton.jit
def _conv_grad_scores(dy_ptr, x_ptr, out_ptr, P, H, W, CIN, HO, WO, COUT, KW, SH, SW, PH, PW, DH, DW, GRID_C,
                      BR: tl.constexpr, BC: tl.constexpr, KIND: tl.constexpr, PRECISION: tl.constexpr,
                      BLOCK_K: tl.constexpr):
    r = tl.cast(tl.program_id(0), tl.int64)
    c = tl.program_id(1)
    acc = bsr_conv2d.sddmm_block(dy_ptr, x_ptr, r, c, 0, P, H, W, CIN, HO, WO, COUT, KW, SH, SW, PH, PW, DH, DW,
                               BR, BC, PRECISION, BLOCK_K)
    tl.store(out_ptr + r * GRID_C + c, block_norm(acc, KIND))


# ---- launchers -------------------------------------------------------------------------------------


def block_scores(values: torch.Tensor, kind: str) -> torch.Tensor:
    """``[nnz]`` fp32 norms of ``values[nnz, BR, BC]`` (contiguous)."""
    nnz, BR, BC = values.shape
    out = torch.empty(nnz, dtype=torch.float32, device=values.device)
    if nnz:
        torch.library.wrap_triton(_block_scores)[(nnz,)](values, out, BR=BR, BC=BC, KIND=KINDS[kind])
    return out


def linear_grad_scores(x2d, dy2d, block_size, kind: str, precision: str = "tf32") -> torch.Tensor:
    """``[R/BR, C/BC]`` fp32 norms of the blocks of ``dY^T X`` (``x2d[M, C]``, ``dy2d[M, R]``)."""
    BR, BC = block_size
    gr, gc = dy2d.shape[1] // BR, x2d.shape[1] // BC
    out = torch.empty((gr, gc), dtype=torch.float32, device=x2d.device)
    torch.library.wrap_triton(_linear_grad_scores)[(gr, gc)](
        dy2d, x2d, out, x2d.shape[0], dy2d.stride(0), x2d.stride(0), gc, BR=BR, BC=BC, KIND=KINDS[kind],
        PRECISION=input_precision(x2d.dtype, precision))
    return out


def conv2d_grad_scores(x_nhwc, dy_nhwc, block_size, kernel_size, stride, padding, dilation, kind: str,
                       precision: str = "tf32") -> torch.Tensor:
    """``[Cout/BR, kh*kw*Cin/BC]`` fp32 norms of the blocks of the conv's ``dW`` (2-D view)."""
    BR, BC = block_size
    B, H, W, CIN = x_nhwc.shape
    _, HO, WO, COUT = dy_nhwc.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    gr, gc = COUT // BR, kh * kw * CIN // BC
    out = torch.empty((gr, gc), dtype=torch.float32, device=x_nhwc.device)
    torch.library.wrap_triton(_conv_grad_scores)[(gr, gc)](
        dy_nhwc, x_nhwc, out, B * HO * WO, H, W, CIN, HO, WO, COUT, kw, sh, sw, ph, pw, dh, dw, gc,
        BR=BR, BC=BC, KIND=KINDS[kind], PRECISION=input_precision(x_nhwc.dtype, precision))
    return out
