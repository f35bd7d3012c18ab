"""``bsr_linear``: ``x @ W.T + b`` with a block-sparse ``W``, on every backend.

One face: :func:`bsr_linear` checks its operands, asks the dispatch table once and runs the
chosen backend. The operators ``suptickets::bsr_linear`` (C++, ``csrc/cpu/bsr_linear.cpp``)
and ``suptickets::triton_bsr_linear`` (Triton, ``suptickets_kernels/bsr_linear.py``, defined
here) share the fake implementation and autograd formula below (``ops/product.py``):

- ``dX = dY @ W`` walks the block-columns of the layout (``col_ptr``/``col_perm``);
- ``dvalues[s] = dY[:, rows[s]]^T @ X[:, cols[s]]`` only on active blocks (SDDMM);
- ``dbias = dY.sum(leading dims)``.
"""
from __future__ import annotations

import torch

from . import _extension, _triton, backend, cost, dense_path, precision, product, reference


def bsr_linear(x: torch.Tensor, values: torch.Tensor, layout, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x[..., C] -> [..., R]`` with the block-sparse weight ``(values, layout)``.

    ``values`` is ``[nnz, br, bc]`` (same dtype and device as ``x``; in a ``torch.autocast``
    region both, and the bias, are cast to the region's dtype, ``ops/precision.py``); ``layout`` has
    ``shape == (R, C)``, ``block_size == (br, bc)`` and the int32 index tensors of
    ``suptickets.BlockLayout``. Returns a new tensor (not a view). Differentiable in ``x``,
    ``values`` and ``bias``.
    """
    x, values, bias = precision.product_operands(x, values, bias)
    backend.check_operands("bsr_linear", x, values, bias)
    if x.dim() == 0:
        raise ValueError("bsr_linear: input must have at least 1 dimension [..., in_features], got a 0-d tensor")
    if x.shape[-1] != layout.shape[1]:
        raise ValueError(f"bsr_linear: input has {x.shape[-1]} features, the weight expects {layout.shape[1]}")
    where = f"{tuple(layout.shape)} weight"
    choice = backend.choose("bsr_linear", x, values, block_size=layout.block_size, where=where,
                            work=cost.linear_work(x, layout, values))
    with precision.without_autocast(x.device.type):
        return _RUN[choice](x, values, layout, bias)


def bsr_linear_weight_grads(x: torch.Tensor, grad_out: torch.Tensor, values: torch.Tensor, layout,
                            with_bias: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(dvalues, dbias)`` of ``bsr_linear`` for the input ``x[..., C]`` and output gradient
    ``grad_out[..., R]`` (same leading dims and dtype), without ``dX``: the backward pass's SDDMM and
    bias sum, the same arithmetic as autograd's for the same tensors (data parallelism recomputes
    them on the gathered batch). ``dbias`` is None without ``with_bias``; results in ``values``' dtype."""
    if x.shape[:-1] != grad_out.shape[:-1] or x.dtype != grad_out.dtype:
        raise ValueError(f"bsr_linear_weight_grads: x {tuple(x.shape)} {x.dtype} and grad_out "
                         f"{tuple(grad_out.shape)} {grad_out.dtype} must share leading dims and dtype")
    x, grad_out = x.detach(), grad_out.detach()
    v = values.to(x.dtype)
    choice = backend.choose("bsr_linear", x, v, block_size=layout.block_size, work=cost.linear_work(x, layout, v))
    return _GRADS[choice](x, grad_out, values, layout, with_bias)


def _fake(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_features):
    torch._check(values.dim() == 3, lambda: "values must be [nnz, br, bc]")
    torch._check(x.dtype == values.dtype, lambda: "input and values must have the same dtype")
    torch._check(x.shape[-1] % values.shape[2] == 0, lambda: "block columns must divide in_features")
    torch._check(out_features % values.shape[1] == 0, lambda: "block rows must divide out_features")
    return x.new_empty((*x.shape[:-1], out_features))


def _backward_fake(grad, x, values, rows, cols, row_ptr, col_ptr, col_perm, need_input, need_values, need_bias):
    return (x.new_empty(x.shape) if need_input else values.new_empty((0,)),
            values.new_empty(values.shape) if need_values else values.new_empty((0,)),
            values.new_empty((grad.shape[-1],)) if need_bias else values.new_empty((0,)))


def _cpu(x, values, layout, bias):
    return torch.ops.suptickets.bsr_linear.default(x, values, *product.layout_args(layout), bias, layout.shape[0])


def _triton_run(x, values, layout, bias):
    return torch.ops.suptickets.triton_bsr_linear(x, values, *product.layout_args(layout), bias, layout.shape[0],
                                                  _triton.fp32_precision())


_RUN = {"cpu": _cpu, "triton": _triton_run, "dense": dense_path.bsr_linear, "reference": reference.bsr_linear}
_GRADS = {
    "cpu": lambda x, g, v, layout, with_bias: product.weight_grads(
        torch.ops.suptickets.bsr_linear_backward, g, x, v, layout, (), with_bias),
    "triton": lambda x, g, v, layout, with_bias: product.weight_grads(
        torch.ops.suptickets.triton_bsr_linear_backward, g, x, v, layout, (), with_bias, (_triton.fp32_precision(),)),
    "dense": lambda x, g, v, layout, with_bias: product.reference_weight_grads(
        lambda vv, b: dense_path.bsr_linear(x, vv, layout, b), g, v, g.shape[-1] if with_bias else None),
    "reference": lambda x, g, v, layout, with_bias: product.reference_weight_grads(
        lambda vv, b: reference.bsr_linear(x, vv, layout, b), g, v, g.shape[-1] if with_bias else None),
}

if _extension.available:
    product.register("suptickets::bsr_linear", torch.ops.suptickets.bsr_linear_backward, _fake, _backward_fake,
                     n_geometry=0, autograd=False)  # its autograd: csrc/product_autograd.cpp
    precision.register_product("suptickets::bsr_linear")

@_triton.on_load
def _register_triton(kernels) -> None:
    _K = kernels.bsr_linear

    @_triton.define("suptickets::triton_bsr_linear")
    def _triton_forward(x: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                        row_ptr: torch.Tensor, col_ptr: torch.Tensor, col_perm: torch.Tensor,
                        bias: torch.Tensor | None, out_features: int, precision: str) -> torch.Tensor:
        # allocated in its own shape (not a view, so in-place ops may follow), written as 2-D
        y = x.new_empty((*x.shape[:-1], out_features))
        _K.forward(x.reshape(-1, x.shape[-1]).contiguous(), values.contiguous(), cols, row_ptr, bias, out_features,
                   precision, out=y.view(-1, out_features))
        return y

    @_triton.define("suptickets::triton_bsr_linear_backward")
    def _triton_backward(grad: torch.Tensor, x: torch.Tensor, values: torch.Tensor, rows: torch.Tensor,
                         cols: torch.Tensor, row_ptr: torch.Tensor, col_ptr: torch.Tensor, col_perm: torch.Tensor,
                         need_input: bool, need_values: bool, need_bias: bool,
                         precision: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g2d = grad.reshape(-1, grad.shape[-1]).contiguous()
        values = values.contiguous()
        dx, dv, db = (values.new_empty((0,)) for _ in range(3))  # distinct: outputs may not alias
        if need_input:
            dx = _K.grad_input(g2d, values, rows, col_ptr, col_perm, x.shape[-1], precision).reshape(x.shape)
        if need_values:
            dv = _K.grad_values(g2d, x.reshape(-1, x.shape[-1]).contiguous(), values, rows, cols, precision)
        if need_bias:
            db = g2d.sum(0).to(values.dtype)
        return dx, dv, db

    product.register("suptickets::triton_bsr_linear", torch.ops.suptickets.triton_bsr_linear_backward, _fake,
                     _backward_fake, n_geometry=0)
    precision.register_product("suptickets::triton_bsr_linear", ("cuda",))
