"""``bsr_conv2d`` on the Triton kernels (``suptickets_kernels.bsr_conv``, implicit GEMM over
NHWC), registered as ``torch.library.triton_op``; output and ``dX`` are ``channels_last``, as
from the C++ operator."""
from __future__ import annotations

import torch

from . import _triton

if _triton.available:
    _K = _triton.kernels.bsr_conv

    def _nhwc(t: torch.Tensor) -> torch.Tensor:
        return t.permute(0, 2, 3, 1).contiguous()

    @_triton.define("suptickets::triton_bsr_conv2d", mutates_args=())
    def triton_bsr_conv2d(x: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                          row_ptr: torch.Tensor, col_ptr: torch.Tensor, col_perm: torch.Tensor,
                          bias: torch.Tensor | None, out_channels: int, kernel_size: list[int], stride: list[int],
                          padding: list[int], dilation: list[int], precision: str) -> torch.Tensor:
        # an NCHW channels_last result (not a view, so in-place ops may follow), written as NHWC
        size = [_K.output_size(n, k, s, p, d) for n, k, s, p, d in zip(x.shape[2:], kernel_size, stride, padding,
                                                                        dilation)]
        y = torch.empty((x.shape[0], out_channels, *size), dtype=x.dtype, device=x.device,
                        memory_format=torch.channels_last)
        _K.forward(_nhwc(x), values.contiguous(), cols, row_ptr, bias, out_channels, kernel_size, stride, padding,
                   dilation, precision, out=y.permute(0, 2, 3, 1))
        return y

    @_triton.define("suptickets::triton_bsr_conv2d_backward", mutates_args=())
    def triton_bsr_conv2d_backward(grad: torch.Tensor, x: torch.Tensor, values: torch.Tensor, rows: torch.Tensor,
                                   cols: torch.Tensor, col_ptr: torch.Tensor, col_perm: torch.Tensor,
                                   kernel_size: list[int], stride: list[int], padding: list[int],
                                   dilation: list[int], need_input: bool, need_values: bool,
                                   precision: str) -> tuple[torch.Tensor, torch.Tensor]:
        g = _nhwc(grad)
        values = values.contiguous()
        dx = dv = values.new_empty((0,))
        geometry = (kernel_size, stride, padding, dilation)
        if need_input:
            shape = (x.shape[0], x.shape[2], x.shape[3], x.shape[1])
            dx = _K.grad_input(g, values, rows, col_ptr, col_perm, shape, *geometry, precision).permute(0, 3, 1, 2)
        if need_values:
            dv = _K.grad_values(g, _nhwc(x), values, rows, cols, *geometry, precision)
        return dx, dv

    @triton_bsr_conv2d.register_fake
    def _fake(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_channels, kernel_size, stride, padding,
              dilation, precision):
        size = [(n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, k, s, p, d in zip(x.shape[2:], kernel_size, stride, padding, dilation)]
        return torch.empty((x.shape[0], out_channels, *size), dtype=x.dtype, device=x.device,
                           memory_format=torch.channels_last)

    @triton_bsr_conv2d_backward.register_fake
    def _fake_backward(grad, x, values, rows, cols, col_ptr, col_perm, kernel_size, stride, padding, dilation,
                       need_input, need_values, precision):
        dx = (torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
              if need_input else values.new_empty((0,)))
        return dx, values.new_empty(values.shape) if need_values else values.new_empty((0,))

    _triton.register_product_autograd("suptickets::triton_bsr_conv2d",
                                      torch.ops.suptickets.triton_bsr_conv2d_backward,
                                      lambda grad: grad.sum((0, 2, 3)))
