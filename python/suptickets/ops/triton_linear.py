"""``bsr_linear`` on the Triton kernels (``suptickets_kernels.bsr_matmul``), registered as
``torch.library.triton_op`` so that ``torch.compile`` traces into the kernels, with the same
autograd contract as the C++ operator: ``dX = dY @ W`` by block-columns, ``dvalues`` only on
active blocks (SDDMM), ``dbias = dY.sum``."""
from __future__ import annotations

import torch

from . import _triton

if _triton.available:
    _K = _triton.kernels.bsr_matmul

    @_triton.define("suptickets::triton_bsr_linear", mutates_args=())
    def triton_bsr_linear(x: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                          row_ptr: torch.Tensor, col_ptr: torch.Tensor, col_perm: torch.Tensor,
                          bias: torch.Tensor | None, out_features: int, precision: str) -> torch.Tensor:
        x2d = x.reshape(-1, x.shape[-1]).contiguous()
        # allocated in its own shape (not a view, so in-place ops may follow), written as 2-D
        y = x.new_empty((*x.shape[:-1], out_features))
        _K.forward(x2d, values.contiguous(), cols, row_ptr, bias, out_features, precision,
                   out=y.view(-1, out_features))
        return y

    @_triton.define("suptickets::triton_bsr_linear_backward", mutates_args=())
    def triton_bsr_linear_backward(grad: torch.Tensor, x: torch.Tensor, values: torch.Tensor, rows: torch.Tensor,
                                   cols: torch.Tensor, col_ptr: torch.Tensor, col_perm: torch.Tensor,
                                   need_input: bool, need_values: bool,
                                   precision: str) -> tuple[torch.Tensor, torch.Tensor]:
        g2d = grad.reshape(-1, grad.shape[-1]).contiguous()
        values = values.contiguous()
        dx = dv = values.new_empty((0,))
        if need_input:
            dx = _K.grad_input(g2d, values, rows, col_ptr, col_perm, x.shape[-1], precision).reshape(x.shape)
        if need_values:
            dv = _K.grad_values(g2d, x.reshape(-1, x.shape[-1]).contiguous(), values, rows, cols, precision)
        return dx, dv

    @triton_bsr_linear.register_fake
    def _fake(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_features, precision):
        return x.new_empty((*x.shape[:-1], out_features))

    @triton_bsr_linear_backward.register_fake
    def _fake_backward(grad, x, values, rows, cols, col_ptr, col_perm, need_input, need_values, precision):
        return (x.new_empty(x.shape) if need_input else values.new_empty((0,)),
                values.new_empty(values.shape) if need_values else values.new_empty((0,)))

    _triton.register_product_autograd("suptickets::triton_bsr_linear",
                                      torch.ops.suptickets.triton_bsr_linear_backward,
                                      lambda grad: grad.reshape(-1, grad.shape[-1]).sum(0))
