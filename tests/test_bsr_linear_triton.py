"""The Triton kernels of bsr_linear against the reference (Triton's interpreter on CPU without a
GPU), and the compile check of every Triton kernel for sm_90."""
import os
import re
import subprocess
import sys

import pytest
import torch

import suptickets as st
from suptickets.ops import reference

from triton_helpers import (
    DEVICE,
    DTYPES,
    TOL,
    compare,
    masks,
    needs_triton,
    skip_bf16_in_interpreter,
    triton_backend,  # noqa: F401  (fixture)
)

pytestmark = [needs_triton, pytest.mark.usefixtures("triton_backend")]
CASES = [((64, 96), (16, 32)), ((32, 64), (32, 16)), ((64, 64), (32, 32)), ((48, 32), (16, 16))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,block", CASES)
def test_matches_the_reference(shape, block, dtype):
    skip_bf16_in_interpreter(dtype)
    g = torch.Generator().manual_seed(0)
    grid = (shape[0] // block[0], shape[1] // block[1])
    for name, mask in masks(grid).items():
        layout = st.BlockLayout.from_mask(mask, block, shape).to(DEVICE)
        values = torch.randn(layout.nnz, *block, generator=g).to(DEVICE, dtype)
        x = torch.randn(3, 5, shape[1], generator=g).to(DEVICE, dtype)
        bias = torch.randn(shape[0], generator=g).to(DEVICE, dtype)
        compare(lambda x, v, b: st.ops.bsr_linear(x, v, layout, b),
                lambda x, v, b: reference.bsr_linear(x, v, layout, b), [x, values, bias], dtype, name)


def test_non_contiguous_input_and_no_bias():
    layout = st.BlockLayout.random((64, 32), (16, 16), 3).to(DEVICE)
    values = torch.randn(layout.nnz, 16, 16, device=DEVICE)
    x = torch.randn(32, 10, device=DEVICE).t()  # [10, 32], strided
    assert not x.is_contiguous()
    compare(lambda x, v: st.ops.bsr_linear(x, v, layout), lambda x, v: reference.bsr_linear(x, v, layout),
            [x, values], torch.float32)


def test_small_blocks_are_refused_by_the_forced_backend():
    layout = st.BlockLayout.random((32, 32), (8, 8), 3)
    with pytest.raises(RuntimeError, match=r"powers of two >= 16"):
        st.ops.bsr_linear(torch.randn(4, 32), torch.randn(3, 8, 8), layout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_grad_values_split_over_rows(dtype):
    from suptickets_kernels.bsr_linear import grad_values

    layout = st.BlockLayout.random((64, 32), (16, 16), 4).to(DEVICE)
    dy = torch.randn(50, 64, device=DEVICE).to(dtype)
    x = torch.randn(50, 32, device=DEVICE).to(dtype)
    values = torch.empty(4, 16, 16, device=DEVICE, dtype=dtype)
    got = grad_values(dy, x, values, layout.rows, layout.cols, "ieee", parts=3)
    want = layout.block_values(dy.float().t() @ x.float())
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, **TOL[dtype])


def test_split_parts():
    from suptickets_kernels.tiles import split_parts

    assert split_parts(8192, 10_000) == 1  # enough blocks: one part each
    assert split_parts(65536, 40) == 13  # 4 * 132 // 40
    assert split_parts(2048, 40) == 2  # parts of at least 1024 rows
    assert split_parts(100_000, 1) == 16


@pytest.mark.slow
def test_every_kernel_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    proc = subprocess.run([sys.executable, "-m", "suptickets_kernels.compile_check", "--arch", "90", "--fit"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("sm_90 cubin") == 30, proc.stdout  # 10 kernels x bf16, fp16, fp32
    fits = [line for line in proc.stdout.splitlines() if "shared memory per config" in line]
    assert len(fits) == 16, proc.stdout  # every autotuned kernel fits (fp32 128x128) and compiles (bf16 64x64)
    # compiled as specialised at run time: the bf16 products' loads are pipelined (at least two
    # buffers of a 128-row tile and a 64x64 block), not one synchronous load per iteration
    one_stage = (128 * 64 + 64 * 64) * 2
    for kernel in ("bsr_linear.forward", "bsr_linear.grad_input", "bsr_conv2d.forward", "bsr_conv2d.grad_input"):
        line = next(f for f in fits if f.startswith(f"{kernel}[bf16] block 64"))
        shared = re.search(r"per config \[(\d+),", line)
        assert int(shared[1]) >= 2 * one_stage, line
    # registers were read from every cubin, and (else the check fails) no bf16 64x64 configuration spills
    bf16 = [f for f in fits if "[bf16] block 64" in f]
    assert len(bf16) == 8 and all(re.search(r"spilled bytes \[0(, 0)*\]", f) for f in bf16), bf16
