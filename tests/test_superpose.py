"""The superposition ops: C++ kernels vs the reference, the reference vs a dense computation,
in-place contract, memory and errors."""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import suptickets as st
from suptickets import ops
from suptickets.ops import reference

from helpers import operands

needs_kernels = pytest.mark.skipif(not ops.extension_available, reason="C++ extension not built")
MODES = ("cia", "caa", "cima")


def dense(values, lay):
    return reference.dense_weight(values, lay)


CASES = [  # grid, block, nnz of accumulator and ticket
    ((6, 7), (4, 4), 12, 12),
    ((6, 7), (4, 4), 42, 42),          # full density: the supports are equal
    ((6, 7), (4, 4), 1, 1),            # minimal density
    ((40, 50), (1, 1), 300, 300),       # unstructured
    ((12, 10), (8, 16), 20, 35),        # rectangular blocks, different sizes
    ((64, 96), (2, 2), 3000, 3000),     # parallel parts of the merge
    ((30, 2), (16, 32), 4, 9),          # many empty block-rows
]


@needs_kernels
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_kernels_match_the_reference(case, dtype, mode):
    grid, block, na, nt = case
    acc, acc_values, counts, ticket, values = operands(grid, block, na, nt, dtype)
    args = (acc.rows, acc.cols, counts, values, ticket.rows, ticket.cols, 3, mode, 0.7)
    for kind in ("l1", "l2"):
        got = torch.ops.suptickets.superpose_union.default(acc_values, *args, kind)
        want = reference.superpose_union(acc_values, *args, kind)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
        a, b = acc_values.clone(), acc_values.clone()
        got = torch.ops.suptickets.superpose_.default(a, *args, kind)
        want = reference.superpose_(b, *args, kind)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
        torch.testing.assert_close(a, b)


@needs_kernels
def test_kernels_take_non_contiguous_inputs():
    acc, acc_values, counts, ticket, values = operands((10, 12), (4, 4), 30, 40)
    t_values = values.transpose(1, 2).contiguous().transpose(1, 2)  # same values, strided
    rows = torch.stack([ticket.rows, ticket.rows])[0]
    args = (acc.rows, acc.cols, counts, t_values, rows, ticket.cols, 2, "cia", 0.8, "l1")
    got = ops.superpose_union(acc_values[:, :, :], *args)
    want = reference.superpose_union(acc_values, acc.rows, acc.cols, counts, values, ticket.rows, ticket.cols, 2,
                                     "cia", 0.8, "l1")
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert not t_values.is_contiguous()


@pytest.mark.parametrize("mode", MODES)
def test_reference_union_equals_the_dense_formula(mode):
    acc, acc_values, counts, ticket, values = operands((9, 11), (4, 4), 40, 45, seed=3)
    t, beta = 4, 0.8
    out, rows, cols, new_counts, scores = reference.superpose_union(acc_values, acc.rows, acc.cols, counts, values,
                                                                    ticket.rows, ticket.cols, t, mode, beta)
    union = st.BlockLayout(acc.shape, acc.block_size, rows, cols)
    assert torch.equal(union.mask(), acc.mask() | ticket.mask())
    A, T = dense(acc_values, acc), dense(values, ticket)
    n_grid = torch.zeros(acc.grid, dtype=torch.float64)
    n_grid[acc.rows.long(), acc.cols.long()] = counts.double()
    N = n_grid.repeat_interleave(4, 0).repeat_interleave(4, 1)
    in_t = ticket.element_mask()
    if mode == "cia":
        want = ((t - 1) * A + T) / t
    elif mode == "cima":
        want = beta * A + (1 - beta) * T
    else:
        want = torch.where(in_t, (N * A + T) / (N + 1), A)
    torch.testing.assert_close(dense(out, union), want)
    want_counts = n_grid + ticket.mask().double()
    assert torch.equal(new_counts.double(), want_counts[rows.long(), cols.long()])
    torch.testing.assert_close(scores, out.abs().sum((1, 2)))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_superpose_in_place_keeps_the_strongest_blocks(backend, monkeypatch):
    if backend == "cpu" and not ops.extension_available:
        pytest.skip("C++ extension not built")
    monkeypatch.setenv("SUPTICKETS_BACKEND", backend)
    acc, acc_values, counts, ticket, values = operands((16, 16), (4, 4), 60, 60, torch.float32, seed=5)
    buffer, before = acc_values, acc_values.clone()
    ptr = buffer.data_ptr()
    rows, cols, _ = ops.superpose_(acc_values, acc.rows, acc.cols, counts, values, ticket.rows,
                                            ticket.cols, 2, "cia", kind="l1")
    assert acc_values is buffer and acc_values.data_ptr() == ptr and rows.numel() == 60
    kept = st.BlockLayout(acc.shape, acc.block_size, rows, cols)  # validates row-major order
    M = (dense(before, acc) + dense(values, ticket)) / 2
    norms = M.reshape(16, 4, 16, 4).abs().sum((1, 3)).flatten()
    top = torch.sort(norms, descending=True, stable=True).indices[:60]
    want = torch.zeros(256, dtype=torch.bool)
    want[top] = True
    assert torch.equal(kept.mask().flatten(), want)
    torch.testing.assert_close(dense(acc_values, kept), M * kept.element_mask())


@needs_kernels
def test_superpose_allocates_nothing_dense_sized():
    grid, block = (64, 64), (32, 32)  # a 2048 x 2048 weight, 10% dense
    acc, acc_values, counts, ticket, values = operands(grid, block, 410, 410, torch.float32, seed=7)
    dense_bytes = 2048 * 2048 * 4
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        ops.superpose_(acc_values, acc.rows, acc.cols, counts, values, ticket.rows, ticket.cols, 2)
    sizes = [e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0]
    assert sizes, "the profiler recorded no allocation"
    assert max(sizes) < dense_bytes / 2  # the union (<= 2 nnz blocks) is 20% of the dense weight
    assert max(sizes) >= 410 * 32 * 32 * 4  # the union scratch was seen: the check can fail


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_errors(backend, monkeypatch):
    if backend == "cpu" and not ops.extension_available:
        pytest.skip("C++ extension not built")
    monkeypatch.setenv("SUPTICKETS_BACKEND", backend)
    acc, acc_values, counts, ticket, values = operands((6, 7), (4, 4), 10, 10, torch.float32)
    args = [acc_values, acc.rows, acc.cols, counts, values, ticket.rows, ticket.cols]
    with pytest.raises(ValueError, match="mode must be"):
        ops.superpose_union(*args, 2, "mean")
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        ops.superpose_union(*args, 2, "cima", beta=1.0)
    with pytest.raises(ValueError, match="t .* must be >= 2"):
        ops.superpose_union(*args, 1, "cia")
    with pytest.raises(TypeError, match="same dtype"):
        ops.superpose_union(acc_values, acc.rows, acc.cols, counts, values.double(), ticket.rows, ticket.cols, 2)
    with pytest.raises(ValueError, match="same blocks"):
        ops.superpose_union(acc_values, acc.rows, acc.cols, counts, values[:, :2], ticket.rows, ticket.cols, 2)
    with pytest.raises(ValueError, match="acc_counts must be a 1-D int32"):
        ops.superpose_union(acc_values, acc.rows, acc.cols, counts.long(), values, ticket.rows, ticket.cols, 2)
    with pytest.raises(ValueError, match="row-major"):
        ops.superpose_union(acc_values, acc.rows.flip(0), acc.cols.flip(0), counts, values, ticket.rows,
                            ticket.cols, 2)
    with pytest.raises(ValueError, match="contiguous"):
        ops.superpose_(acc_values.transpose(1, 2), *args[1:], 2)


@needs_kernels
def test_opcheck():
    acc, acc_values, counts, ticket, values = operands((6, 7), (4, 4), 12, 15, torch.float32)
    args = (acc.rows, acc.cols, counts, values, ticket.rows, ticket.cols, 3, "caa", 0.8, "l1")
    torch.library.opcheck(torch.ops.suptickets.superpose_union.default, (acc_values, *args))
    torch.library.opcheck(torch.ops.suptickets.superpose_.default, (acc_values.clone(), *args))
