"""What the Triton kernel tests share: the backend forced to Triton (its interpreter without a
GPU), layouts with the edge cases, tolerances, and forward + backward of two implementations."""
import pytest
import torch

from suptickets.ops import _triton

from helpers import TOLERANCES

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = TOLERANCES
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
needs_triton = pytest.mark.skipif(not _triton.available, reason=f"Triton kernels unavailable: {_triton.load_error}")


@pytest.fixture
def triton_backend(monkeypatch):
    monkeypatch.setenv("SUPTICKETS_BACKEND", "triton")
    monkeypatch.setenv("SUPTICKETS_FP32_PRECISION", "ieee")


def skip_bf16_in_interpreter(dtype):
    if dtype == torch.bfloat16 and _triton.interpreting():
        pytest.skip("Triton's interpreter computes bf16 tl.dot wrongly (upstream: bf16 unsupported there)")


def masks(grid):
    """Block grids: full, a single block, and one with an empty block-row and block-column."""
    full = torch.ones(grid, dtype=torch.bool)
    one = torch.zeros(grid, dtype=torch.bool)
    one[grid[0] - 1, 0] = True
    holes = torch.rand(grid, generator=torch.Generator().manual_seed(1)) < 0.5
    holes[0] = False
    holes[:, -1] = False
    holes[-1, 0] = True
    return {"full": full, "one block": one, "empty row and column": holes}


def forward_backward(fn, inputs):
    """``fn(*inputs)`` and the gradients of every tensor input (a fixed, non-zero output gradient)."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in inputs]
    y = fn(*leaves)
    g = torch.linspace(-1, 1, y.numel(), dtype=torch.float32).reshape(y.shape).to(y)
    y.backward(g)
    return [y.detach(), *[t.grad for t in leaves if t is not None]]


def compare(fn, ref, inputs, dtype, what=""):
    """Triton ``fn`` against ``ref``; low-precision inputs against ``ref`` in float32 on the same
    rounded values."""
    got = forward_backward(fn, inputs)
    if dtype != torch.float32:
        inputs = [t.float() if t is not None else None for t in inputs]
    want = forward_backward(ref, inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.float(), b.float(), **TOL[dtype], msg=lambda m: f"{what}: {m}")
