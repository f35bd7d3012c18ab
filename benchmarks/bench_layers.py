"""Dense nn.Linear / nn.Conv2d against SparseLinear / SparseConv2d on this CPU.

    python benchmarks/bench_layers.py            # the full grid (a few minutes)
    python benchmarks/bench_layers.py --quick    # one density and block per layer (< 1 minute)
    python benchmarks/bench_layers.py --strided  # ResNet-style strided convs, density 0.1, 32x32
    python benchmarks/bench_layers.py --dtype bfloat16   # both layers in bf16 (dense: oneDNN's bf16),
                                                         # and our float32 sparse layer beside them
    python benchmarks/bench_layers.py --parts --cases 0 --blocks 1 --densities 0.1 --dtype bfloat16
        # where the time goes: forward, dX and dW apart (see --help)

Prints one table: per layer shape, density and block, the forward and forward+backward
times of the dense and the sparse layer (medians over rounds that time the two in turn), speedup = dense / sparse,
eta = useful FLOP/s of the sparse layer / FLOP/s of the dense one (DESIGN.md,
"Performance accounting"; eta = speedup x density), the peak memory a first
forward+backward adds to a fresh process (every allocation: outputs, gradients, the
sparse layer's packing buffers), and the layer's parameter memory relative to the
dense layer's.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import subprocess
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suptickets as st  # noqa: E402

from _measure import interleaved_median_ms, markdown_table, peak_mb  # noqa: E402

DENSITIES = (0.2, 0.1, 0.05)
BLOCKS = (16, 32, 64)


def linear_case(batch, n_in, n_out):
    return {
        "name": f"Linear {n_in}->{n_out}, batch {batch}",
        "dense": lambda: nn.Linear(n_in, n_out),
        "sparse": lambda d, b: st.SparseLinear(n_in, n_out, density=d, block_size=(b, b)),
        "input": (batch, n_in),
    }


def conv_case(batch, channels_in, channels_out, size, kernel=3, stride=1):
    padding = kernel // 2
    stride_name = f" stride {stride}" if stride > 1 else ""
    return {
        "name": f"Conv{kernel}x{kernel}{stride_name} {channels_in}->{channels_out} {size}x{size}, batch {batch}",
        "dense": lambda: nn.Conv2d(channels_in, channels_out, kernel, stride=stride, padding=padding),
        "sparse": lambda d, b: st.SparseConv2d(channels_in, channels_out, kernel, stride=stride, padding=padding,
                                               density=d, block_size=(b, b)),
        "input": (batch, channels_in, size, size),
    }


CASES = [
    linear_case(4096, 1024, 4096),
    linear_case(4096, 4096, 4096),
    conv_case(64, 256, 256, 16),
    conv_case(64, 128, 128, 32),
    # --strided: the downsampling convs of a ResNet stage
    conv_case(64, 128, 256, 32, kernel=3, stride=2),
    conv_case(64, 128, 256, 32, kernel=1, stride=2),
]
STRIDED = [4, 5]


def _ints(text):
    return tuple(int(v) for v in text.split(","))


def _floats(text):
    return tuple(float(v) for v in text.split(","))


def make_layer(case, density, block):
    return case["dense"]() if density is None else case["sparse"](density, block)


def measure(calls, repeats):
    """Forward and forward+backward medians (ms) of every ``(layer, x, grad)`` of ``calls``,
    timed in alternation: ([fwd of each], [f+b of each])."""
    def forward(layer, x):
        def run():
            with torch.no_grad():
                layer(x)
        return run

    def clear(layer, x):
        def run():
            layer.zero_grad(set_to_none=True)
            x.grad = None
        return run

    def step(layer, x, grad):
        return lambda: layer(x).backward(grad)

    fwd = interleaved_median_ms([forward(layer, x) for layer, x, _ in calls], repeats)
    total = interleaved_median_ms([step(*call) for call in calls], repeats,
                                  setups=[clear(layer, x) for layer, x, _ in calls])
    return fwd, total


def measure_parts(calls, repeats):
    """Medians (ms) of the three products of every ``(layer, x, grad)`` of ``calls``, timed in
    alternation: ``[(forward, dX, dW) of each]``. forward runs without autograd; dX is a backward
    pass with only the input requiring a gradient, dW one with only the parameters (the bias sum
    included), each after an untimed forward."""
    def forward(layer, x):
        def run():
            with torch.no_grad():
                layer(x)
        return run

    held = [None] * len(calls)

    def prepare(i, layer, x, wants_input):
        def run():
            layer.zero_grad(set_to_none=True)
            x.grad = None
            x.requires_grad_(wants_input)
            for p in layer.parameters():
                p.requires_grad_(not wants_input)
            held[i] = layer(x)
        return run

    def backward(i, grad):
        return lambda: held[i].backward(grad)

    fwd = interleaved_median_ms([forward(layer, x) for layer, x, _ in calls], repeats)
    parts = [fwd]
    for wants_input in (True, False):
        parts.append(interleaved_median_ms([backward(i, grad) for i, (_, _, grad) in enumerate(calls)], repeats,
                                           setups=[prepare(i, layer, x, wants_input)
                                                   for i, (layer, x, _) in enumerate(calls)]))
    for layer, x, _ in calls:
        x.requires_grad_(True)
        for p in layer.parameters():
            p.requires_grad_(True)
    return list(zip(*parts))


def print_parts(cases, densities, blocks, dtype, repeats):
    """The --parts table: forward, dX and dW of the dense float32 layer and of the sparse layer in
    float32 and, for a lower ``dtype``, in that dtype (the dense layer is timed in float32 only: on
    CPUs without native bf16 torch's dense bf16 layers run many times slower than its float32 ones)."""
    header = ("layer", "density", "block", "variant", "fwd ms", "dX ms", "dW ms", "sum ms", "sum speedup")
    rows = []
    for index in cases:
        case = CASES[index]
        x32 = torch.randn(*case["input"], requires_grad=True)
        dense = make_layer(case, None, None)
        grad32 = torch.randn_like(dense(x32).detach())
        for density in densities:
            for block in blocks:
                sparse32 = make_layer(case, density, block)
                calls = [("dense float32", dense, x32, grad32), ("sparse float32", sparse32, x32, grad32)]
                if dtype != torch.float32:
                    name = str(dtype).removeprefix("torch.")
                    calls.append((f"sparse {name}", copy.deepcopy(sparse32).to(dtype),
                                  x32.detach().to(dtype).requires_grad_(), grad32.to(dtype)))
                timed = measure_parts([c[1:] for c in calls], repeats)
                dense_sum = sum(timed[0])
                for (variant, layer, _, _), (f, dx, dw) in zip(calls, timed):
                    sparse = variant.startswith("sparse")
                    rows.append((case["name"], f"{layer.density:.3f}" if sparse else "1", f"{block}x{block}" if sparse
                                 else "-", variant,
                                 f"{f:.1f}", f"{dx:.1f}", f"{dw:.1f}", f"{f + dx + dw:.1f}",
                                 f"{dense_sum / (f + dx + dw):.2f}x"))
                print(f"  {case['name']}, density {density}, block {block}: parts timed", file=sys.stderr, flush=True)
    print(markdown_table(header, rows))


def param_mb(layer) -> float:
    return sum(p.numel() * p.element_size() for p in layer.parameters()) / 2**20


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def peak_in_fresh_process(case_index, density, block, dtype="float32") -> float:
    """Peak memory (MiB) of a first forward+backward, measured in a new process so that no
    allocator reuses memory from earlier measurements (packing buffers and outputs count)."""
    args = [sys.executable, os.path.abspath(__file__), "--peak-of", str(case_index),
            "dense" if density is None else str(density), str(block), "--dtype", dtype]
    return float(subprocess.run(args, check=True, capture_output=True, text=True).stdout.split()[-1])


def print_peak(case_index, density, block, dtype):
    torch.manual_seed(0)
    case = CASES[case_index]
    layer = make_layer(case, None if density == "dense" else float(density), int(block)).to(dtype)
    x = torch.randn(*case["input"], dtype=dtype, requires_grad=True)
    with torch.no_grad():
        grad = torch.randn_like(layer(x))
    print(f"{peak_mb(lambda: layer(x).backward(grad)):.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="density 0.1, block 32 only; fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--strided", action="store_true",
                        help="only the strided (ResNet downsampling) convs, density 0.1, block 32")
    parser.add_argument("--blocks", type=_ints, default=None, help="block sides, e.g. 1,8,32 (1: unstructured)")
    parser.add_argument("--densities", type=_floats, default=None, help="densities, e.g. 0.1,0.05")
    parser.add_argument("--cases", type=_ints, default=None,
                        help="layer indices into CASES (0: Linear 1024->4096, 3: Conv3x3 128->128 32x32, ...)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32",
                        help="of both layers; with bfloat16 our float32 sparse layer is timed beside them")
    parser.add_argument("--parts", action="store_true",
                        help="instead of the main table, time the forward, dX and dW products apart (dense "
                             "float32, sparse float32 and, with --dtype bfloat16, sparse bf16); no peak memory")
    parser.add_argument("--peak-of", nargs=3, metavar=("CASE", "DENSITY", "BLOCK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    dtype = DTYPES[args.dtype]
    if args.peak_of:
        return print_peak(int(args.peak_of[0]), args.peak_of[1], args.peak_of[2], dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    densities, blocks = ((0.1,), (32,)) if args.quick or args.strided else (DENSITIES, BLOCKS)
    densities = args.densities or densities
    blocks = args.blocks or blocks
    if args.cases:
        cases = args.cases
    elif args.strided:
        cases = STRIDED
    elif args.quick:
        cases = [0, 2]
    else:
        cases = [i for i in range(len(CASES)) if i not in STRIDED]
    torch.manual_seed(0)
    print(f"# suptickets {st.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU kernels: {st.ops.simd_level()}, {platform.processor() or platform.machine()}, {args.dtype}")
    if args.parts:
        return print_parts(cases, densities, blocks, dtype, repeats)
    low = dtype != torch.float32
    header = ("layer", "density", "block", "dense fwd ms", "sparse fwd ms", "fwd speedup", "dense f+b ms",
              "sparse f+b ms", "f+b speedup", "f+b eta", *(("fp32 sparse f+b ms", "vs fp32 sparse") if low else ()),
              "dense peak MB", "sparse peak MB", "param mem")
    rows = []
    for index in cases:
        case = CASES[index]
        x = torch.randn(*case["input"], dtype=dtype, requires_grad=True)
        dense = make_layer(case, None, None).to(dtype)
        grad = torch.randn_like(dense(x).detach())
        d_peak = peak_in_fresh_process(index, None, 0, args.dtype)
        for density in densities:
            for block in blocks:
                sparse32 = make_layer(case, density, block)
                sparse = sparse32 if not low else copy.deepcopy(sparse32).to(dtype)
                calls = [(dense, x, grad), (sparse, x, grad)]
                if low:  # our float32 layer, timed in the same rounds
                    calls.append((sparse32, x.detach().float().requires_grad_(), grad.float()))
                fwd, total = measure(calls, repeats)
                (d_fwd, s_fwd), (d_total, s_total) = fwd[:2], total[:2]
                fp32 = (f"{total[2]:.1f}", f"{total[2] / s_total:.2f}x") if low else ()
                s_peak = peak_in_fresh_process(index, density, block, args.dtype)
                speedup = d_total / s_total
                rows.append((case["name"], f"{sparse.density:.3f}", f"{block}x{block}", f"{d_fwd:.1f}",
                             f"{s_fwd:.1f}", f"{d_fwd / s_fwd:.2f}x", f"{d_total:.1f}", f"{s_total:.1f}",
                             f"{speedup:.2f}x", f"{speedup * sparse.density:.2f}", *fp32, f"{d_peak:.0f}",
                             f"{s_peak:.0f}", f"{param_mb(sparse) / param_mb(dense):.3f}x"))
                print(f"  {case['name']}, density {density}, block {block}: f+b {speedup:.2f}x", file=sys.stderr,
                      flush=True)
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
