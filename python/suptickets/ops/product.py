"""The registration contract the two block-sparse products (``bsr_linear``, ``bsr_conv2d``)
share on every backend, so that their fake implementation and autograd formula are written
once, in the op's file, whichever backend registers the operator.

Every backend's operator pair has the schema

- ``forward(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_size, *geometry,
  *extra) -> y``
- ``backward(grad, x, values, rows, cols, row_ptr, col_ptr, col_perm, *geometry, need_input,
  need_values, need_bias, *extra) -> (dx, dvalues, dbias)`` (a gradient not needed is an
  empty tensor),

where ``geometry`` is the op's (none for the linear product; kernel size, stride, padding,
dilation for the convolution) and ``extra`` the backend's own arguments (Triton: the float32
precision). The autograd formula is the contract of docs/DESIGN.md: ``dX = dY W`` by
block-columns, ``dvalues`` only on active blocks (SDDMM), ``dbias`` the sum of ``dY``.

The operators defined in C++ (the CPU backend) carry this formula as a C++ Autograd kernel
(``csrc/product_autograd.cpp``: a few microseconds a call, where ``torch.library``'s Python
wrapper costs about 100); the ones defined in Python (Triton) register it here.
"""
from __future__ import annotations

from typing import Callable

import torch

_INDEX = 5  # rows, cols, row_ptr, col_ptr, col_perm


def register(op: str, backward_op, fake: Callable, backward_fake: Callable, n_geometry: int,
             autograd: bool = True) -> None:
    """Registers ``fake`` (called with ``forward``'s arguments up to the geometry),
    ``backward_fake`` (with ``backward``'s up to ``need_bias``) and, with ``autograd``, the autograd
    formula on the operator pair ``op`` / ``backward_op`` (a qualified name and an
    ``OpOverloadPacket``); without it the operator has its formula from C++ already."""
    n_forward = 2 + _INDEX + 2 + n_geometry
    n_backward = 3 + _INDEX + n_geometry + 3
    torch.library.register_fake(op)(lambda *args: fake(*args[:n_forward]))
    torch.library.register_fake(backward_op._qualified_op_name)(lambda *args: backward_fake(*args[:n_backward]))
    if not autograd:
        return

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:2 + _INDEX])
        ctx.geometry = tuple(inputs[n_forward - n_geometry:n_forward])
        ctx.extra = tuple(inputs[n_forward:])
        ctx.n_inputs = len(inputs)

    def backward(ctx, grad):
        x, values, *index = ctx.saved_tensors
        need_x, need_v, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[7]
        dx, dv, db = backward_op(grad, x, values, *index, *ctx.geometry, need_x, need_v, need_b, *ctx.extra)
        grads = [dx if need_x else None, dv if need_v else None] + [None] * _INDEX + [db if need_b else None]
        return tuple(grads + [None] * (ctx.n_inputs - len(grads)))

    torch.library.register_autograd(op, backward, setup_context=setup_context)


def layout_args(layout) -> tuple[torch.Tensor, ...]:
    """The index tensors of a ``BlockLayout`` in the order of the operators' schemas."""
    return (layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm)


def weight_grads(backward_op, grad, x, values, layout, geometry: tuple, with_bias: bool, extra: tuple = ()):
    """``(dvalues, dbias or None)`` from an operator pair's backward, without ``dX``: the SDDMM and
    the bias sum on the given input and output gradient (in ``x``'s dtype; ``values`` is cast to it
    and ``dvalues`` back to ``values``' dtype, as autograd does for an autocast cast)."""
    _, dv, db = backward_op(grad, x, values.detach().to(x.dtype), *layout_args(layout), *geometry, False, True,
                            with_bias, *extra)
    return dv.to(values.dtype), (db.to(values.dtype) if with_bias else None)


def reference_weight_grads(forward, grad_out, values, bias_size: int | None):
    """``weight_grads`` through the reference's autograd: ``forward(v, b)`` the reference product
    of leaves ``v`` (``values`` in ``grad_out``'s dtype) and ``b`` (zeros of ``bias_size``, or None)."""
    v = values.detach().to(grad_out.dtype).requires_grad_()
    b = None if bias_size is None else torch.zeros(bias_size, dtype=grad_out.dtype, device=grad_out.device,
                                                   requires_grad=True)
    grads = torch.autograd.grad(forward(v, b), [t for t in (v, b) if t is not None], grad_out)
    return grads[0].to(values.dtype), (grads[1].to(values.dtype) if b is not None else None)
