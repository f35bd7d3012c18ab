"""The products' autograd formula as the C++ operators carry it (csrc/product_autograd.cpp): each
gradient exactly when its input requires one, equal to the reference's, with and without a bias;
the formula is the operators' own (a direct call of the operator is differentiable)."""
import itertools

import pytest
import torch

import suptickets as st
from suptickets.ops import product, reference

from helpers import make_layout

NEEDS = list(itertools.product([False, True], repeat=3))  # x, values, bias


def _ids(need):
    return "-".join(name for name, n in zip(("x", "values", "bias"), need) if n) or "none"


def _linear_case():
    layout = make_layout((12, 16), (1, 1), "half")
    return layout, torch.randn(layout.nnz, 1, 1), torch.randn(5, 16), torch.randn(12), {}


def _conv_case():
    layout = make_layout((8, 3 * 3 * 4), (2, 2), "half")
    geometry = dict(kernel_size=(3, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 1))
    return layout, torch.randn(layout.nnz, 2, 2), torch.randn(2, 4, 7, 6), torch.randn(8), geometry


CASES = {"linear": (_linear_case, st.ops.bsr_linear, reference.bsr_linear),
         "conv2d": (_conv_case, st.ops.bsr_conv2d, reference.bsr_conv2d)}


@pytest.mark.parametrize("need, with_bias", [(n, b) for n in NEEDS for b in (True, False) if b or not n[2]],
                         ids=lambda v: _ids(v) if isinstance(v, tuple) else ("bias" if v else "no-bias"))
@pytest.mark.parametrize("op", CASES)
def test_each_gradient_exactly_when_its_input_requires_one(op, need, with_bias, force_backend):
    force_backend("cpu")
    make, fn, ref = CASES[op]
    torch.manual_seed(0)
    layout, values, x, bias, geometry = make()
    bias = bias if with_bias else None
    results = []
    for f in (fn, ref):
        leaves = [None if t is None else t.detach().clone().requires_grad_(n) for t, n in zip((x, values, bias), need)]
        y = f(leaves[0], leaves[1], layout, leaves[2], **geometry)
        assert y.requires_grad == any(need)
        if y.requires_grad:
            y.backward(torch.randn_like(y, generator=torch.Generator().manual_seed(1)))
        results.append([None if t is None else t.grad for t in leaves])
    got, want = results
    for name, g, w, n in zip(("x", "values", "bias"), got, want, need):
        if not n:
            assert g is None, f"{name} got a gradient it did not ask for"
            continue
        assert g is not None, f"{name} requires a gradient and got none"
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op", CASES)
def test_the_operator_itself_is_differentiable(op):
    make, fn, ref = CASES[op]
    torch.manual_seed(0)
    layout, values, x, bias, geometry = make()
    x.requires_grad_()
    values.requires_grad_()
    args = (x, values, *product.layout_args(layout), bias)
    if op == "linear":
        y = torch.ops.suptickets.bsr_linear(*args, layout.shape[0])
    else:
        y = torch.ops.suptickets.bsr_conv2d(*args, layout.shape[0], *geometry.values())
    assert y.grad_fn is not None
    dx, dv = torch.autograd.grad(y.square().sum(), (x, values))
    rx, rv = (t.detach().clone().requires_grad_() for t in (x, values))
    rdx, rdv = torch.autograd.grad(ref(rx, rv, layout, bias, **geometry).square().sum(), (rx, rv))
    torch.testing.assert_close(dx, rdx, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dv, rdv, rtol=1e-4, atol=1e-4)
