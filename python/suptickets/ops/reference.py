"""Plain-PyTorch reference of every suptickets op: the test oracle and the last fallback.

Each function takes the same arguments as its public op in ``suptickets.ops`` and is
differentiable by ordinary autograd (float64 ``gradcheck`` runs on it). It builds the
dense weight, so it is exactly as slow as dense training; correctness is its only job.

``layout`` is any object with ``shape`` (R, C), ``block_size`` (br, bc) and int32
``rows``/``cols`` tensors of the active blocks (``suptickets.BlockLayout``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dense_weight(values: torch.Tensor, layout) -> torch.Tensor:
    """The ``[R, C]`` matrix whose block ``(rows[s], cols[s])`` is ``values[s]``, zeros elsewhere."""
    R, C = layout.shape
    br, bc = layout.block_size
    grid = values.new_zeros(R // br, C // bc, br, bc)
    grid = grid.index_put((layout.rows.long(), layout.cols.long()), values)
    return grid.permute(0, 2, 1, 3).reshape(R, C)


def conv_weight(values: torch.Tensor, layout, kernel_size) -> torch.Tensor:
    """The 4-D conv weight ``[out, in, kh, kw]`` whose 2-D view ``W.permute(0, 2, 3, 1).reshape(out, kh*kw*in)``
    is :func:`dense_weight`."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    R, C = layout.shape
    return dense_weight(values, layout).view(R, kh, kw, C // (kh * kw)).permute(0, 3, 1, 2)


def block_values(weight2d: torch.Tensor, layout) -> torch.Tensor:
    """Inverse of :func:`dense_weight`: the ``[nnz, br, bc]`` blocks of a dense ``[R, C]`` matrix."""
    R, C = layout.shape
    br, bc = layout.block_size
    grid = weight2d.reshape(R // br, br, C // bc, bc).permute(0, 2, 1, 3)
    return grid[layout.rows.long(), layout.cols.long()]


def bsr_linear(x, values, layout, bias=None):
    """``x @ W.T + bias`` for ``x[..., C]``; returns ``[..., R]``."""
    return F.linear(x, dense_weight(values, layout), bias)


def bsr_conv2d(x, values, layout, bias=None, *, kernel_size, stride=1, padding=0, dilation=1):
    """``conv2d(x, W, bias)`` for NCHW ``x`` with the block-sparse weight of ``layout``."""
    return F.conv2d(x, conv_weight(values, layout, kernel_size), bias, stride, padding, dilation)
