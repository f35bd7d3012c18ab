"""The element kernels (unstructured (1, 1) and small blocks, csrc/cpu/element_kernels.h) against
ops/reference.py: odd shapes, empty rows and columns, one nonzero, full and minimal density, every
conv geometry, non-contiguous and channels_last inputs, float64 gradcheck, opcheck, thread count."""
import pytest
import torch

import suptickets as st
from suptickets.ops import reference

from helpers import GEOMETRIES, oracle_dtype, tolerances

# blocks the element kernels run (a side < 8), with more rows or columns than one call computes
BLOCKS = [(1, 1), (2, 2), (1, 8), (4, 4), (8, 1), (2, 3), (16, 2), (2, 16)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16]


def _ids(v):
    return f"{v[0]}x{v[1]}" if isinstance(v, tuple) else str(v).replace("torch.", "")


def _layout(shape, block, kind, seed=0):
    grid = (shape[0] // block[0], shape[1] // block[1])
    g = torch.Generator().manual_seed(seed)
    if kind == "one":
        mask = torch.zeros(grid, dtype=torch.bool)
        mask[grid[0] - 1, grid[1] // 3] = True
    elif kind == "full":
        mask = torch.ones(grid, dtype=torch.bool)
    elif kind == "1%":
        mask = torch.rand(grid, generator=g) < 0.01
        mask[0, 0] = True
    else:  # "empty-rows-cols": a third dense, with empty rows and columns
        mask = torch.rand(grid, generator=g) < 0.35
        mask[::3, :] = False
        mask[:, 1::4] = False
        mask[grid[0] - 1, 0] = True
    return st.BlockLayout.from_mask(mask, block, shape)


def _compare(fn, ref, inputs, dtype):
    """The kernel and the reference (in float64 for a low-precision dtype) on the same inputs."""
    outs = []
    oracle = oracle_dtype(dtype)
    for f, dt in ((fn, dtype), (ref, oracle)):
        leaves = [t.detach().to(dt).requires_grad_() if t is not None else None for t in inputs]
        y = f(*leaves)
        grad = torch.randn(y.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
        y.backward(grad.to(dt))
        outs.append([t.to(oracle) for t in [y.detach()] + [t.grad for t in leaves if t is not None]])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, **tolerances(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("kind", ["one", "full", "1%", "empty-rows-cols"])
@pytest.mark.parametrize("batch", [1, 7, 37, 300])
@pytest.mark.parametrize("block", BLOCKS, ids=_ids)
def test_linear_matches_reference(block, batch, kind, dtype, force_backend):
    force_backend("cpu")
    shape = (block[0] * 23, block[1] * 19)  # not multiples of 16 or of a vector
    layout = _layout(shape, block, kind)
    values = torch.randn(layout.nnz, *block, dtype=dtype)
    x, bias = torch.randn(batch, shape[1], dtype=dtype), torch.randn(shape[0], dtype=dtype)
    _compare(lambda x, v, b: st.ops.bsr_linear(x, v, layout, b),
             lambda x, v, b: reference.bsr_linear(x, v, layout, b), [x, values, bias], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("block", [(1, 1), (2, 2), (1, 8)], ids=_ids)
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_conv_geometries_match_reference(geometry, block, dtype, force_backend):
    force_backend("cpu")
    B, cin, cout, H, W, k, s, p, d = GEOMETRIES[geometry]
    layout = _layout((cout, k[0] * k[1] * cin), block, "empty-rows-cols")
    values = torch.randn(layout.nnz, *block, dtype=dtype)
    x, bias = torch.randn(B, cin, H, W, dtype=dtype), torch.randn(cout, dtype=dtype)
    geom = dict(kernel_size=k, stride=s, padding=p, dilation=d)
    _compare(lambda x, v, b: st.ops.bsr_conv2d(x, v, layout, b, **geom),
             lambda x, v, b: reference.bsr_conv2d(x, v, layout, b, **geom), [x, values, bias], dtype)


@pytest.mark.parametrize("layout_kind", ["channels_last", "sliced", "transposed-hw", "expanded-batch"])
def test_conv_unusual_inputs(layout_kind, force_backend):
    force_backend("cpu")
    layout = _layout((24, 9 * 20), (1, 1), "empty-rows-cols")
    values, bias = torch.randn(layout.nnz, 1, 1), torch.randn(24)
    base = torch.randn(5, 20, 9, 11)
    x = {"channels_last": base.to(memory_format=torch.channels_last),
         "sliced": torch.randn(5, 40, 9, 13)[:, ::2, :, 1:12],
         "transposed-hw": torch.randn(5, 20, 11, 9).transpose(2, 3),
         "expanded-batch": base[:1].expand(5, -1, -1, -1)}[layout_kind]
    geom = dict(kernel_size=3, padding=1, stride=(1, 2))
    _compare(lambda x, v, b: st.ops.bsr_conv2d(x, v, layout, b, **geom),
             lambda x, v, b: reference.bsr_conv2d(x, v, layout, b, **geom), [x, values, bias], torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=_ids)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_wide_batches_match_reference(stride, memory_format, dtype, force_backend):
    """Batches and channel counts beyond a vector block in both directions (17 samples, 19 and 20
    channels: whole blocks and leftover strips), so that packing and the stores move blocks
    through vector registers, in both memory formats and with strided (padded-pixel) layouts."""
    force_backend("cpu")
    layout = _layout((20, 9 * 19), (1, 1), "empty-rows-cols")
    values, bias = torch.randn(layout.nnz, 1, 1, dtype=dtype), torch.randn(20, dtype=dtype)
    x = torch.randn(17, 19, 6, 9, dtype=dtype).contiguous(memory_format=memory_format)
    geom = dict(kernel_size=3, padding=1, stride=stride)
    _compare(lambda x, v, b: st.ops.bsr_conv2d(x, v, layout, b, **geom),
             lambda x, v, b: reference.bsr_conv2d(x, v, layout, b, **geom), [x, values, bias], dtype)


def test_linear_non_contiguous_input(force_backend):
    force_backend("cpu")
    layout = _layout((24, 40), (1, 1), "empty-rows-cols")
    x = torch.randn(40, 33).t()
    _compare(lambda x, v: st.ops.bsr_linear(x, v, layout), lambda x, v: reference.bsr_linear(x, v, layout),
             [x, torch.randn(layout.nnz, 1, 1)], torch.float32)


@pytest.mark.parametrize("block", [(1, 1), (2, 4)], ids=_ids)
def test_kernel_gradcheck_float64(block, force_backend):
    force_backend("cpu")
    layout = _layout((4 * block[0], 9 * 3 * block[1]), block, "empty-rows-cols")
    x = torch.randn(3, 3 * block[1], 5, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(layout.nnz, *block, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4 * block[0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, v, b: st.ops.bsr_conv2d(x, v, layout, b, kernel_size=3, padding=1, stride=(2, 1)), (x, v, b))
    xl = torch.randn(6, 9 * 3 * block[1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, v, b: st.ops.bsr_linear(x, v, layout, b), (xl, v, b))


def test_reference_gradcheck_float64_unstructured():
    layout = _layout((6, 9 * 3), (1, 1), "empty-rows-cols")
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(layout.nnz, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, v: reference.bsr_conv2d(x, v, layout, kernel_size=3, padding=1),
                                    (x, v))


def test_opcheck_unstructured():
    layout = _layout((24, 9 * 16), (1, 1), "empty-rows-cols")
    x, v, b = torch.randn(3, 16, 7, 6), torch.randn(layout.nnz, 1, 1), torch.randn(24)
    index = (layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm)
    torch.library.opcheck(torch.ops.suptickets.bsr_conv2d.default,
                          (x.requires_grad_(), v.requires_grad_(), *index, b.requires_grad_(), 24, [3, 3], [1, 1],
                           [1, 1], [1, 1]))
    lin = _layout((24, 40), (1, 1), "empty-rows-cols")
    torch.library.opcheck(torch.ops.suptickets.bsr_linear.default,
                          (torch.randn(9, 40, requires_grad=True), torch.randn(lin.nnz, 1, 1, requires_grad=True),
                           lin.rows, lin.cols, lin.row_ptr, lin.col_ptr, lin.col_perm, torch.randn(24), 24))


@pytest.mark.parametrize("op", ["linear", "conv-stride1", "conv-stride2"])
def test_results_do_not_depend_on_the_thread_count(op, force_backend):
    """Every output element and every dvalues sum is computed by one thread in a fixed order."""
    force_backend("cpu")
    torch.manual_seed(0)
    if op == "linear":
        layout = _layout((200, 300), (1, 1), "empty-rows-cols")
        x = torch.randn(513, 300)
        fn = lambda x, v, b: st.ops.bsr_linear(x, v, layout, b)  # noqa: E731
    else:
        layout = _layout((40, 9 * 24), (1, 1), "empty-rows-cols")
        x = torch.randn(19, 24, 12, 10)
        stride = 1 if op == "conv-stride1" else 2
        fn = lambda x, v, b: st.ops.bsr_conv2d(x, v, layout, b, kernel_size=3, padding=1, stride=stride)  # noqa: E731
    values, bias = torch.randn(layout.nnz, 1, 1), torch.randn(layout.shape[0])
    threads, results = torch.get_num_threads(), []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            xs, vs, bs = (t.clone().requires_grad_() for t in (x, values, bias))
            y = fn(xs, vs, bs)
            y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(2)))
            results.append([y.detach(), xs.grad, vs.grad, bs.grad])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_bad_input_keeps_its_clear_errors(force_backend):
    force_backend("cpu")
    layout = _layout((8, 12), (1, 1), "full")
    v = torch.randn(layout.nnz, 1, 1)
    with pytest.raises(ValueError, match="in_features|features|12"):
        st.ops.bsr_linear(torch.randn(3, 11), v, layout)
    with pytest.raises(TypeError, match="dtype|float"):
        st.ops.bsr_linear(torch.randn(3, 12, dtype=torch.float64), v, layout)
    bad_cols = layout.cols.clone()
    bad_cols[0] = 99
    with pytest.raises((ValueError, RuntimeError), match="block|col"):
        torch.ops.suptickets.bsr_linear(torch.randn(3, 12), v, layout.rows, bad_cols, layout.row_ptr,
                                        layout.col_ptr, layout.col_perm, None, 8)
