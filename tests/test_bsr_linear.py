"""bsr_linear: the C++ kernels (forward, dX, dvalues) against ops/reference.py."""
import pytest
import torch
import torch.nn.functional as F

import suptickets as st
from suptickets.ops import reference

from helpers import TOPOLOGIES, dense_from_element_mask, kernel_cases, make_layout, oracle_dtype, tolerances

BLOCKS = [(1, 1), (4, 4), (16, 16), (32, 32), (16, 32)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
REFERENCE_DTYPES = [torch.float32, torch.float64]


def _ids(v):
    if isinstance(v, tuple):
        return f"{v[0]}x{v[1]}"
    return str(v).replace("torch.", "")


def run_both(x, values, layout, bias, grad):
    """Output and (dx, dvalues, dbias) of the public op and of the reference (in float64 for a
    low-precision dtype, on the same inputs), the op's in the reference's dtype."""
    results = []
    oracle = oracle_dtype(x.dtype)
    for fn, dtype in ((st.ops.bsr_linear, x.dtype), (reference.bsr_linear, oracle)):
        xs = x.detach().to(dtype).requires_grad_()
        vs = values.detach().to(dtype).requires_grad_()
        bs = None if bias is None else bias.detach().to(dtype).requires_grad_()
        y = fn(xs, vs, layout, bs)
        y.backward(grad.to(dtype))
        results.append(tuple(None if t is None else t.to(oracle)
                             for t in (y.detach(), xs.grad, vs.grad, None if bs is None else bs.grad)))
    return results


def _case(block, topology, dtype):
    br, bc = block
    R, C = (4 * max(br, 4), 3 * max(bc, 4)) if block != (1, 1) else (12, 10)
    layout = make_layout((R, C), block, topology)
    return (layout, torch.randn(layout.nnz, br, bc, dtype=dtype), torch.randn(37, C, dtype=dtype),
            torch.randn(R, dtype=dtype), torch.randn(37, R, dtype=dtype))


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("backend, block, dtype", kernel_cases("bsr_linear", BLOCKS, DTYPES))
def test_bsr_linear_matches_reference(backend, block, topology, dtype, force_backend):
    force_backend(backend)
    layout, values, x, bias, grad = _case(block, topology, dtype)
    (y, dx, dv, db), (ry, rdx, rdv, rdb) = run_both(x, values, layout, bias, grad)
    tol = tolerances(dtype)
    torch.testing.assert_close(y, ry, **tol)
    torch.testing.assert_close(dx, rdx, **tol)
    torch.testing.assert_close(dv, rdv, **tol)
    torch.testing.assert_close(db, rdb, **tol)


@pytest.mark.parametrize("dtype", REFERENCE_DTYPES, ids=_ids)
@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("block", BLOCKS, ids=_ids)
def test_reference_bsr_linear_matches_a_dense_weight(block, topology, dtype):
    """The reference itself against a dense weight built independently (element mask and scatter)."""
    layout, values, x, bias, _ = _case(block, topology, dtype)
    W = dense_from_element_mask(values, layout)
    torch.testing.assert_close(reference.bsr_linear(x, values, layout, bias), F.linear(x, W, bias),
                               **tolerances(dtype))


@pytest.mark.parametrize("case", ["batch-1", "leading-dims", "transposed-input", "sliced-input", "no-bias",
                                  "expanded-grad"])
def test_bsr_linear_unusual_inputs(case):
    layout = make_layout((64, 96), (16, 32), "half")
    values = torch.randn(layout.nnz, 16, 32)
    bias = None if case == "no-bias" else torch.randn(64)
    if case == "batch-1":
        x = torch.randn(1, 96)
    elif case == "leading-dims":
        x = torch.randn(2, 5, 3, 96)
    elif case == "transposed-input":
        x = torch.randn(96, 21).t()
    elif case == "sliced-input":
        x = torch.randn(30, 200)[::2, 7:103]
    else:
        x = torch.randn(9, 96)
    assert case != "transposed-input" or not x.is_contiguous()
    out_shape = (*x.shape[:-1], 64)
    grad = torch.ones(()).expand(out_shape) if case == "expanded-grad" else torch.randn(out_shape)
    (y, dx, dv, db), (ry, rdx, rdv, rdb) = run_both(x, values, layout, bias, grad)
    tol = tolerances(torch.float32)
    assert y.shape == out_shape
    torch.testing.assert_close(y, ry, **tol)
    torch.testing.assert_close(dx, rdx, **tol)
    torch.testing.assert_close(dv, rdv, **tol)
    if bias is not None:
        torch.testing.assert_close(db, rdb, **tol)


def test_bsr_linear_runs_the_cpp_kernel(force_backend):
    force_backend("cpu")  # these check the C++ kernels themselves
    layout = make_layout((32, 32), (16, 16), "half")
    x, v = torch.randn(4, 32, requires_grad=True), torch.randn(layout.nnz, 16, 16, requires_grad=True)
    with torch.profiler.profile() as prof:
        st.ops.bsr_linear(x, v, layout).sum().backward()
    names = {e.key for e in prof.key_averages()}
    assert "suptickets::bsr_linear" in names and "suptickets::bsr_linear_backward" in names


def test_reference_backend_can_be_forced(force_backend):
    force_backend("reference")
    layout = make_layout((32, 32), (16, 16), "half")
    with torch.profiler.profile() as prof:
        st.ops.bsr_linear(torch.randn(4, 32), torch.randn(layout.nnz, 16, 16), layout)
    assert "suptickets::bsr_linear" not in {e.key for e in prof.key_averages()}


def test_unknown_backend_is_an_error(force_backend):
    force_backend("gpu-magic")
    layout = make_layout((32, 32), (16, 16), "half")
    with pytest.raises(ValueError, match="SUPTICKETS_BACKEND"):
        st.ops.bsr_linear(torch.randn(4, 32), torch.randn(layout.nnz, 16, 16), layout)


def test_reference_gradcheck_float64():
    layout = make_layout((8, 12), (4, 4), "empty-row-col")
    x = torch.randn(3, 12, dtype=torch.float64, requires_grad=True)
    v = torch.randn(layout.nnz, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, v, b: reference.bsr_linear(x, v, layout, b), (x, v, b))


def test_kernel_gradcheck_float64():
    layout = make_layout((8, 16), (4, 8), "half")
    x = torch.randn(5, 16, dtype=torch.float64, requires_grad=True)
    v = torch.randn(layout.nnz, 4, 8, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, v, b: st.ops.bsr_linear(x, v, layout, b), (x, v, b))


@pytest.mark.parametrize("bias", [True, False])
def test_bsr_linear_opcheck(bias):
    layout = make_layout((32, 64), (16, 32), "half")
    args = (torch.randn(6, 64, requires_grad=True), torch.randn(layout.nnz, 16, 32, requires_grad=True),
            layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm,
            torch.randn(32, requires_grad=True) if bias else None, 32)
    torch.library.opcheck(torch.ops.suptickets.bsr_linear.default, args)


def test_bad_operands_are_clear_errors():
    layout = make_layout((32, 32), (16, 16), "half")
    v = torch.randn(layout.nnz, 16, 16)
    with pytest.raises(TypeError, match="dtype"):
        st.ops.bsr_linear(torch.randn(2, 32, dtype=torch.float64), v, layout)
    with pytest.raises(ValueError, match="features"):
        st.ops.bsr_linear(torch.randn(2, 31), v, layout)
    with pytest.raises(ValueError, match=r"\[nnz, br, bc\]"):
        st.ops.bsr_linear(torch.randn(2, 32), v.flatten(1), layout)
    with pytest.raises(TypeError, match="bias"):
        st.ops.bsr_linear(torch.randn(2, 32), v, layout, torch.randn(32, dtype=torch.float64))
    # the C++ op validates layouts it is handed directly
    bad_cols = layout.cols.clone()
    bad_cols[0] = 99
    with pytest.raises(RuntimeError, match="not a valid block"):
        torch.ops.suptickets.bsr_linear(torch.randn(2, 32), v, layout.rows, bad_cols, layout.row_ptr,
                                        layout.col_ptr, layout.col_perm, None, 32)


def test_other_dtypes_fall_back_to_the_reference():
    layout = make_layout((32, 32), (16, 16), "half")
    x, v = torch.randn(3, 32, dtype=torch.bfloat16), torch.randn(layout.nnz, 16, 16, dtype=torch.bfloat16)
    torch.testing.assert_close(st.ops.bsr_linear(x, v, layout), reference.bsr_linear(x, v, layout))


def test_scratch_buffers_are_reused_and_can_be_released(force_backend):
    force_backend("cpu")  # these check the C++ kernels themselves
    layout = make_layout((64, 64), (16, 16), "half")
    x, v = torch.randn(40, 64), torch.randn(layout.nnz, 16, 16)
    st.ops.release_workspace()
    assert st.ops.workspace_bytes() == 0
    st.ops.bsr_linear(x, v, layout)
    held = st.ops.workspace_bytes()
    assert held >= x.numel() * 4
    st.ops.bsr_linear(x[:20], v, layout)
    assert st.ops.workspace_bytes() == held
    st.ops.release_workspace()
    assert st.ops.workspace_bytes() == 0


@pytest.mark.parametrize("rows", [2, 40], ids=["few-block-rows", "many-block-rows"])
def test_bsr_linear_block_row_counts(rows):
    """dvalues splits the pixel reduction when block-rows are few and not when they are many."""
    layout = make_layout((8 * rows, 64), (8, 16), "half")
    values = torch.randn(layout.nnz, 8, 16)
    x, bias = torch.randn(700, 64), torch.randn(8 * rows)
    grad = torch.randn(700, 8 * rows)
    (y, dx, dv, db), (ry, rdx, rdv, rdb) = run_both(x, values, layout, bias, grad)
    tol = tolerances(torch.float32)
    for a, b in ((y, ry), (dx, rdx), (dv, rdv), (db, rdb)):
        torch.testing.assert_close(a, b, **tol)


def test_freed_large_outputs_are_kept_for_reuse_and_released_on_request(force_backend):
    force_backend("cpu")  # these check the C++ kernels themselves
    layout = make_layout((512, 64), (16, 16), "half")
    x, v = torch.randn(1024, 64), torch.randn(layout.nnz, 16, 16)
    st.ops.release_workspace()
    y = st.ops.bsr_linear(x, v, layout)  # 2 MB output
    held = st.ops.workspace_bytes()
    address = y.data_ptr()
    del y
    assert st.ops.workspace_bytes() >= held + 2 * 2**20  # the output's memory went back to the cache
    y = st.ops.bsr_linear(x, v, layout)
    assert y.data_ptr() == address  # and is handed out again
    torch.testing.assert_close(y, reference.bsr_linear(x, v, layout), **tolerances(torch.float32))
    del y
    st.ops.release_workspace()
    assert st.ops.workspace_bytes() == 0
