"""Block scores for topology updates: the magnitude of active blocks, and the fused gradient
score of every block of the grid, on every backend.

- ``block_scores(values, kind)``: ``[nnz]`` L1 or L2 norm of each active block.
- ``linear_grad_scores`` / ``conv2d_grad_scores``: ``[R/br, C/bc]`` norms of the blocks of the
  dense weight gradient ``dW = dY^T X`` (for a conv, of its 2-D view), computed from a step's
  ``X`` and ``dY``. The C++ kernel (``csrc/cpu/block_scores.cpp``) forms ``dW`` one slab of
  whole block-rows (at most 4 MB) and one kernel tap at a time and reduces each slab to block
  norms at once; the Triton kernel (``suptickets_kernels/block_scores.py``) reduces each block
  in registers: no ``[R, C]`` tensor exists at any time.

Scores are returned in the dtype of the inputs, and always in float32 for float16/bfloat16
inputs (``ops/precision.py``: topology scores compute in float32).
"""
from __future__ import annotations

import torch

from . import _extension, _triton, backend, precision, reference
from .geometry import conv_geometry, conv_output_shape, pair

KINDS = ("l1", "l2")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")


def block_scores(values: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """``[nnz]`` norms (``kind`` "l1" or "l2") of the blocks of ``values[nnz, br, bc]``; same dtype."""
    _check_kind(kind)
    if values.dim() != 3:
        raise ValueError(f"block_scores: values must be [nnz, br, bc], got shape {tuple(values.shape)}")
    (values,) = precision.in_float32(values.detach())
    choice = backend.choose("block_scores", values, block_size=values.shape[1:])
    return _RUN_BLOCK[choice](values, kind)


def _check_grad_operands(op, x, grad_out):
    if x.dtype != grad_out.dtype or x.device != grad_out.device:
        raise TypeError(f"{op}: x ({x.dtype}, {x.device}) and grad_out ({grad_out.dtype}, {grad_out.device}) "
                        "must have the same dtype and device")


def linear_grad_scores(x: torch.Tensor, grad_out: torch.Tensor, block_size, kind: str = "l1") -> torch.Tensor:
    """Block norms ``[R/br, C/bc]`` of ``dW = dY^T X`` for a linear layer: ``x[..., C]`` its
    input and ``grad_out[..., R]`` the gradient of its output (same leading dims)."""
    _check_kind(kind)
    x, grad_out = precision.in_float32(x, grad_out)
    _check_grad_operands("linear_grad_scores", x, grad_out)
    br, bc = pair(block_size, "block_size", "linear_grad_scores")
    C, R = x.shape[-1], grad_out.shape[-1]
    if x.shape[:-1] != grad_out.shape[:-1]:
        raise ValueError(f"linear_grad_scores: x {tuple(x.shape)} and grad_out {tuple(grad_out.shape)} "
                         "must have the same leading dimensions")
    if R % br or C % bc:
        raise ValueError(f"linear_grad_scores: block_size {(br, bc)} must divide (out={R}, in={C})")
    x, grad_out = x.detach(), grad_out.detach()
    choice = backend.choose("linear_grad_scores", x, grad_out, block_size=(br, bc))
    return _RUN_LINEAR[choice](x.reshape(-1, C), grad_out.reshape(-1, R), (br, bc), kind)


def conv2d_grad_scores(x: torch.Tensor, grad_out: torch.Tensor, block_size, *, kernel_size, stride=1, padding=0,
                       dilation=1, kind: str = "l1") -> torch.Tensor:
    """Block norms ``[out/br, kh*kw*in/bc]`` of the conv weight gradient's 2-D view, from the
    layer's NCHW input ``x[B, in, H, W]`` and output gradient ``grad_out[B, out, Ho, Wo]``
    (any memory format; channels_last avoids a copy)."""
    op = "conv2d_grad_scores"
    _check_kind(kind)
    x, grad_out = precision.in_float32(x, grad_out)
    _check_grad_operands(op, x, grad_out)
    br, bc = pair(block_size, "block_size", op)
    geometry = conv_geometry(kernel_size, stride, padding, dilation, op)
    if x.dim() != 4 or grad_out.dim() != 4:
        raise ValueError(f"{op}: x and grad_out must be 4-D NCHW tensors")
    expected = conv_output_shape(x.shape[2:], *geometry)
    if tuple(grad_out.shape[2:]) != expected:
        raise ValueError(f"{op}: grad_out's spatial size {tuple(grad_out.shape[2:])} does not match "
                         f"the convolution of a {tuple(x.shape[2:])} input, {expected}")
    if grad_out.shape[1] % br or x.shape[1] % bc:
        raise ValueError(f"{op}: block_size {(br, bc)} must divide "
                         f"(out_channels={grad_out.shape[1]}, in_channels={x.shape[1]})")
    x, grad_out = x.detach(), grad_out.detach()
    choice = backend.choose(op, x, grad_out, block_size=(br, bc))
    return _RUN_CONV[choice](x, grad_out, (br, bc), geometry, kind)


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1)


_RUN_BLOCK = {
    "cpu": lambda values, kind: torch.ops.suptickets.block_scores.default(values, kind),
    "triton": lambda values, kind: torch.ops.suptickets.triton_block_scores(values.contiguous(), kind).to(
        values.dtype),
    "reference": reference.block_scores,
}
# A linear layer's inputs are the pixels of a 1 x 1 image per row for the C++ kernel.
_RUN_LINEAR = {
    "cpu": lambda x, dy, block, kind: torch.ops.suptickets.grad_scores.default(
        x.reshape(-1, 1, 1, x.shape[-1]), dy.reshape(-1, 1, 1, dy.shape[-1]), block, (1, 1), (1, 1), (0, 0), (1, 1),
        kind),
    "triton": lambda x, dy, block, kind: torch.ops.suptickets.triton_linear_grad_scores(
        x.contiguous(), dy.contiguous(), block, kind, _triton.fp32_precision()).to(x.dtype),
    "reference": reference.linear_grad_scores,
}
_RUN_CONV = {
    "cpu": lambda x, dy, block, geometry, kind: torch.ops.suptickets.grad_scores.default(
        _nhwc(x), _nhwc(dy), block, *geometry, kind),
    "triton": lambda x, dy, block, geometry, kind: torch.ops.suptickets.triton_conv2d_grad_scores(
        _nhwc(x).contiguous(), _nhwc(dy).contiguous(), block, *geometry, kind, _triton.fp32_precision()).to(x.dtype),
    "reference": lambda x, dy, block, geometry, kind: reference.conv2d_grad_scores(
        x, dy, block, kernel_size=geometry[0], stride=geometry[1], padding=geometry[2], dilation=geometry[3],
        kind=kind),
}

if _extension.available:

    @torch.library.register_fake("suptickets::block_scores")
    def _block_scores_fake(values, kind):
        torch._check(values.dim() == 3, lambda: "values must be [nnz, br, bc]")
        return values.new_empty((values.shape[0],))

    precision.register_float32("suptickets::block_scores")
    precision.register_float32("suptickets::grad_scores")

    @torch.library.register_fake("suptickets::grad_scores")
    def _grad_scores_fake(x, grad_out, block_size, kernel_size, stride, padding, dilation, kind):
        torch._check(x.dim() == 4 and grad_out.dim() == 4, lambda: "x and grad_out must be 4-D (NHWC)")
        br, bc = block_size
        return x.new_empty((grad_out.shape[3] // br, kernel_size[0] * kernel_size[1] * (x.shape[3] // bc)))


@_triton.on_load
def _register_triton(kernels) -> None:
    k = kernels.block_scores

    @_triton.define("suptickets::triton_block_scores")
    def _block(values: torch.Tensor, kind: str) -> torch.Tensor:
        return k.block_scores(values, kind)

    @_triton.define("suptickets::triton_linear_grad_scores")
    def _linear(x: torch.Tensor, grad_out: torch.Tensor, block_size: list[int], kind: str,
                precision: str) -> torch.Tensor:
        return k.linear_grad_scores(x, grad_out, block_size, kind, precision)

    @_triton.define("suptickets::triton_conv2d_grad_scores")
    def _conv(x: torch.Tensor, grad_out: torch.Tensor, block_size: list[int], kernel_size: list[int],
              stride: list[int], padding: list[int], dilation: list[int], kind: str, precision: str) -> torch.Tensor:
        return k.conv2d_grad_scores(x, grad_out, block_size, kernel_size, stride, padding, dilation, kind, precision)

    for name in ("triton_block_scores", "triton_linear_grad_scores", "triton_conv2d_grad_scores"):
        precision.register_float32(f"suptickets::{name}", ("cuda",))

    @torch.library.register_fake("suptickets::triton_block_scores")
    def _block_fake(values, kind):
        return values.new_empty((values.shape[0],), dtype=torch.float32)

    @torch.library.register_fake("suptickets::triton_linear_grad_scores")
    def _linear_fake(x, grad_out, block_size, kind, precision):
        return x.new_empty((grad_out.shape[1] // block_size[0], x.shape[1] // block_size[1]), dtype=torch.float32)

    @torch.library.register_fake("suptickets::triton_conv2d_grad_scores")
    def _conv_fake(x, grad_out, block_size, kernel_size, stride, padding, dilation, kind, precision):
        return x.new_empty((grad_out.shape[3] // block_size[0], kernel_size[0] * kernel_size[1] * x.shape[3]
                            // block_size[1]), dtype=torch.float32)
