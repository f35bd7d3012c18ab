"""``bsr_conv2d``: 2-D convolution with a block-sparse weight, and its registration.

The weight's 2-D view is ``W.permute(0, 2, 3, 1).reshape(out, kh*kw*in)`` (taps outer,
input channels inner), so a block is one tap's tile of ``br`` output by ``bc`` input
channels and the kernels read contiguous NHWC channels (implicit GEMM, no im2col).
The C++ forward returns a ``channels_last`` tensor (its natural layout); the backward
follows the same contract as ``bsr_linear``.
"""
from __future__ import annotations

import torch

from . import _extension, _triton, backend, reference, triton_conv  # noqa: F401  (registers the Triton op)


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"bsr_conv2d: {name} must be an int or a pair, got {v}")
    return v


def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


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
    """``conv2d`` of NCHW ``x[B, in, H, W]`` with the block-sparse weight ``(values, layout)``.

    ``layout.shape == (out, kh*kw*in)``; ``block_size[1]`` must divide ``in`` (a block
    never straddles two taps). Returns ``[B, out, Ho, Wo]`` (``channels_last`` from the
    C++ kernels). Differentiable in ``x``, ``values`` and ``bias``.
    """
    backend.check_operands("bsr_conv2d", x, values, bias)
    kh, kw = _pair(kernel_size, "kernel_size")
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if x.dim() != 4:
        raise ValueError(f"bsr_conv2d: input must be 4-D [B, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[1] * kh * kw != layout.shape[1]:
        raise ValueError(
            f"bsr_conv2d: input has {x.shape[1]} channels, the weight expects {layout.shape[1] // (kh * kw)}"
        )
    padded = (x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1])
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    if padded[0] < span[0] or padded[1] < span[1]:
        raise ValueError(f"bsr_conv2d: the padded input {padded} is smaller than the dilated kernel {span}")
    choice = backend.choose(x, values, layout.block_size, triton=True)
    if choice == "reference":
        return reference.bsr_conv2d(
            x, values, layout, bias, kernel_size=(kh, kw), stride=stride, padding=padding, dilation=dilation
        )
    if choice == "triton":
        if x.shape[1] % layout.block_size[1]:
            raise ValueError(f"bsr_conv2d: block_size[1]={layout.block_size[1]} must divide the {x.shape[1]} input "
                             "channels (a block never straddles two taps)")
        return torch.ops.suptickets.triton_bsr_conv2d(
            x, values, layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm, bias,
            layout.shape[0], [kh, kw], list(stride), list(padding), list(dilation), _triton.fp32_precision())
    return torch.ops.suptickets.bsr_conv2d.default(
        x, values, layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm, bias,
        layout.shape[0], [kh, kw], list(stride), list(padding), list(dilation),
    )


if _extension.available:

    @torch.library.register_fake("suptickets::bsr_conv2d")
    def _bsr_conv2d_fake(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_channels, kernel_size,
                         stride, padding, dilation):
        torch._check(x.dim() == 4, lambda: "input must be 4-D")
        torch._check(x.dtype == values.dtype, lambda: "input and values must have the same dtype")
        ho = conv_output_size(x.shape[2], kernel_size[0], stride[0], padding[0], dilation[0])
        wo = conv_output_size(x.shape[3], kernel_size[1], stride[1], padding[1], dilation[1])
        return torch.empty(
            (x.shape[0], out_channels, ho, wo), dtype=x.dtype, device=x.device, memory_format=torch.channels_last
        )

    @torch.library.register_fake("suptickets::bsr_conv2d_backward")
    def _bsr_conv2d_backward_fake(grad, x, values, rows, cols, row_ptr, col_ptr, col_perm, kernel_size, stride,
                                  padding, dilation, need_input, need_values, need_bias):
        if need_input:
            dx = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        else:
            dx = x.new_empty((0,))
        dv = values.new_empty(values.shape) if need_values else values.new_empty((0,))
        db = values.new_empty((grad.shape[1],)) if need_bias else values.new_empty((0,))
        return dx, dv, db

    def _setup_context(ctx, inputs, output):
        x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, _, kernel_size, stride, padding, dilation = inputs
        ctx.save_for_backward(x, values, rows, cols, row_ptr, col_ptr, col_perm)
        ctx.geometry = (kernel_size, stride, padding, dilation)

    def _backward(ctx, grad):
        x, values, rows, cols, row_ptr, col_ptr, col_perm = ctx.saved_tensors
        need_x, need_v, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[7]
        dx, dv, db = torch.ops.suptickets.bsr_conv2d_backward.default(
            grad, x, values, rows, cols, row_ptr, col_ptr, col_perm, *ctx.geometry, need_x, need_v, need_b
        )
        grads = [dx if need_x else None, dv if need_v else None, None, None, None, None, None, db if need_b else None]
        return tuple(grads + [None] * 5)

    torch.library.register_autograd("suptickets::bsr_conv2d", _backward, setup_context=_setup_context)
