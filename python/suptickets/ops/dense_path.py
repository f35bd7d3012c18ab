"""The dense execution of the block-sparse products: the active values scattered into the dense
weight, torch's dense op (MKL / oneDNN / cuBLAS / cuDNN), and in the backward the dense weight
gradient gathered at the active positions (the scatter's gradient: one gather, the dense gradient
freed at once). The layer keeps its sparse topology and values and everything the methods do with
them; only the arithmetic is dense. ``backend.choose`` takes this path for a call when the cost
model (``ops/cost.py``) says it is faster than the sparse kernels, e.g. for small or nearly dense
layers, and for a dtype no kernel takes. Dense-sized by design (a dense weight exists while the
layer computes). Low-precision operands compute in float32 on the CPU."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def element_index(layout) -> torch.Tensor:
    """``[nnz * br * bc]`` int64: the flat position in ``[R, C]`` of every active weight, in the
    order of ``values.reshape(-1)`` (slot, row in block, column in block): O(active weights), far
    below the dense product it serves."""
    R, C = layout.shape
    br, bc = layout.block_size
    if br == bc == 1:
        return layout.rows.long() * C + layout.cols
    rows = layout.rows.long().view(-1, 1, 1) * br + torch.arange(br, device=layout.rows.device).view(1, -1, 1)
    cols = layout.cols.long().view(-1, 1, 1) * bc + torch.arange(bc, device=layout.cols.device).view(1, 1, -1)
    return (rows * C + cols).reshape(-1)


def dense_weight(values: torch.Tensor, layout) -> torch.Tensor:
    """The ``[R, C]`` weight of ``values`` (zeros elsewhere), differentiable: its gradient is the
    dense gradient gathered at the active positions."""
    R, C = layout.shape
    index = element_index(layout).to(values.device)
    return values.new_zeros(R * C).scatter(0, index, values.reshape(-1)).view(R, C)


def _float32_on_cpu(x, values, bias):
    """On the CPU, float16/bfloat16 operands widened to float32 (torch's low-precision dense CPU
    ops are slow without native instructions and accumulate coarsely); elsewhere unchanged."""
    if x.device.type != "cpu" or x.dtype not in (torch.float16, torch.bfloat16):
        return x, values, bias, None
    return x.float(), values.float(), None if bias is None else bias.float(), x.dtype


def bsr_linear(x, values, layout, bias):
    x, values, bias, low = _float32_on_cpu(x, values, bias)
    y = F.linear(x, dense_weight(values, layout), bias)
    return y if low is None else y.to(low)


def bsr_conv2d(x, values, layout, bias, geometry):
    kernel, stride, padding, dilation = geometry
    x, values, bias, low = _float32_on_cpu(x, values, bias)
    R, C = layout.shape
    weight = dense_weight(values, layout).view(R, kernel[0], kernel[1], C // (kernel[0] * kernel[1]))
    y = F.conv2d(x, weight.permute(0, 3, 1, 2), bias, stride, padding, dilation)
    return y if low is None else y.to(low)
