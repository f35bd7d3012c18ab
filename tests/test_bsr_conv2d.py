"""bsr_conv2d: the C++ kernels (forward, dX, dvalues) against ops/reference.py.

dX is gathered for stride 1 with padding within the kernel's reach and scattered
otherwise (strides, larger padding); the geometries below cover both."""
import pytest
import torch
import torch.nn.functional as F

import suptickets as st
from suptickets.ops import reference

from helpers import GEOMETRIES, TOPOLOGIES, dense_from_element_mask, kernel_cases, make_layout, oracle_dtype, tolerances

BLOCKS = [(1, 1), (4, 4), (16, 16), (32, 32), (16, 32)]
# (batch, in, out, H, W, kernel, stride, padding, dilation)
def _ids(v):
    if isinstance(v, tuple):
        return f"{v[0]}x{v[1]}"
    return str(v).replace("torch.", "")


def make_case(geometry, block, topology, dtype, seed=0):
    B, cin, cout, H, W, k, s, p, d = GEOMETRIES[geometry]
    layout = make_layout((cout, k[0] * k[1] * cin), block, topology, seed)
    values = torch.randn(layout.nnz, *block, dtype=dtype)
    x = torch.randn(B, cin, H, W, dtype=dtype)
    bias = torch.randn(cout, dtype=dtype)
    return layout, values, x, bias, dict(kernel_size=k, stride=s, padding=p, dilation=d)


def run_both(x, values, layout, bias, geom, grad=None):
    """As test_bsr_linear.run_both: the reference in float64 for a low-precision dtype."""
    results = []
    oracle = oracle_dtype(x.dtype)
    for fn, dtype in ((st.ops.bsr_conv2d, x.dtype), (reference.bsr_conv2d, oracle)):
        xs = x.detach().to(dtype).requires_grad_()
        vs = values.detach().to(dtype).requires_grad_()
        bs = None if bias is None else bias.detach().to(dtype).requires_grad_()
        y = fn(xs, vs, layout, bs, **geom)
        if grad is None:
            grad = torch.randn(y.shape, dtype=x.dtype)
        y.backward(grad.to(dtype))
        results.append(tuple(None if t is None else t.to(oracle)
                             for t in (y.detach(), xs.grad, vs.grad, None if bs is None else bs.grad)))
    return results


def check(results, dtype):
    (y, dx, dv, db), (ry, rdx, rdv, rdb) = results
    tol = tolerances(dtype)
    torch.testing.assert_close(y, ry, **tol)
    torch.testing.assert_close(dx, rdx, **tol)
    torch.testing.assert_close(dv, rdv, **tol)
    if db is not None:
        torch.testing.assert_close(db, rdb, **tol)


DTYPES = [torch.float32, torch.float64, torch.bfloat16]
REFERENCE_DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("backend, block, dtype", kernel_cases("bsr_conv2d", BLOCKS, DTYPES))
def test_bsr_conv2d_matches_reference(backend, block, topology, dtype, force_backend):
    force_backend(backend)
    layout, values, x, bias, geom = make_case("3x3-pad1", block, topology, dtype)
    check(run_both(x, values, layout, bias, geom), dtype)


@pytest.mark.parametrize("dtype", REFERENCE_DTYPES, ids=_ids)
@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("block", BLOCKS, ids=_ids)
def test_reference_bsr_conv2d_matches_a_dense_weight(block, topology, dtype):
    """The reference itself against a dense conv weight built independently."""
    layout, values, x, bias, geom = make_case("3x3-pad1", block, topology, dtype)
    W4 = dense_from_element_mask(values, layout).view(32, 3, 3, 32).permute(0, 3, 1, 2)
    torch.testing.assert_close(reference.bsr_conv2d(x, values, layout, bias, **geom), F.conv2d(x, W4, bias, 1, 1),
                               **tolerances(dtype))


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("block", [(16, 16), (32, 16), (4, 4)], ids=_ids)
def test_bsr_conv2d_geometries(geometry, block):
    layout, values, x, bias, geom = make_case(geometry, block, "empty-row-col", torch.float32)
    check(run_both(x, values, layout, bias, geom), torch.float32)


@pytest.mark.parametrize("layout_kind", ["channels_last", "sliced", "expanded-grad", "no-bias"])
def test_bsr_conv2d_unusual_inputs(layout_kind):
    layout, values, x, bias, geom = make_case("3x3-pad1", (16, 16), "half", torch.float32)
    grad = None
    if layout_kind == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout_kind == "sliced":
        x = torch.randn(2, 64, 12, 9)[:, ::2, 1:10, :7]
        assert not x.is_contiguous()
    elif layout_kind == "expanded-grad":
        grad = torch.ones(()).expand(2, 32, 9, 7)
    else:
        bias = None
    check(run_both(x, values, layout, bias, geom, grad), torch.float32)


def test_reference_gradcheck_float64():
    layout = make_layout((8, 9 * 8), (4, 4), "empty-row-col")
    x = torch.randn(1, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(layout.nnz, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, dtype=torch.float64, requires_grad=True)
    geom = dict(kernel_size=3, stride=2, padding=1)
    assert torch.autograd.gradcheck(lambda x, v, b: reference.bsr_conv2d(x, v, layout, b, **geom), (x, v, b))


@pytest.mark.parametrize("geometry", ["3x3-pad1", "3x3-stride2", "1x1"])
def test_kernel_gradcheck_float64(geometry):
    B, cin, cout, H, W, k, s, p, d = GEOMETRIES[geometry]
    cin, cout = 8, 8
    layout = make_layout((cout, k[0] * k[1] * cin), (4, 4), "half")
    x = torch.randn(1, cin, 5, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(layout.nnz, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(cout, dtype=torch.float64, requires_grad=True)
    geom = dict(kernel_size=k, stride=s, padding=p, dilation=d)
    assert torch.autograd.gradcheck(lambda x, v, b: st.ops.bsr_conv2d(x, v, layout, b, **geom), (x, v, b))


@pytest.mark.parametrize("block", [(1, 1), (16, 16)], ids=_ids)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_bsr_conv2d_opcheck(block, memory_format):
    """The fake implementation (shapes and memory formats) agrees with the kernels, and the schema,
    autograd and AOT dispatch hold, for the element and the tile kernels."""
    layout, values, x, bias, geom = make_case("3x3-stride2", block, "half", torch.float32)
    x = x.contiguous(memory_format=memory_format)
    args = (x.requires_grad_(), values.requires_grad_(), layout.rows, layout.cols, layout.row_ptr,
            layout.col_ptr, layout.col_perm, bias.requires_grad_(), 32, [3, 3], [2, 2], [1, 1], [1, 1])
    torch.library.opcheck(torch.ops.suptickets.bsr_conv2d.default, args)


def test_bad_operands_are_clear_errors():
    layout, values, x, bias, geom = make_case("3x3-pad1", (16, 16), "half", torch.float32)
    with pytest.raises(ValueError, match="channels"):
        st.ops.bsr_conv2d(x[:, :16], values, layout, bias, **geom)
    with pytest.raises(ValueError, match="4-D"):
        st.ops.bsr_conv2d(x[0], values, layout, bias, **geom)
    with pytest.raises(TypeError, match="dtype"):
        st.ops.bsr_conv2d(x.double(), values, layout, bias, **geom)
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        st.ops.bsr_conv2d(x[:, :, :1, :1], values, layout, bias, kernel_size=3, padding=0)


@pytest.mark.parametrize("geometry", ["3x3-pad1", "3x3-stride2"])
def test_results_do_not_depend_on_the_thread_count(geometry):
    """Every output element is summed by one thread in a fixed order: 1 and 2 threads agree bit for bit."""
    layout, values, x, bias, geom = make_case(geometry, (16, 16), "half", torch.float32)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            xs, vs, bs = (t.clone().requires_grad_() for t in (x, values, bias))
            y = st.ops.bsr_conv2d(xs, vs, layout, bs, **geom)
            y.backward(torch.ones_like(y))
            results.append([y.detach(), xs.grad, vs.grad, bs.grad])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("geometry", ["3x3-pad1", "1x1-stride2"])
@pytest.mark.parametrize("block", [(1, 1), (16, 16)], ids=_ids)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_grad_input_has_the_memory_format_of_the_input(geometry, block, memory_format):
    """dX comes back in x's memory format (as torch's convolutions give it), with the reference's
    values, from the element kernels (1x1) and the tile kernels (16x16) alike; the output is
    channels_last."""
    layout, values, x, bias, geom = make_case(geometry, block, "half", torch.float32)
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    y = st.ops.bsr_conv2d(x, values, layout, bias, **geom)
    assert y.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn(y.shape)
    (dx,) = torch.autograd.grad(y, x, grad)  # the raw gradient, before a leaf's .grad takes x's layout
    assert dx.is_contiguous(memory_format=memory_format)
    xr = x.detach().double().requires_grad_()
    yr = reference.bsr_conv2d(xr, values.double(), layout, bias.double(), **geom)
    (rdx,) = torch.autograd.grad(yr, xr, grad.double())
    torch.testing.assert_close(dx.double(), rdx, **tolerances(torch.float32))
