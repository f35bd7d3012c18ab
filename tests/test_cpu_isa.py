"""Every instruction-set path of the CPU tiles and element kernels (AVX-512, AVX2, portable) against the reference.

The path is chosen once per process, so each runs in a subprocess with SUPTICKETS_CPU_ISA
capping it; a path the CPU lacks falls back to the best one it has (said in the output).
"""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import sys, torch
sys.path.insert(0, {tests!r})
import suptickets as st
from suptickets.ops import reference
from helpers import make_layout
torch.manual_seed(0)
worst = 0.0
for block in [(1, 1), (2, 2), (1, 8), (8, 8), (16, 16), (32, 32), (16, 32), (64, 64), (8, 24)]:
    layout = make_layout((2 * block[0], 9 * 2 * block[1]), block, "half")
    v = torch.randn(layout.nnz, *block, requires_grad=True)
    x = torch.randn(3, 2 * block[1], 6, 5, requires_grad=True)
    for fn in (st.ops.bsr_conv2d, reference.bsr_conv2d):
        y = fn(x, v, layout, kernel_size=3, padding=1)
        g = torch.autograd.grad(y, (x, v), torch.ones_like(y))
        if fn is st.ops.bsr_conv2d:
            out = [y] + list(g)
        else:
            worst = max(worst, *[(a - b).abs().max().item() for a, b in zip(out, [y] + list(g))])
for block in [(1, 1), (4, 2)]:  # rows of 300 samples: every vector count of the element kernels
    layout = make_layout((8 * block[0], 40 * block[1]), block, "sparse")
    v = torch.randn(layout.nnz, *block, requires_grad=True)
    x = torch.randn(300, 40 * block[1], requires_grad=True)
    b = torch.randn(8 * block[0], requires_grad=True)
    out = []
    for fn in (st.ops.bsr_linear, reference.bsr_linear):
        y = fn(x, v, layout, b)
        out.append([y] + list(torch.autograd.grad(y, (x, v, b), torch.ones_like(y))))
    worst = max(worst, *[(p - q).abs().max().item() for p, q in zip(*out)])
# bf16 activations and weights (every vector count, odd and even): against float64 on the same rounded
# operands, relative to the largest magnitude of each result
worst_bf16 = 0.0
for block in [(1, 1), (4, 2)]:
    layout = make_layout((8 * block[0], 40 * block[1]), block, "sparse")
    ops = [torch.randn(layout.nnz, *block).bfloat16(), torch.randn(300, 40 * block[1]).bfloat16(),
           torch.randn(8 * block[0]).bfloat16()]
    out = []
    for fn, dt in ((st.ops.bsr_linear, torch.bfloat16), (reference.bsr_linear, torch.float64)):
        v, x, b = (t.to(dt).requires_grad_() for t in ops)
        y = fn(x, v, layout, b)
        out.append([t.double() for t in [y] + list(torch.autograd.grad(y, (x, v, b), torch.ones_like(y)))])
    worst_bf16 = max(worst_bf16, *[((p - q).abs().max() / q.abs().max()).item() for p, q in zip(*out)])
print(st.ops.simd_level(), worst, worst_bf16)
"""


@pytest.mark.parametrize("isa", ["avx512", "avx2", "generic"])
def test_cpu_tiles_of_each_instruction_set_match_the_reference(isa):
    env = dict(os.environ, SUPTICKETS_CPU_ISA=isa)
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=os.path.dirname(__file__))], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    level, worst, worst_bf16 = out[-3], float(out[-2]), float(out[-1])
    assert level in ("avx512", "avx2", "generic")
    if isa == "generic":
        assert level == "generic"
    assert worst < 1e-3
    assert worst_bf16 < 1e-2  # the bf16 rounding of the results (2^-8) and nothing more
