"""The Triton kernels of bsr_conv2d (implicit GEMM over NHWC) against the reference."""
import pytest
import torch

import suptickets as st
from suptickets.ops import reference

from helpers import tolerances
from triton_helpers import (
    DEVICE,
    DTYPES,
    compare,
    masks,
    needs_triton,
    skip_bf16_in_interpreter,
    triton_backend,  # noqa: F401  (fixture)
)

pytestmark = [needs_triton, pytest.mark.usefixtures("triton_backend")]

# batch, in, out, H, W, kernel, stride, padding, dilation, block
GEOMETRIES = [
    (2, 32, 32, 5, 6, 3, 1, 1, 1, (16, 16)),
    (1, 16, 32, 7, 7, 3, 2, 1, 1, (32, 16)),   # strided: dX masks the positions no output maps to
    (2, 32, 16, 6, 5, 1, 2, 0, 1, (16, 32)),   # strided 1x1
    (1, 16, 16, 8, 8, 3, 1, 2, 2, (16, 16)),   # dilated
    (1, 16, 16, 3, 4, 3, 1, 0, 1, (16, 16)),   # no padding, 1x2 output
]


def conv(layout, geometry):
    k, s, p, d = geometry
    return (lambda x, v, b: st.ops.bsr_conv2d(x, v, layout, b, kernel_size=k, stride=s, padding=p, dilation=d),
            lambda x, v, b: reference.bsr_conv2d(x, v, layout, b, kernel_size=(k, k), stride=(s, s),
                                                 padding=(p, p), dilation=(d, d)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", GEOMETRIES)
def test_matches_the_reference(case, dtype):
    skip_bf16_in_interpreter(dtype)
    B, cin, cout, H, W, k, s, p, d, block = case
    g = torch.Generator().manual_seed(0)
    shape = (cout, k * k * cin)
    for name, mask in masks((shape[0] // block[0], shape[1] // block[1])).items():
        layout = st.BlockLayout.from_mask(mask, block, shape).to(DEVICE)
        values = torch.randn(layout.nnz, *block, generator=g).to(DEVICE, dtype)
        x = torch.randn(B, cin, H, W, generator=g).to(DEVICE, dtype)
        bias = torch.randn(cout, generator=g).to(DEVICE, dtype)
        compare(*conv(layout, (k, s, p, d)), [x, values, bias], dtype, name)


def test_channels_last_input_and_output():
    layout = st.BlockLayout.random((32, 9 * 16), (16, 16), 5).to(DEVICE)
    values = torch.randn(layout.nnz, 16, 16, device=DEVICE)
    x = torch.randn(2, 16, 5, 5, device=DEVICE).to(memory_format=torch.channels_last)
    y = st.ops.bsr_conv2d(x, values, layout, kernel_size=3, padding=1)
    assert y.is_contiguous(memory_format=torch.channels_last)
    compare(*conv(layout, (3, 1, 1, 1)), [x, values, torch.randn(32, device=DEVICE)], torch.float32)


@pytest.mark.slow
def test_compiled_model_matches_eager():
    """``torch.compile(fullgraph=True)`` through the Triton ops (inductor), forward and gradients."""
    lay = st.BlockLayout.random((32, 32), (16, 16), 3).to(DEVICE)
    clay = st.BlockLayout.random((16, 9 * 16), (16, 16), 4).to(DEVICE)
    v = torch.randn(lay.nnz, 16, 16, device=DEVICE, requires_grad=True)
    cv = torch.randn(clay.nnz, 16, 16, device=DEVICE, requires_grad=True)

    def f(x, xc):
        y = st.ops.bsr_conv2d(xc, cv, clay, kernel_size=3, padding=1)
        return (st.ops.bsr_linear(x, v, lay).square().sum() + y.relu().sum()) / 100

    x, xc = torch.randn(4, 32, device=DEVICE), torch.randn(2, 16, 5, 5, device=DEVICE)
    eager = f(x, xc)
    grads = torch.autograd.grad(eager, (v, cv))
    compiled = torch.compile(f, fullgraph=True)(x, xc)
    torch.testing.assert_close(compiled, eager, **tolerances(torch.float32))
    for a, b in zip(torch.autograd.grad(compiled, (v, cv)), grads):
        torch.testing.assert_close(a, b, **tolerances(torch.float32))


def test_opcheck():
    lay = st.BlockLayout.random((32, 9 * 16), (16, 16), 4).to(DEVICE)
    v = torch.randn(lay.nnz, 16, 16, device=DEVICE, requires_grad=True)
    x = torch.randn(2, 16, 5, 5, device=DEVICE, requires_grad=True)
    args = (x, v, lay.rows, lay.cols, lay.row_ptr, lay.col_ptr, lay.col_perm, None, 32, [3, 3], [1, 1], [1, 1],
            [1, 1], "ieee")
    torch.library.opcheck(torch.ops.suptickets.triton_bsr_conv2d.default, args)
    lin = st.BlockLayout.random((32, 48), (16, 16), 3).to(DEVICE)
    lv = torch.randn(lin.nnz, 16, 16, device=DEVICE, requires_grad=True)
    largs = (torch.randn(5, 48, device=DEVICE, requires_grad=True), lv, lin.rows, lin.cols, lin.row_ptr, lin.col_ptr,
             lin.col_perm, torch.randn(32, device=DEVICE, requires_grad=True), 32, "ieee")
    torch.library.opcheck(torch.ops.suptickets.triton_bsr_linear.default, largs)
