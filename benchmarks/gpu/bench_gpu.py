"""The GPU check and benchmark of the Triton kernels, in one run (``run_all.sh`` calls it).

    PYTHONPATH=python:. python benchmarks/gpu/bench_gpu.py          # on a CUDA GPU (H200: < 5 min)
    PYTHONPATH=python:. TRITON_INTERPRET=1 python benchmarks/gpu/bench_gpu.py --smoke   # the script's logic on CPU

1. **Check**: every Triton kernel (linear and conv forward, dX, dvalues; block and gradient
   scores; the superposition merge) against the reference on the device, bf16 and fp32, each
   block size; a failure is reported (exit status 1) and the timings still run.
2. **Layers**: forward and forward+backward of ``bsr_linear`` (8192 tokens, 4096 -> 4096) and
   ``bsr_conv2d`` (3x3, 256 -> 256, 16x16, batch 128, channels_last) at densities 0.2 / 0.1 /
   0.05 and blocks 32 / 64 / 128, in bf16 and fp32 (TF32), against dense cuBLAS (``F.linear``),
   cuDNN (``F.conv2d``) and, for the linear forward, torch's own ``bsr_dense_mm``. Times are
   GPU times (``gpu_ms``: medians of CUDA-event timings of calls queued back to back behind a
   sleep, so no launch overhead, for dense and sparse alike); "sparse fwd eager ms" is one call
   timed as a plain loop sees it, launch overhead included. Speedup = dense time / sparse
   time; eta = speedup x density (DESIGN.md);
   peak MiB = the GPU memory one forward+backward allocates above what was allocated before it
   (the inputs and weights not counted).
3. **Training step**: VGG-16 and ResNet-50 as ``suptickets train`` builds them (CIFAR shapes,
   batch 128, bf16) sparse (ERK 0.1, 64x64 blocks; layers whose channels a block does not
   divide stay dense) against dense: forward, backward, SGD step, with
   the step's peak GPU memory (MiB allocated above the model, its optimizer state and the batch).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import suptickets as st
from suptickets.ops import _triton, reference
from suptickets.train.models import build_model

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
TOL = {torch.bfloat16: dict(rtol=5e-2, atol=5e-2), torch.float16: dict(rtol=2e-2, atol=2e-2),
       torch.float32: dict(rtol=1e-2, atol=1e-2)}  # TF32 products


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def timed(fn, repeats: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` (CUDA events on a GPU, wall time otherwise)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def gpu_ms(fn, repeats: int, calls: int = 10, warmup: int = 3) -> float:
    """Median GPU milliseconds of one ``fn()``, without the host's launch overhead: the stream is
    held by ``torch.cuda._sleep`` while ``calls`` calls are queued behind the start event, so the
    events time the kernels back to back (the sleep is lengthened until the start event is still
    pending once every call is queued; a ``fn`` that synchronises with the host is timed eagerly).
    Wall time on the CPU (the smoke run)."""
    if not torch.cuda.is_available():
        return timed(fn, repeats, warmup)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    sleep_s = 2 * (time.perf_counter() - t0) + 1e-3
    hz = getattr(torch.cuda.get_device_properties(0), "clock_rate", 0) * 1e3 or 2e9  # kHz when reported
    times = []
    while len(times) < repeats:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(int(sleep_s * hz))
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        queued_in_time = not start.query()
        torch.cuda.synchronize()
        if queued_in_time:
            times.append(start.elapsed_time(end) / calls)
        elif sleep_s > 0.25:  # fn waits for the GPU on the host: no queue to fill, time it as it runs
            return timed(fn, repeats, warmup=0)
        else:
            sleep_s *= 2
    return statistics.median(times)


def peak_mib(fn):
    """GPU memory ``fn()`` allocates at its peak above what was allocated before it, in MiB
    (None on the CPU, where the smoke run has no allocator statistics)."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2 ** 20


# ---- 1. check against the reference -------------------------------------------------------------


def check_all(blocks, dtypes, smoke: bool):
    """Yields a line per check. Every kernel and dtype at the first block size; the products in
    the first dtype at the others (each new configuration is a compilation: the budget is time)."""
    dev = device()
    g = torch.Generator(device="cpu").manual_seed(0)
    rand = lambda *shape, dtype: torch.randn(*shape, generator=g).to(dev, dtype)  # noqa: E731
    first_dtype = next(iter(dtypes))
    for dname, dtype in dtypes.items():
        for b in blocks:
            full = b == blocks[0]
            if not full and dname != first_dtype:
                continue
            # sizes with the divisibility of the timed shapes (Triton specialises integer arguments on
            # "multiple of 16"), so the kernels compiled here are the ones the timings reuse
            R, C, M = (2 * b, 4 * b, 24) if smoke else (16 * b, 16 * b, 512)
            layout = st.BlockLayout.random((R, C), (b, b), max(1, (R // b) * (C // b) // 3)).to(dev)
            v, x, bias = rand(layout.nnz, b, b, dtype=dtype), rand(M, C, dtype=dtype), rand(R, dtype=dtype)
            worst = compare_autograd(lambda x, v, bb: st.ops.bsr_linear(x, v, layout, bb),
                                     lambda x, v, bb: reference.bsr_linear(x, v, layout, bb), [x, v, bias], dtype)
            yield f"linear {dname} block {b}: max error {worst:.2e}"
            cin = b if smoke else 2 * b  # 2 block-rows and channel blocks: not the "== 1" specialisation
            clayout = st.BlockLayout.random((cin, 9 * cin), (b, b), 4).to(dev)
            cv, cx = rand(clayout.nnz, b, b, dtype=dtype), rand(*((2, cin, 6, 5) if smoke else (1, cin, 16, 16)),
                                                                 dtype=dtype)
            for stride in ((1, 2) if full else (1,)):
                worst = compare_autograd(
                    lambda x, v: st.ops.bsr_conv2d(x, v, clayout, kernel_size=3, stride=stride, padding=1),
                    lambda x, v: reference.bsr_conv2d(x, v, clayout, kernel_size=(3, 3), stride=(stride, stride),
                                                      padding=(1, 1)), [cx, cv], dtype)
                yield f"conv3x3 s{stride} {dname} block {b}: max error {worst:.2e}"
            if not full:
                continue
            dy = rand(M, R, dtype=dtype)
            got = st.ops.linear_grad_scores(x, dy, (b, b), "l1").float()
            want = reference.linear_grad_scores(x.float(), dy.float(), (b, b), "l1")
            torch.testing.assert_close(got, want, **TOL[dtype])
            got = st.ops.block_scores(v, "l2").float()
            torch.testing.assert_close(got, reference.block_scores(v.float(), "l2"), **TOL[dtype])
            other = st.BlockLayout.random((R, C), (b, b), layout.nnz).to(dev)
            counts = torch.ones(layout.nnz, dtype=torch.int32, device=dev)
            args = (layout.rows, layout.cols, counts, rand(other.nnz, b, b, dtype=dtype), other.rows, other.cols, 2)
            for got_t, want_t in zip(st.ops.superpose_union(v, *args), reference.superpose_union(v.float(), *[
                    a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args], "cia", 0.8)):
                torch.testing.assert_close(got_t.float(), want_t.float(), **TOL[dtype])
            yield f"scores + superpose {dname} block {b}: ok"


def compare_autograd(fn, ref, inputs, dtype) -> float:
    outs = []
    for f, cast in ((fn, False), (ref, True)):
        leaves = [(t.float() if cast else t).detach().clone().requires_grad_() for t in inputs]
        y = f(*leaves)
        y.backward(torch.ones_like(y))
        outs.append([y.detach().float(), *[t.grad.float() for t in leaves]])
    worst = 0.0
    for a, b in zip(*outs):
        scale = b.abs().max().clamp_min(1.0)
        torch.testing.assert_close(a / scale, b / scale, **TOL[dtype])
        worst = max(worst, ((a - b).abs().max() / scale).item())
    return worst


# ---- 2. layers ---------------------------------------------------------------------------------


def bench_layers(densities, blocks, dtypes, smoke: bool, repeats: int):
    """Yields one table row per (layer, dtype, block, density)."""
    dev = device()
    M, C, R = (64, 64, 64) if smoke else (8192, 4096, 4096)
    B, CH, HW = (2, 32, 6) if smoke else (128, 256, 16)
    for dname, dtype in dtypes.items():
        x = torch.randn(M, C, device=dev, dtype=dtype)
        W = torch.randn(R, C, device=dev, dtype=dtype) / C ** 0.5
        xc = torch.randn(B, CH, HW, HW, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
        Wc = (torch.randn(CH, CH, 3, 3, device=dev, dtype=dtype) / (9 * CH) ** 0.5).to(
            memory_format=torch.channels_last)
        dense_linear = lambda x, w: F.linear(x, w)  # noqa: E731
        dense_conv = lambda x, w: F.conv2d(x, w, padding=1)  # noqa: E731
        dense = {  # forward ms, forward+backward ms, forward+backward peak MiB
            "linear": (gpu_ms(lambda: F.linear(x, W), repeats), gpu_ms(lambda: fwd_bwd(dense_linear, x, W), repeats),
                       peak_mib(lambda: fwd_bwd(dense_linear, x, W))),
            "conv": (gpu_ms(lambda: F.conv2d(xc, Wc, padding=1), repeats),
                     gpu_ms(lambda: fwd_bwd(dense_conv, xc, Wc), repeats),
                     peak_mib(lambda: fwd_bwd(dense_conv, xc, Wc))),
        }
        for b in blocks:
            if smoke and b > 32:
                continue
            for density in densities:
                layout = st.BlockLayout.random((R, C), (b, b), max(1, round(density * (R // b) * (C // b)))).to(dev)
                v = layout.block_values(W).contiguous()
                linear = lambda x, v: st.ops.bsr_linear(x, v, layout)  # noqa: E731
                fwd = gpu_ms(lambda: linear(x, v), repeats)
                both = gpu_ms(lambda: fwd_bwd(linear, x, v), repeats)
                bsr = torch_bsr_ms(W * layout.element_mask().to(dtype), x, b, repeats)
                d_f, d_fb, d_peak = dense["linear"]
                yield (f"linear {M}x{C}->{R}", dname, density, b, d_f, fwd, d_f / fwd, d_f / fwd * density,
                       d_fb, both, d_fb / both, d_fb / both * density, bsr, timed(lambda: linear(x, v), repeats),
                       d_peak, peak_mib(lambda: fwd_bwd(linear, x, v)))
                clayout = st.BlockLayout.random((CH, 9 * CH), (b, b),
                                                max(1, round(density * (CH // b) * (9 * CH // b)))).to(dev)
                cv = torch.randn(clayout.nnz, b, b, device=dev, dtype=dtype) / (9 * CH) ** 0.5
                conv = lambda x, v: st.ops.bsr_conv2d(x, v, clayout, kernel_size=3, padding=1)  # noqa: E731
                fwd = gpu_ms(lambda: conv(xc, cv), repeats)
                both = gpu_ms(lambda: fwd_bwd(conv, xc, cv), repeats)
                d_f, d_fb, d_peak = dense["conv"]
                yield (f"conv3x3 {CH}->{CH} {HW}x{HW} b{B}", dname, density, b, d_f, fwd, d_f / fwd,
                       d_f / fwd * density, d_fb, both, d_fb / both, d_fb / both * density, None,
                       timed(lambda: conv(xc, cv), repeats), d_peak, peak_mib(lambda: fwd_bwd(conv, xc, cv)))


def fwd_bwd(fn, x, w):
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    y = fn(x, w)
    y.backward(torch.ones_like(y))


def torch_bsr_ms(W_masked, x, b, repeats):
    """``torch.sparse._triton_ops.bsr_dense_mm`` (W as a BSR tensor times x^T), or None."""
    try:
        from torch.sparse._triton_ops import bsr_dense_mm

        bsr = W_masked.to_sparse_bsr((b, b))
        xt = x.t().contiguous()
        bsr_dense_mm(bsr, xt)
        return gpu_ms(lambda: bsr_dense_mm(bsr, xt), repeats)
    except Exception as exc:  # not every build, dtype and block size is supported
        print(f"# bsr_dense_mm unavailable for block {b}, {x.dtype}: {type(exc).__name__}: {str(exc)[:80]}")
        return None


# ---- 3. training step ------------------------------------------------------------------------------


def bench_training(smoke: bool, repeats: int):
    """Yields one row per model and precision: a training step (forward, backward, SGD) of the
    networks ``suptickets train`` builds, dense against sparse (ERK 0.1, the Triton kernels), with
    the weights in bf16, and then VGG-16 with float32 weights under ``torch.autocast`` (bf16), as
    most GPU training runs. The smoke run takes the small ``cnn`` on 8x8 images with 16x16 blocks
    in float16 (whole CIFAR networks are too slow for the interpreter)."""
    dev = device()
    dtype = torch.float16 if smoke else torch.bfloat16
    batch, size, block = (2, 8, 16) if smoke else (128, 32, 64)
    runs = [("cnn", "weights"), ("cnn", "autocast")] if smoke else [("vgg16", "weights"), ("resnet50", "weights"),
                                                                    ("vgg16", "autocast")]
    y = torch.randint(0, 100, (batch,), device=dev)
    for name, precision in runs:
        autocast = precision == "autocast"
        x = torch.randn(batch, 3, size, size, device=dev, dtype=torch.float32 if autocast else dtype)
        x = x.to(memory_format=torch.channels_last)
        times, peaks = [], []
        for sparse in (False, True):
            torch.manual_seed(0)
            model = build_model(name, in_channels=3, image_size=size, num_classes=100)
            if sparse:
                model = st.sparsify(model, density=0.1, distribution="erk", block_size=(block, block))
            model = model.to(dev, torch.float32 if autocast else dtype).to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def step():
                with torch.autocast(dev.split(":")[0], dtype=dtype, enabled=autocast):
                    loss = F.cross_entropy(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            times.append(timed(step, repeats))
            peaks.append(peak_mib(step))
        label = f"{name} {size}x{size}, " + (f"autocast {str(dtype).removeprefix('torch.')}" if autocast
                                              else f"{str(dtype).removeprefix('torch.')} weights")
        yield (label, batch, block, times[0], times[1], times[0] / times[1], peaks[0], peaks[1])


def print_table(header, rows, budget_end: float) -> None:
    """Prints a markdown table row by row (a run cut short still shows what it measured); a
    failure ends the table with its message; rows stop once the time budget is spent."""
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    print("| " + " | ".join(header) + " |", flush=True)
    print("|" + "|".join("---" for _ in header) + "|", flush=True)
    try:
        for row in rows:
            print("| " + " | ".join(fmt(v) for v in row) + " |", flush=True)
            if time.perf_counter() > budget_end:
                print("# time budget spent: table cut short", flush=True)
                return
    except Exception as exc:  # keep the rows measured so far and say what failed
        print(f"# FAILED: {type(exc).__name__}: {str(exc)[:300]}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (the interpreter on CPU)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per figure (median)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--budget", type=float, default=270, help="seconds after which tables are cut short")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.smoke:
        print("no CUDA GPU: run with --smoke under TRITON_INTERPRET=1 to check the script on CPU")
        return 2
    if not _triton.available:
        print(f"Triton is not available: {_triton.load_error}")
        return 2
    dtypes = DTYPES
    if args.smoke:  # Triton on CPU tensors; the interpreter's bf16 tl.dot is wrong, so fp16 stands in
        os.environ["SUPTICKETS_BACKEND"] = "triton"
        dtypes = {"fp16": torch.float16, "fp32": torch.float32}
    start = time.perf_counter()
    blocks = (32,) if args.smoke else (64, 32, 128)  # the targets' rows first
    densities = (0.1, 0.2, 0.05)
    repeats = 2 if args.smoke else args.repeats
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (Triton interpreter)"
    print(f"# {name}, torch {torch.__version__}, triton {__import__('triton').__version__}")
    budget_end = start + args.budget
    status = 0
    try:
        for line in check_all(blocks, dtypes, args.smoke):
            print(f"# check: {line}", flush=True)
        print(f"# checks passed in {time.perf_counter() - start:.0f} s", flush=True)
    except Exception as exc:
        print(f"# CHECK FAILED: {type(exc).__name__}: {str(exc)[:500]}", flush=True)
        status = 1
    print_table(("layer", "dtype", "density", "block", "dense fwd ms", "sparse fwd ms", "fwd speedup", "fwd eta",
                 "dense f+b ms", "sparse f+b ms", "f+b speedup", "f+b eta", "bsr_dense_mm fwd ms",
                 "sparse fwd eager ms", "dense f+b peak MiB", "sparse f+b peak MiB"),
                bench_layers(densities, blocks, dtypes, args.smoke, repeats), budget_end)
    if not args.skip_training:
        print_table((f"model ({'fp16' if args.smoke else 'bf16'})", "batch", "block", "dense step ms",
                     "sparse step ms (ERK 0.1)", "speedup", "dense step peak MiB", "sparse step peak MiB"),
                    bench_training(args.smoke, max(2, repeats // 2)), budget_end + 60)
    print(f"# total {time.perf_counter() - start:.0f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
