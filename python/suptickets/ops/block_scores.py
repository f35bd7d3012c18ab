"""Block scores for topology updates: the magnitude of active blocks, and the fused
gradient score of every block of the grid.

- ``block_scores(values, kind)``: ``[nnz]`` L1 or L2 norm of each active block.
- ``linear_grad_scores`` / ``conv2d_grad_scores``: ``[R/br, C/bc]`` norms of the blocks
  of the dense weight gradient ``dW = dY^T X`` (for a conv, of its 2-D view), computed
  from a step's ``X`` and ``dY``. The C++ kernel forms ``dW`` one slab of whole
  block-rows (at most 4 MB) and one kernel tap at a time and reduces each slab to block
  norms at once: no ``[R, C]`` tensor exists at any time.
"""
from __future__ import annotations

import torch

from . import _extension, _triton, backend, reference

KINDS = ("l1", "l2")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")


def _pair(v, name: str) -> tuple[int, int]:
    v = (v, v) if isinstance(v, int) else tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def block_scores(values: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """``[nnz]`` norms (``kind`` "l1" or "l2") of the blocks of ``values[nnz, br, bc]``; same dtype."""
    _check_kind(kind)
    if values.dim() != 3:
        raise ValueError(f"block_scores: values must be [nnz, br, bc], got shape {tuple(values.shape)}")
    values = values.detach()
    choice = backend.choose(values, values, values.shape[1:], triton=True, min_block=1, cpu_unit_blocks=True)
    if choice == "reference":
        return reference.block_scores(values, kind)
    if choice == "triton":
        return _triton.kernels.scores.block_scores(values.contiguous(), kind).to(values.dtype)
    return torch.ops.suptickets.block_scores.default(values, kind)


def _check_grad_operands(op, x, grad_out):
    if x.dtype != grad_out.dtype or x.device != grad_out.device:
        raise TypeError(f"{op}: x ({x.dtype}, {x.device}) and grad_out ({grad_out.dtype}, {grad_out.device}) "
                        "must have the same dtype and device")


def linear_grad_scores(x: torch.Tensor, grad_out: torch.Tensor, block_size, kind: str = "l1") -> torch.Tensor:
    """Block norms ``[R/br, C/bc]`` of ``dW = dY^T X`` for a linear layer: ``x[..., C]`` its
    input and ``grad_out[..., R]`` the gradient of its output (same leading dims)."""
    _check_kind(kind)
    _check_grad_operands("linear_grad_scores", x, grad_out)
    br, bc = _pair(block_size, "block_size")
    C, R = x.shape[-1], grad_out.shape[-1]
    if x.shape[:-1] != grad_out.shape[:-1]:
        raise ValueError(f"linear_grad_scores: x {tuple(x.shape)} and grad_out {tuple(grad_out.shape)} "
                         "must have the same leading dimensions")
    if R % br or C % bc:
        raise ValueError(f"linear_grad_scores: block_size {(br, bc)} must divide (out={R}, in={C})")
    x, grad_out = x.detach(), grad_out.detach()
    choice = backend.choose(x, grad_out, (br, bc), triton=True, cpu_unit_blocks=True)
    if choice == "reference":
        return reference.linear_grad_scores(x, grad_out, (br, bc), kind)
    if choice == "triton":
        return _triton.kernels.scores.linear_grad_scores(
            x.reshape(-1, C).contiguous(), grad_out.reshape(-1, R).contiguous(), (br, bc), kind,
            _triton.fp32_precision()).to(x.dtype)
    return torch.ops.suptickets.grad_scores.default(
        x.reshape(-1, 1, 1, C), grad_out.reshape(-1, 1, 1, R), (br, bc), (1, 1), (1, 1), (0, 0), (1, 1), kind)


def conv2d_grad_scores(x: torch.Tensor, grad_out: torch.Tensor, block_size, *, kernel_size, stride=1, padding=0,
                       dilation=1, kind: str = "l1") -> torch.Tensor:
    """Block norms ``[out/br, kh*kw*in/bc]`` of the conv weight gradient's 2-D view, from the
    layer's NCHW input ``x[B, in, H, W]`` and output gradient ``grad_out[B, out, Ho, Wo]``
    (any memory format; channels_last avoids a copy)."""
    _check_kind(kind)
    _check_grad_operands("conv2d_grad_scores", x, grad_out)
    br, bc = _pair(block_size, "block_size")
    geometry = [_pair(v, n) for v, n in ((kernel_size, "kernel_size"), (stride, "stride"), (padding, "padding"),
                                         (dilation, "dilation"))]
    if x.dim() != 4 or grad_out.dim() != 4:
        raise ValueError("conv2d_grad_scores: x and grad_out must be 4-D NCHW tensors")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geometry
    expected = ((x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
    if tuple(grad_out.shape[2:]) != expected:
        raise ValueError(f"conv2d_grad_scores: grad_out's spatial size {tuple(grad_out.shape[2:])} does not match "
                         f"the convolution of a {tuple(x.shape[2:])} input, {expected}")
    if grad_out.shape[1] % br or x.shape[1] % bc:
        raise ValueError(f"conv2d_grad_scores: block_size {(br, bc)} must divide "
                         f"(out_channels={grad_out.shape[1]}, in_channels={x.shape[1]})")
    x, grad_out = x.detach(), grad_out.detach()
    choice = backend.choose(x, grad_out, (br, bc), triton=True, cpu_unit_blocks=True)
    if choice == "triton":
        return _triton.kernels.scores.conv2d_grad_scores(
            x.permute(0, 2, 3, 1).contiguous(), grad_out.permute(0, 2, 3, 1).contiguous(), (br, bc), *geometry,
            kind, _triton.fp32_precision()).to(x.dtype)
    if choice == "reference":
        return reference.conv2d_grad_scores(x, grad_out, (br, bc), kernel_size=geometry[0], stride=geometry[1],
                                            padding=geometry[2], dilation=geometry[3], kind=kind)
    return torch.ops.suptickets.grad_scores.default(x.permute(0, 2, 3, 1), grad_out.permute(0, 2, 3, 1), (br, bc),
                                                    *geometry, kind)


if _extension.available:

    @torch.library.register_fake("suptickets::block_scores")
    def _block_scores_fake(values, kind):
        torch._check(values.dim() == 3, lambda: "values must be [nnz, br, bc]")
        return values.new_empty((values.shape[0],))

    @torch.library.register_fake("suptickets::grad_scores")
    def _grad_scores_fake(x, grad_out, block_size, kernel_size, stride, padding, dilation, kind):
        torch._check(x.dim() == 4 and grad_out.dim() == 4, lambda: "x and grad_out must be 4-D (NHWC)")
        br, bc = block_size
        rows = grad_out.shape[3] // br
        cols = kernel_size[0] * kernel_size[1] * (x.shape[3] // bc)
        return x.new_empty((rows, cols))
