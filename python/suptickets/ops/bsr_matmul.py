"""``bsr_linear``: ``x @ W.T + b`` with a block-sparse ``W``, and its registration.

The C++ operators ``suptickets::bsr_linear`` / ``bsr_linear_backward`` get a fake
(meta) implementation and an autograd formula here, so ``torch.compile`` and
``torch.library.opcheck`` work on them:

- ``dX = dY @ W`` walks the block-columns of the layout (``col_ptr``/``col_perm``);
- ``dvalues[s] = dY[:, rows[s]]^T @ X[:, cols[s]]`` only on active blocks (SDDMM);
- ``dbias = dY.sum(leading dims)``, summed while ``dY`` is packed.
"""
from __future__ import annotations

import torch

from . import _extension, _triton, backend, reference, triton_linear  # noqa: F401  (registers the Triton op)


def bsr_linear(x: torch.Tensor, values: torch.Tensor, layout, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x[..., C] -> [..., R]`` with the block-sparse weight ``(values, layout)``.

    ``values`` is ``[nnz, br, bc]`` (same dtype and device as ``x``); ``layout`` has
    ``shape == (R, C)``, ``block_size == (br, bc)`` and the int32 index tensors of
    ``suptickets.BlockLayout``. Differentiable in ``x``, ``values`` and ``bias``.
    """
    backend.check_operands("bsr_linear", x, values, bias)
    if x.shape[-1] != layout.shape[1]:
        raise ValueError(f"bsr_linear: input has {x.shape[-1]} features, the weight expects {layout.shape[1]}")
    choice = backend.choose(x, values, layout.block_size, triton=True)
    if choice == "reference":
        return reference.bsr_linear(x, values, layout, bias)
    if choice == "triton":
        return torch.ops.suptickets.triton_bsr_linear(
            x, values, layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm, bias,
            layout.shape[0], _triton.fp32_precision())
    return torch.ops.suptickets.bsr_linear.default(
        x, values, layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm, bias, layout.shape[0]
    )


if _extension.available:

    @torch.library.register_fake("suptickets::bsr_linear")
    def _bsr_linear_fake(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_features):
        torch._check(values.dim() == 3, lambda: "values must be [nnz, br, bc]")
        torch._check(x.dtype == values.dtype, lambda: "input and values must have the same dtype")
        torch._check(x.shape[-1] % values.shape[2] == 0, lambda: "block columns must divide in_features")
        torch._check(out_features % values.shape[1] == 0, lambda: "block rows must divide out_features")
        return x.new_empty((*x.shape[:-1], out_features))

    @torch.library.register_fake("suptickets::bsr_linear_backward")
    def _bsr_linear_backward_fake(grad, x, values, rows, cols, row_ptr, col_ptr, col_perm, need_input, need_values,
                                  need_bias):
        dx = x.new_empty(x.shape) if need_input else x.new_empty((0,))
        dv = values.new_empty(values.shape) if need_values else values.new_empty((0,))
        db = values.new_empty((grad.shape[-1],)) if need_bias else values.new_empty((0,))
        return dx, dv, db

    def _setup_context(ctx, inputs, output):
        x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, _ = inputs
        ctx.save_for_backward(x, values, rows, cols, row_ptr, col_ptr, col_perm)

    def _backward(ctx, grad):
        x, values, rows, cols, row_ptr, col_ptr, col_perm = ctx.saved_tensors
        need_x, need_v, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[7]
        dx, dv, db = torch.ops.suptickets.bsr_linear_backward.default(
            grad, x, values, rows, cols, row_ptr, col_ptr, col_perm, need_x, need_v, need_b
        )
        return (dx if need_x else None), (dv if need_v else None), None, None, None, None, None, \
            (db if need_b else None), None

    torch.library.register_autograd("suptickets::bsr_linear", _backward, setup_context=_setup_context)
