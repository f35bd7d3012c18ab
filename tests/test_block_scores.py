"""block_scores and the fused gradient score: C++ kernels against ops/reference.py and
against the block norms of the dense dY^T X computed independently."""
import pytest
import torch
import torch.nn.functional as F

import suptickets as st
from suptickets.ops import reference

from helpers import REDUCED, tolerances

DTYPES = [torch.float32, torch.float64]
KINDS = ["l1", "l2"]


def _ids(v):
    if isinstance(v, tuple):
        return "x".join(map(str, v))
    return str(v).replace("torch.", "")


def block_norms_by_loop(dense, block, kind):
    """Block norms of a dense matrix, one block at a time (independent of the reference)."""
    R, C = dense.shape
    br, bc = block
    out = torch.empty(R // br, C // bc, dtype=dense.dtype)
    for i in range(R // br):
        for j in range(C // bc):
            b = dense[i * br:(i + 1) * br, j * bc:(j + 1) * bc]
            out[i, j] = b.abs().sum() if kind == "l1" else b.square().sum().sqrt()
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("block", [(1, 1), (4, 8), (16, 16), (32, 32)], ids=_ids)
def test_block_scores_matches_reference(block, dtype, kind):
    values = torch.randn(37, *block, dtype=dtype)
    got = st.ops.block_scores(values, kind)
    assert got.dtype == dtype and got.shape == (37,)
    torch.testing.assert_close(got, reference.block_scores(values, kind), **tolerances(dtype))
    expected = torch.stack([v.abs().sum() if kind == "l1" else v.norm() for v in values])
    torch.testing.assert_close(got, expected, **tolerances(dtype))


def test_block_scores_non_contiguous_and_empty():
    base = torch.randn(8, 16, 20)
    values = base.transpose(1, 2)[:, :16, :8]  # [8, 16, 8], not contiguous
    torch.testing.assert_close(st.ops.block_scores(values), reference.block_scores(values))
    assert st.ops.block_scores(torch.randn(0, 4, 4)).shape == (0,)


def test_block_scores_errors():
    with pytest.raises(ValueError, match="kind"):
        st.ops.block_scores(torch.randn(3, 4, 4), "l3")
    with pytest.raises(ValueError, match=r"\[nnz, br, bc\]"):
        st.ops.block_scores(torch.randn(3, 4))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("block", [(1, 1), (4, 4), (8, 16), (32, 32)], ids=_ids)
def test_linear_grad_scores_equal_block_norms_of_dense_gradient(block, dtype, kind):
    br, bc = block
    R, C = 4 * max(br, 8), 3 * max(bc, 8)
    x = torch.randn(5, 7, C, dtype=dtype)
    g = torch.randn(5, 7, R, dtype=dtype)
    dense = g.reshape(-1, R).T @ x.reshape(-1, C)
    got = st.ops.linear_grad_scores(x, g, block, kind)
    assert got.shape == (R // br, C // bc)
    tol = REDUCED if dtype == torch.float32 else tolerances(dtype)
    torch.testing.assert_close(got, block_norms_by_loop(dense, block, kind), **tol)
    torch.testing.assert_close(got, reference.linear_grad_scores(x, g, block, kind), **tol)


def test_linear_grad_scores_many_slabs():
    """A layer big enough that the kernel forms dW in several slabs of block-rows."""
    R, C = 512, 4096
    x, g = torch.randn(16, C), torch.randn(16, R)
    got = st.ops.linear_grad_scores(x, g, (32, 32), "l2")
    torch.testing.assert_close(got, reference.block_norms(g.T @ x, (32, 32), "l2"), **REDUCED)


CONVS = [  # (in, out, H, W, kernel, stride, padding, dilation)
    (8, 16, 6, 6, 3, 1, 1, 1),
    (16, 8, 7, 5, 3, 2, 1, 1),
    (8, 8, 9, 9, 3, 1, 2, 2),
    (16, 16, 5, 5, 1, 1, 0, 1),
    (16, 16, 6, 6, 1, 2, 0, 1),
    (8, 16, 6, 7, (1, 3), (2, 1), (0, 1), 1),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("conv", CONVS, ids=[f"conv{i}" for i in range(len(CONVS))])
def test_conv2d_grad_scores_equal_block_norms_of_dense_gradient(conv, dtype, kind):
    cin, cout, H, W, k, s, p, d = conv
    x = torch.randn(3, cin, H, W, dtype=dtype, requires_grad=True)
    weight = torch.randn(cout, cin, *((k, k) if isinstance(k, int) else k), dtype=dtype, requires_grad=True)
    y = F.conv2d(x, weight, None, s, p, d)
    g = torch.randn_like(y)
    y.backward(g)
    dense = weight.grad.permute(0, 2, 3, 1).reshape(cout, -1)  # autograd's dW, in the 2-D view
    for block in [(4, 4), (8, 8), (1, 1)]:
        got = st.ops.conv2d_grad_scores(x.detach(), g, block, kernel_size=k, stride=s, padding=p, dilation=d,
                                        kind=kind)
        tol = REDUCED if dtype == torch.float32 else tolerances(dtype)
        torch.testing.assert_close(got, block_norms_by_loop(dense, block, kind), **tol)


def test_conv2d_grad_scores_channels_last_and_non_contiguous():
    x = torch.randn(2, 16, 8, 8).to(memory_format=torch.channels_last)
    g = torch.randn(2, 24, 8, 16)[..., ::2]  # non-contiguous
    expected = reference.conv2d_grad_scores(x, g, (8, 8), kernel_size=3, padding=1)
    got = st.ops.conv2d_grad_scores(x, g, (8, 8), kernel_size=3, padding=1)
    torch.testing.assert_close(got, expected, **REDUCED)


def test_reference_grad_score_is_block_norm_of_autograd_weight_grad():
    """The reference gradient score is the block norm of autograd's own weight gradient."""
    x = torch.randn(4, 6, dtype=torch.float64)
    w = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    y = x @ w.T
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(reference.linear_grad_scores(x, g, (2, 3)), reference.block_norms(w.grad, (2, 3)))


def test_grad_scores_errors():
    x, g = torch.randn(4, 16), torch.randn(4, 32)
    with pytest.raises(ValueError, match="block_size"):
        st.ops.linear_grad_scores(x, g, (5, 4))
    with pytest.raises(TypeError, match="same dtype"):
        st.ops.linear_grad_scores(x, g.double(), (4, 4))
    with pytest.raises(ValueError, match="leading"):
        st.ops.linear_grad_scores(x, torch.randn(3, 32), (4, 4))
    with pytest.raises(ValueError, match="spatial size"):
        st.ops.conv2d_grad_scores(torch.randn(1, 8, 6, 6), torch.randn(1, 8, 5, 5), (4, 4), kernel_size=3, padding=1)


def test_grad_scores_opcheck():
    x = torch.randn(2, 6, 6, 8)
    g = torch.randn(2, 6, 6, 16)
    torch.library.opcheck(torch.ops.suptickets.grad_scores.default,
                          (x, g, (4, 4), (3, 3), (1, 1), (1, 1), (1, 1), "l1"),
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(torch.ops.suptickets.block_scores.default, (torch.randn(5, 4, 4), "l2"),
                          test_utils=("test_schema", "test_faketensor"))
