"""The Triton block scores and fused gradient scores against the reference."""
import pytest
import torch

import suptickets as st
from suptickets.ops import reference

from triton_helpers import (
    DEVICE,
    TOL,
    needs_triton,
    skip_bf16_in_interpreter,
    triton_backend,  # noqa: F401  (fixture)
)

pytestmark = [needs_triton, pytest.mark.usefixtures("triton_backend")]


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize("block", [(1, 1), (4, 8), (16, 16), (32, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_block_scores(block, kind, dtype):
    values = torch.randn(7, *block, device=DEVICE).to(dtype)
    got = st.ops.block_scores(values, kind)
    assert got.dtype == torch.float32 and got.shape == (7,)  # scores are float32 (ops/precision.py)
    torch.testing.assert_close(got.float(), reference.block_scores(values.float(), kind), **TOL[dtype])
    assert st.ops.block_scores(values[:0], kind).shape == (0,)


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_linear_grad_scores(kind, dtype):
    skip_bf16_in_interpreter(dtype)
    x = torch.randn(2, 25, 64, device=DEVICE).to(dtype)
    dy = torch.randn(2, 25, 32, device=DEVICE).to(dtype)
    for block in ((16, 16), (32, 16), (16, 32)):
        got = st.ops.linear_grad_scores(x, dy, block, kind)
        want = reference.linear_grad_scores(x.float(), dy.float(), block, kind)
        assert got.shape == want.shape
        torch.testing.assert_close(got.float(), want, **TOL[dtype])


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize("geometry", [(3, 1, 1, 1), (3, 2, 1, 1), (1, 2, 0, 1), (3, 1, 2, 2)])
def test_conv2d_grad_scores(geometry, kind):
    k, s, p, d = geometry
    x = torch.randn(2, 32, 7, 6, device=DEVICE)
    ho, wo = (7 + 2 * p - d * (k - 1) - 1) // s + 1, (6 + 2 * p - d * (k - 1) - 1) // s + 1
    dy = torch.randn(2, 32, ho, wo, device=DEVICE)
    for block in ((16, 16), (32, 16), (16, 32)):
        got = st.ops.conv2d_grad_scores(x, dy, block, kernel_size=k, stride=s, padding=p, dilation=d, kind=kind)
        want = reference.conv2d_grad_scores(x, dy, block, kernel_size=k, stride=s, padding=p, dilation=d, kind=kind)
        torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_gradient_scores_need_blocks_of_16():
    with pytest.raises(RuntimeError, match="powers of two >= 16"):
        st.ops.linear_grad_scores(torch.randn(4, 16), torch.randn(4, 16), (8, 8))
