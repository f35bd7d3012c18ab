"""The Triton kernels of bsr_linear against the reference (Triton's interpreter on CPU without a
GPU), and the compile check of every Triton kernel for sm_90."""
import os
import subprocess
import sys

import pytest
import torch

import suptickets as st
from suptickets.ops import _triton, reference

pytestmark = pytest.mark.skipif(not _triton.available, reason=f"Triton is not installed: {_triton.load_error}")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: {}, torch.float16: {"rtol": 2e-2, "atol": 2e-2}, torch.bfloat16: {"rtol": 5e-2, "atol": 5e-2}}


@pytest.fixture(autouse=True)
def _triton_backend(monkeypatch):
    monkeypatch.setenv("SUPTICKETS_BACKEND", "triton")
    monkeypatch.setenv("SUPTICKETS_FP32_PRECISION", "ieee")


def layouts(shape, block):
    grid = (shape[0] // block[0], shape[1] // block[1])
    full = torch.ones(grid, dtype=torch.bool)
    one = torch.zeros(grid, dtype=torch.bool)
    one[grid[0] - 1, 0] = True
    holes = torch.rand(grid, generator=torch.Generator().manual_seed(1)) < 0.5
    holes[0] = False  # an empty block-row
    holes[:, -1] = False  # an empty block-column
    holes[-1, 0] = True
    return {"full": full, "one block": one, "empty row and column": holes}


CASES = [((64, 96), (16, 32)), ((32, 64), (32, 16)), ((64, 64), (32, 32)), ((48, 32), (16, 16))]


def run_both(x, values, layout, bias):
    """Forward and backward of the Triton op and of the reference on the same inputs."""
    out = []
    for fn in (st.ops.bsr_linear, reference.bsr_linear):
        leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, values, bias)]
        y = fn(leaves[0], leaves[1], layout, leaves[2])
        g = torch.linspace(-1, 1, y.numel(), dtype=torch.float32).reshape(y.shape).to(y)
        y.backward(g)
        out.append((y.detach(), *[t.grad for t in leaves if t is not None]))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,block", CASES)
def test_matches_the_reference(shape, block, dtype):
    if dtype == torch.bfloat16 and _triton.interpreting():
        pytest.skip("Triton's interpreter computes bf16 tl.dot wrongly (upstream: bf16 unsupported there)")
    g = torch.Generator().manual_seed(0)
    for name, mask in layouts(shape, block).items():
        layout = st.BlockLayout.from_mask(mask, block, shape).to(DEVICE)
        values = torch.randn(layout.nnz, *block, generator=g).to(DEVICE, dtype)
        x = torch.randn(3, 5, shape[1], generator=g).to(DEVICE, dtype)
        bias = torch.randn(shape[0], generator=g).to(DEVICE, dtype)
        if dtype != torch.float32:  # the reference in float32 on the same rounded inputs
            got = run_both(x, values, layout, bias)[0]
            want = run_both(x.float(), values.float(), layout, bias.float())[1]
        else:
            got, want = run_both(x, values, layout, bias)
        for a, b in zip(got, want):
            torch.testing.assert_close(a.float(), b.float(), **TOL[dtype], msg=lambda m: f"{name}: {m}")


def test_non_contiguous_input_and_no_bias():
    layout = st.BlockLayout.random((64, 32), (16, 16), 3).to(DEVICE)
    values = torch.randn(layout.nnz, 16, 16, device=DEVICE)
    x = torch.randn(32, 10, device=DEVICE).t()  # [10, 32], strided
    assert not x.is_contiguous()
    got, want = run_both(x, values, layout, None)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_small_blocks_are_refused_by_the_forced_backend():
    layout = st.BlockLayout.random((32, 32), (8, 8), 3)
    with pytest.raises(RuntimeError, match=r"powers of two >= 16"):
        st.ops.bsr_linear(torch.randn(4, 32), torch.randn(3, 8, 8), layout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_grad_values_split_over_rows(dtype):
    from suptickets_kernels.bsr_matmul import grad_values

    layout = st.BlockLayout.random((64, 32), (16, 16), 4).to(DEVICE)
    dy = torch.randn(50, 64, device=DEVICE).to(dtype)
    x = torch.randn(50, 32, device=DEVICE).to(dtype)
    values = torch.empty(4, 16, 16, device=DEVICE, dtype=dtype)
    got = grad_values(dy, x, values, layout.rows, layout.cols, "ieee", parts=3)
    want = reference.block_values(dy.float().t() @ x.float(), layout)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, **TOL[dtype])


def test_split_parts():
    from suptickets_kernels.bsr_matmul import split_parts

    assert split_parts(8192, 10_000) == 1  # enough blocks: one part each
    assert split_parts(65536, 40) == 13  # 4 * 132 // 40
    assert split_parts(2048, 40) == 2  # parts of at least 1024 rows
    assert split_parts(100_000, 1) == 16


@pytest.mark.skipif(_triton.interpreting() is False and torch.cuda.is_available(), reason="checked on the GPU")
def test_every_kernel_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    proc = subprocess.run([sys.executable, "-m", "suptickets_kernels.compile_check", "--arch", "90"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("sm_90 cubin") == 9, proc.stdout
