"""``bsr_conv2d``: 2-D convolution with a block-sparse weight, on every backend.

The weight's 2-D view is ``W.permute(0, 2, 3, 1).reshape(out, kh*kw*in)`` (taps outer, input
channels inner), so a block is one tap's tile of ``br`` output by ``bc`` input channels and the
kernels read contiguous NHWC channels (implicit GEMM, no im2col). The operators
``suptickets::bsr_conv2d`` (C++, ``csrc/cpu/bsr_conv2d.cpp``) and
``suptickets::triton_bsr_conv2d`` (Triton, ``suptickets_kernels/bsr_conv2d.py``, defined here)
return ``channels_last`` tensors (and ``dX`` in the memory format of ``x``, as torch's
convolutions do) and share the fake implementation and autograd formula below
(``ops/product.py``), with the contract of ``bsr_linear``.
"""
from __future__ import annotations

import torch
from torch._prims_common import suggest_memory_format

from . import _extension, _triton, backend, cost, dense_path, precision, product, reference
from .geometry import check_kernel_fits, conv_geometry, conv_output_shape


def bsr_conv2d(
    x: torch.Tensor,
    values: torch.Tensor,
    layout,
    bias: torch.Tensor | None = None,
    *,
    kernel_size,
    stride=1,
    padding=0,
    dilation=1,
) -> torch.Tensor:
    """``conv2d`` of NCHW ``x[B, in, H, W]`` (any memory format) with the block-sparse weight
    ``(values, layout)``.

    ``layout.shape == (out, kh*kw*in)``; ``block_size[1]`` must divide ``in`` (a block never
    straddles two taps). Returns a new ``[B, out, Ho, Wo]`` tensor (``channels_last`` from the
    kernels). Differentiable in ``x``, ``values`` and ``bias``. In a ``torch.autocast`` region
    the three are cast to the region's dtype first (``ops/precision.py``).
    """
    x, values, bias = precision.product_operands(x, values, bias)
    backend.check_operands("bsr_conv2d", x, values, bias)
    kernel, stride, padding, dilation = conv_geometry(kernel_size, stride, padding, dilation, "bsr_conv2d")
    if x.dim() != 4:
        raise ValueError(f"bsr_conv2d: input must be 4-D [B, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[1] * kernel[0] * kernel[1] != layout.shape[1]:
        raise ValueError(f"bsr_conv2d: input has {x.shape[1]} channels, the weight expects "
                         f"{layout.shape[1] // (kernel[0] * kernel[1])}")
    if x.shape[1] % layout.block_size[1]:
        raise ValueError(f"bsr_conv2d: block_size[1]={layout.block_size[1]} must divide the {x.shape[1]} input "
                         "channels (a block never straddles two taps)")
    check_kernel_fits(x.shape[2:], kernel, padding, dilation, "bsr_conv2d")
    where = f"{tuple(layout.shape)} weight"
    work = cost.conv_work(x, layout, values, conv_output_shape(x.shape[2:], kernel, stride, padding, dilation))
    choice = backend.choose("bsr_conv2d", x, values, block_size=layout.block_size, where=where, work=work)
    with precision.without_autocast(x.device.type):
        return _RUN[choice](x, values, layout, bias, (kernel, stride, padding, dilation))


def bsr_conv2d_weight_grads(x: torch.Tensor, grad_out: torch.Tensor, values: torch.Tensor, layout,
                            with_bias: bool = True, *, kernel_size, stride=1, padding=0,
                            dilation=1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(dvalues, dbias)`` of ``bsr_conv2d`` for the NCHW input ``x`` and output gradient
    ``grad_out`` (same dtype), without ``dX`` (see ``bsr_linear_weight_grads``)."""
    geometry = conv_geometry(kernel_size, stride, padding, dilation, "bsr_conv2d_weight_grads")
    if x.dim() != 4 or grad_out.dim() != 4 or x.dtype != grad_out.dtype:
        raise ValueError("bsr_conv2d_weight_grads: x and grad_out must be 4-D NCHW tensors of one dtype")
    x, grad_out = x.detach(), grad_out.detach()
    v = values.to(x.dtype)
    work = cost.conv_work(x, layout, v, tuple(grad_out.shape[2:]))
    choice = backend.choose("bsr_conv2d", x, v, block_size=layout.block_size, work=work)
    return _GRADS[choice](x, grad_out, values, layout, with_bias, geometry)


def _fake(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_channels, kernel_size, stride, padding,
          dilation):
    torch._check(x.dim() == 4, lambda: "input must be 4-D")
    torch._check(x.dtype == values.dtype, lambda: "input and values must have the same dtype")
    size = conv_output_shape(x.shape[2:], kernel_size, stride, padding, dilation)
    return torch.empty((x.shape[0], out_channels, *size), dtype=x.dtype, device=x.device,
                       memory_format=torch.channels_last)


def _backward_fake(grad, x, values, rows, cols, row_ptr, col_ptr, col_perm, kernel_size, stride, padding, dilation,
                   need_input, need_values, need_bias):
    dx = (torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=suggest_memory_format(x))
          if need_input else values.new_empty((0,)))
    return (dx, values.new_empty(values.shape) if need_values else values.new_empty((0,)),
            values.new_empty((grad.shape[1],)) if need_bias else values.new_empty((0,)))


def _cpu(x, values, layout, bias, geometry):
    return torch.ops.suptickets.bsr_conv2d.default(x, values, *product.layout_args(layout), bias, layout.shape[0],
                                                   *(list(g) for g in geometry))


def _triton_run(x, values, layout, bias, geometry):
    return torch.ops.suptickets.triton_bsr_conv2d(x, values, *product.layout_args(layout), bias, layout.shape[0],
                                                  *(list(g) for g in geometry), _triton.fp32_precision())


def _reference(x, values, layout, bias, geometry):
    kernel, stride, padding, dilation = geometry
    return reference.bsr_conv2d(x, values, layout, bias, kernel_size=kernel, stride=stride, padding=padding,
                                dilation=dilation)


_RUN = {"cpu": _cpu, "triton": _triton_run, "dense": dense_path.bsr_conv2d, "reference": _reference}
_GRADS = {
    "cpu": lambda x, g, v, layout, with_bias, geometry: product.weight_grads(
        torch.ops.suptickets.bsr_conv2d_backward, g, x, v, layout, tuple(list(p) for p in geometry), with_bias),
    "triton": lambda x, g, v, layout, with_bias, geometry: product.weight_grads(
        torch.ops.suptickets.triton_bsr_conv2d_backward, g, x, v, layout, tuple(list(p) for p in geometry), with_bias,
        (_triton.fp32_precision(),)),
    "dense": lambda x, g, v, layout, with_bias, geometry: product.reference_weight_grads(
        lambda vv, b: dense_path.bsr_conv2d(x, vv, layout, b, geometry), g, v, g.shape[1] if with_bias else None),
    "reference": lambda x, g, v, layout, with_bias, geometry: product.reference_weight_grads(
        lambda vv, b: _reference(x, vv, layout, b, geometry), g, v, g.shape[1] if with_bias else None),
}

if _extension.available:
    product.register("suptickets::bsr_conv2d", torch.ops.suptickets.bsr_conv2d_backward, _fake, _backward_fake,
                     n_geometry=4, autograd=False)  # its autograd: csrc/product_autograd.cpp
    precision.register_product("suptickets::bsr_conv2d")

@_triton.on_load
def _register_triton(kernels) -> None:
    _K = kernels.bsr_conv2d

    def _nhwc(t: torch.Tensor) -> torch.Tensor:
        return t.permute(0, 2, 3, 1).contiguous()

    @_triton.define("suptickets::triton_bsr_conv2d")
    def _triton_forward(x: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                        row_ptr: torch.Tensor, col_ptr: torch.Tensor, col_perm: torch.Tensor,
                        bias: torch.Tensor | None, out_channels: int, kernel_size: list[int], stride: list[int],
                        padding: list[int], dilation: list[int], precision: str) -> torch.Tensor:
        # an NCHW channels_last result (not a view, so in-place ops may follow), written as NHWC
        y = _fake(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_channels, kernel_size, stride,
                  padding, dilation)
        _K.forward(_nhwc(x), values.contiguous(), cols, row_ptr, bias, kernel_size, stride, padding, dilation,
                   out=y.permute(0, 2, 3, 1), precision=precision)
        return y

    @_triton.define("suptickets::triton_bsr_conv2d_backward")
    def _triton_backward(grad: torch.Tensor, x: torch.Tensor, values: torch.Tensor, rows: torch.Tensor,
                         cols: torch.Tensor, row_ptr: torch.Tensor, col_ptr: torch.Tensor, col_perm: torch.Tensor,
                         kernel_size: list[int], stride: list[int], padding: list[int], dilation: list[int],
                         need_input: bool, need_values: bool, need_bias: bool,
                         precision: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = _nhwc(grad)
        values = values.contiguous()
        dx, dv, db = (values.new_empty((0,)) for _ in range(3))  # distinct: outputs may not alias
        geometry = (kernel_size, stride, padding, dilation)
        if need_input:
            shape = (x.shape[0], x.shape[2], x.shape[3], x.shape[1])
            dx = _K.grad_input(g, values, rows, col_ptr, col_perm, shape, *geometry, precision).permute(0, 3, 1, 2)
            dx = dx.contiguous(memory_format=suggest_memory_format(x))  # x's format, as the fake says
        if need_values:
            dv = _K.grad_values(g, _nhwc(x), values, rows, cols, *geometry, precision)
        if need_bias:
            db = grad.sum((0, 2, 3)).to(values.dtype)
        return dx, dv, db

    product.register("suptickets::triton_bsr_conv2d", torch.ops.suptickets.triton_bsr_conv2d_backward, _fake,
                     _backward_fake, n_geometry=4)
    precision.register_product("suptickets::triton_bsr_conv2d", ("cuda",))
