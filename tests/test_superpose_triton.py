"""The Triton superposition merge against the reference."""
import pytest
import torch

from suptickets import ops
from suptickets.ops import reference

from helpers import operands
from triton_helpers import (
    DEVICE,
    TOL,
    needs_triton,
    triton_backend,  # noqa: F401  (fixture)
)

pytestmark = [needs_triton, pytest.mark.usefixtures("triton_backend")]
CASES = [((6, 7), (4, 4), 12, 12), ((6, 7), (4, 4), 42, 42), ((6, 7), (4, 4), 1, 1), ((40, 50), (1, 1), 300, 300),
         ((12, 10), (8, 16), 20, 35), ((30, 2), (16, 32), 4, 9)]


@pytest.mark.parametrize("mode", ["cia", "caa", "cima"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", CASES)
def test_matches_the_reference(case, dtype, mode):
    grid, block, na, nt = case
    acc, acc_values, counts, ticket, values = operands(grid, block, na, nt, torch.float32)
    acc_values, values = acc_values.to(DEVICE, dtype), values.to(DEVICE, dtype)
    idx = [t.to(DEVICE) for t in (acc.rows, acc.cols, counts, ticket.rows, ticket.cols)]
    args = (idx[0], idx[1], idx[2], values, idx[3], idx[4], 3, mode, 0.7)
    for kind in ("l1", "l2"):
        got = ops.superpose_union(acc_values, *args, kind)
        want = reference.superpose_union(acc_values.float(), *args[:3], values.float(), *args[4:], kind)
        for g, w in zip(got, want):
            if g.is_floating_point():
                torch.testing.assert_close(g.float(), w, **TOL[dtype])
            else:
                assert torch.equal(g, w)
    if dtype == torch.float32:  # in place, the same blocks kept
        a, b = acc_values.clone(), acc_values.clone()
        got = ops.superpose_(a, *args, "l1")
        want = reference.superpose_(b, *args, "l1")
        for g, w in zip(got, want):
            assert torch.equal(g, w)
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_unsorted_blocks_are_an_error():
    acc, acc_values, counts, ticket, values = operands((6, 7), (4, 4), 10, 10, torch.float32)
    with pytest.raises(ValueError, match="row-major"):
        ops.superpose_union(acc_values, acc.rows.flip(0), acc.cols.flip(0), counts, values, ticket.rows,
                            ticket.cols, 2)
