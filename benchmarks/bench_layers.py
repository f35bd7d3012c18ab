"""Dense nn.Linear / nn.Conv2d against SparseLinear / SparseConv2d on this CPU.

    python benchmarks/bench_layers.py            # the full grid (a few minutes)
    python benchmarks/bench_layers.py --quick    # one density and block per layer (< 1 minute)

Prints one table: per layer shape, density and block, the forward and forward+backward
times of the dense and the sparse layer (medians, same run), speedup = dense / sparse,
eta = useful FLOP/s of the sparse layer / FLOP/s of the dense one (DESIGN.md,
"Performance accounting"; eta = speedup x density), the peak memory one forward+backward
adds to the process (all allocations, the sparse layer's packing buffers and cached
outputs released first so they count), and the layer's parameter memory relative to the
dense layer's.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suptickets as st  # noqa: E402
from _measure import markdown_table, median_ms, peak_mb  # noqa: E402

DENSITIES = (0.2, 0.1, 0.05)
BLOCKS = (16, 32, 64)


def linear_case(batch, n_in, n_out):
    return {
        "name": f"Linear {n_in}->{n_out}, batch {batch}",
        "dense": lambda: nn.Linear(n_in, n_out),
        "sparse": lambda d, b: st.SparseLinear(n_in, n_out, density=d, block_size=(b, b)),
        "input": (batch, n_in),
    }


def conv_case(batch, channels_in, channels_out, size):
    return {
        "name": f"Conv3x3 {channels_in}->{channels_out} {size}x{size}, batch {batch}",
        "dense": lambda: nn.Conv2d(channels_in, channels_out, 3, padding=1),
        "sparse": lambda d, b: st.SparseConv2d(channels_in, channels_out, 3, padding=1, density=d,
                                               block_size=(b, b)),
        "input": (batch, channels_in, size, size),
    }


CASES = [
    linear_case(4096, 1024, 4096),
    linear_case(4096, 4096, 4096),
    conv_case(64, 256, 256, 16),
    conv_case(64, 128, 128, 32),
]


def measure(layer, x, grad, repeats):
    """(forward ms, forward+backward ms, peak MB of forward+backward, parameter MB)."""
    def forward():
        with torch.no_grad():
            layer(x)

    def clear():
        layer.zero_grad(set_to_none=True)
        x.grad = None

    def step():
        layer(x).backward(grad)

    fwd = median_ms(forward, repeats)
    total = median_ms(step, repeats, setup=clear)
    st.ops.release_workspace()  # so that the peak counts the packing buffers and outputs too
    peak = peak_mb(step, setup=clear)
    params = sum(p.numel() * p.element_size() for p in layer.parameters()) / 2**20
    return fwd, total, peak, params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="density 0.1, block 32 only; fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    densities, blocks = ((0.1,), (32,)) if args.quick else (DENSITIES, BLOCKS)
    cases = [CASES[0], CASES[2]] if args.quick else CASES
    torch.manual_seed(0)
    print(f"# suptickets {st.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU kernels: {st.ops.simd_level()}, {platform.processor() or platform.machine()}, float32")
    header = ("layer", "density", "block", "dense fwd ms", "sparse fwd ms", "fwd speedup", "dense f+b ms",
              "sparse f+b ms", "f+b speedup", "f+b eta", "dense peak MB", "sparse peak MB", "param mem")
    rows = []
    for case in cases:
        x = torch.randn(*case["input"], requires_grad=True)
        dense = case["dense"]()
        grad = torch.randn_like(dense(x).detach())
        d_fwd, d_total, d_peak, d_params = measure(dense, x, grad, repeats)
        for density in densities:
            for block in blocks:
                sparse = case["sparse"](density, block)
                s_fwd, s_total, s_peak, s_params = measure(sparse, x, grad, repeats)
                speedup = d_total / s_total
                rows.append((case["name"], f"{sparse.density:.3f}", f"{block}x{block}", f"{d_fwd:.1f}",
                             f"{s_fwd:.1f}", f"{d_fwd / s_fwd:.2f}x", f"{d_total:.1f}", f"{s_total:.1f}",
                             f"{speedup:.2f}x", f"{speedup * sparse.density:.2f}", f"{d_peak:.0f}",
                             f"{s_peak:.0f}", f"{s_params / d_params:.3f}x"))
                print(f"  {case['name']}, density {density}, block {block}: f+b {speedup:.2f}x", file=sys.stderr,
                      flush=True)
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
