"""Speed-regression suite (pytest-benchmark): forward + backward of SparseLinear / SparseConv2d at
density 0.1 for blocks 1, 8 and 32, and of the dense layer, on this CPU.

    pytest benchmarks/test_speed.py --benchmark-only --benchmark-autosave   # time and save a run
    pytest benchmarks/test_speed.py --benchmark-only --benchmark-compare    # against the last saved run

In the project's test command (benchmarking disabled, benchmarks/conftest.py) each body runs once
and checks its output and gradients against the dense layer with the same weight.
"""
import pytest
import torch
from torch import nn

import suptickets as st

DENSITY = 0.1
BLOCKS = [1, 8, 32]
LAYERS = {
    "linear-1024x1024-batch1024": (lambda b: st.SparseLinear(1024, 1024, density=DENSITY, block_size=(b, b)),
                                   (1024, 1024)),
    "conv3x3-64x64-16x16-batch32": (lambda b: st.SparseConv2d(64, 64, 3, padding=1, density=DENSITY,
                                                              block_size=(b, b)), (32, 64, 16, 16)),
}


def forward_backward(layer, x, grad):
    def run():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(grad)
    return run


def check_against_dense(sparse, dense, x, grad):
    """The sparse layer's output and gradients equal the dense layer's with the same weight."""
    sparse.zero_grad(set_to_none=True)
    dense.zero_grad(set_to_none=True)
    xs, xd = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    ys, yd = sparse(xs), dense(xd)
    ys.backward(grad)
    yd.backward(grad)
    torch.testing.assert_close(ys, yd, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(xs.grad, xd.grad, rtol=1e-4, atol=1e-4)
    mask = dense.weight.detach() != 0
    layout, grad_values = sparse.layout, sparse.values.grad
    weight_grad = (layout.conv_weight(grad_values, sparse.kernel_size) if isinstance(sparse, st.SparseConv2d)
                   else layout.dense_weight(grad_values))
    torch.testing.assert_close(weight_grad[mask], dense.weight.grad[mask], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("name", list(LAYERS))
def test_sparse_layer_speed(benchmark, name, block):
    benchmark.group = name
    torch.manual_seed(0)
    make, shape = LAYERS[name]
    sparse = make(block)
    x, grad = torch.randn(shape, requires_grad=True), None
    with torch.no_grad():
        grad = torch.randn_like(sparse(x))
    benchmark(forward_backward(sparse, x, grad))
    check_against_dense(sparse, sparse.to_dense(), x, grad)


@pytest.mark.parametrize("name", list(LAYERS))
def test_dense_layer_speed(benchmark, name):
    benchmark.group = name
    torch.manual_seed(0)
    make, shape = LAYERS[name]
    dense = make(32).to_dense()
    x = torch.randn(shape, requires_grad=True)
    with torch.no_grad():
        grad = torch.randn_like(dense(x))
    benchmark(forward_backward(dense, x, grad))
    assert isinstance(dense, (nn.Linear, nn.Conv2d)) and x.grad is not None and dense.weight.grad is not None
