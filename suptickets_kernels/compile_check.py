"""Compiles every Triton kernel for a GPU target without a GPU (``triton.compile`` of the
kernel's source with concrete signatures), so that an error only the compiler sees fails CI.

    python -m suptickets_kernels.compile_check          # sm_90 (Hopper), bf16 / fp16 / fp32

Must run without ``TRITON_INTERPRET`` (the interpreter replaces the compiled kernels).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import block_scores, bsr_conv2d, bsr_linear, superpose
from .config import interpreting

DTYPES = {"bf16": "*bf16", "fp16": "*fp16", "fp32": "*fp32"}


def _jit(kernel):
    """The JITFunction (under ``@triton.autotune`` it is the autotuner's ``fn``)."""
    return kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel


# Integer arguments that are multiples of 16 in the timed shapes (8192 rows, 4096 or 256 channels):
# at run time Triton specialises those, and every tensor pointer (16-byte aligned), with
# ``tt.divisibility`` 16, which is what lets 16-bit loads become pipelined asynchronous copies.
# The check compiles the same specialisation, so its code and shared memory are the GPU's.
ALIGNED_INTS = ("M", "P", "CIN", "COUT")


def runtime_attrs(signature: dict) -> dict:
    """``ASTSource`` attributes marking pointers, strides and ``ALIGNED_INTS`` as multiples of 16."""
    return {(i,): [["tt.divisibility", 16]] for i, (arg, kind) in enumerate(signature.items())
            if kind.startswith("*") or (kind == "i32" and (arg.startswith("stride") or arg in ALIGNED_INTS))}


def source(kernel, signature: dict, constexprs: dict) -> ASTSource:
    return ASTSource(_jit(kernel), signature, constexprs, runtime_attrs(signature))


def cases(block: int = 64):
    """(name, kernel, signature, constexprs, options) of every kernel, per dtype."""
    for name, ptr in DTYPES.items():
        precision = "tf32" if name == "fp32" else "ieee"
        common = {"BR": block, "BC": block, "PRECISION": precision}
        yield (f"bsr_linear.forward[{name}]", bsr_linear._forward,
               {"x_ptr": ptr, "v_ptr": ptr, "cols_ptr": "*i32", "row_ptr_ptr": "*i32", "bias_ptr": ptr,
                "y_ptr": ptr, "M": "i32", "stride_x": "i32", "stride_y": "i32", "GRID_N": "i32",
                "HAS_BIAS": "constexpr", "BR": "constexpr", "BC": "constexpr", "PRECISION": "constexpr",
                "BLOCK_M": "constexpr"},
               {**common, "HAS_BIAS": True, "BLOCK_M": 128}, {"num_warps": 8, "num_stages": 3})
        yield (f"bsr_linear.grad_input[{name}]", bsr_linear._grad_input,
               {"dy_ptr": ptr, "v_ptr": ptr, "rows_ptr": "*i32", "col_ptr_ptr": "*i32", "col_perm_ptr": "*i32",
                "dx_ptr": ptr, "M": "i32", "stride_dy": "i32", "stride_dx": "i32", "GRID_N": "i32", "BR": "constexpr",
                "BC": "constexpr", "PRECISION": "constexpr", "BLOCK_M": "constexpr"},
               {**common, "BLOCK_M": 128}, {"num_warps": 8, "num_stages": 3})
        yield (f"bsr_linear.grad_values[{name}]", bsr_linear._grad_values,
               {"dy_ptr": ptr, "x_ptr": ptr, "rows_ptr": "*i32", "cols_ptr": "*i32", "dv_ptr": "*fp32",
                "M": "i32", "rows_per_part": "i32", "stride_dy": "i32", "stride_x": "i32", "nnz": "i32",
                "BR": "constexpr", "BC": "constexpr", "PRECISION": "constexpr", "BLOCK_K": "constexpr"},
               {**common, "BLOCK_K": 64}, {"num_warps": 4, "num_stages": 3})
        geometry = ["H", "W", "CIN", "HO", "WO", "COUT"]
        taps = ["KW", "SH", "SW", "PH", "PW", "DH", "DW"]
        ints = lambda names: {n: "i32" for n in names}  # noqa: E731
        yield (f"bsr_conv2d.forward[{name}]", bsr_conv2d._forward,
               {"x_ptr": ptr, "v_ptr": ptr, "cols_ptr": "*i32", "row_ptr_ptr": "*i32", "bias_ptr": ptr,
                "y_ptr": ptr, **ints(["P", *geometry, *taps, "GRID_N"]), "HAS_BIAS": "constexpr", "BR": "constexpr",
                "BC": "constexpr", "PRECISION": "constexpr", "BLOCK_M": "constexpr"},
               {**common, "HAS_BIAS": True, "BLOCK_M": 128}, {"num_warps": 8, "num_stages": 3})
        yield (f"bsr_conv2d.grad_input[{name}]", bsr_conv2d._grad_input,
               {"dy_ptr": ptr, "v_ptr": ptr, "rows_ptr": "*i32", "col_ptr_ptr": "*i32", "col_perm_ptr": "*i32",
                "dx_ptr": ptr, **ints(["P", *geometry, "KH", *taps, "GRID_N"]), "BR": "constexpr", "BC": "constexpr",
                "PRECISION": "constexpr", "BLOCK_M": "constexpr"},
               {**common, "BLOCK_M": 128}, {"num_warps": 8, "num_stages": 3})
        yield (f"bsr_conv2d.grad_values[{name}]", bsr_conv2d._grad_values,
               {"dy_ptr": ptr, "x_ptr": ptr, "rows_ptr": "*i32", "cols_ptr": "*i32", "dv_ptr": "*fp32",
                **ints(["P", "pixels_per_part", "nnz", *geometry, *taps]), "BR": "constexpr", "BC": "constexpr",
                "PRECISION": "constexpr", "BLOCK_K": "constexpr"},
               {**common, "BLOCK_K": 64}, {"num_warps": 4, "num_stages": 3})
        yield (f"block_scores.block_scores[{name}]", block_scores._block_scores,
               {"v_ptr": ptr, "out_ptr": "*fp32", "BR": "constexpr", "BC": "constexpr", "KIND": "constexpr"},
               {"BR": block, "BC": block, "KIND": 2}, {"num_warps": 4})
        yield (f"block_scores.linear_grad_scores[{name}]", block_scores._linear_grad_scores,
               {"dy_ptr": ptr, "x_ptr": ptr, "out_ptr": "*fp32", **ints(["M", "stride_dy", "stride_x", "GRID_C"]),
                "BR": "constexpr", "BC": "constexpr", "KIND": "constexpr", "PRECISION": "constexpr",
                "BLOCK_K": "constexpr"},
               {**common, "KIND": 1, "BLOCK_K": 64}, {"num_warps": 4, "num_stages": 3})
        yield (f"block_scores.conv2d_grad_scores[{name}]", block_scores._conv_grad_scores,
               {"dy_ptr": ptr, "x_ptr": ptr, "out_ptr": "*fp32", **ints(["P", *geometry, *taps, "GRID_C"]),
                "BR": "constexpr", "BC": "constexpr", "KIND": "constexpr", "PRECISION": "constexpr",
                "BLOCK_K": "constexpr"},
               {**common, "KIND": 1, "BLOCK_K": 64}, {"num_warps": 4, "num_stages": 3})
        yield (f"superpose.merge[{name}]", superpose._merge,
               {"acc_ptr": ptr, "acc_counts_ptr": "*i32", "src_acc_ptr": "*i64", "tic_ptr": ptr, "src_tic_ptr": "*i64",
                "out_ptr": ptr, "out_counts_ptr": "*i32", "scores_ptr": "*fp32", "n": "i32", "a": "fp32",
                "b": "fp32", "CAA": "constexpr", "KIND": "constexpr", "AREA": "constexpr", "SLOTS": "constexpr"},
               {"CAA": True, "KIND": 1, "AREA": block * block, "SLOTS": 1}, {"num_warps": 4})


def compile_all(arch: int = 90, block: int = 64, verbose: bool = True) -> list[str]:
    """Compiles every case for ``sm_<arch>``; returns the names compiled (raises on an error)."""
    if interpreting():
        raise RuntimeError("unset TRITON_INTERPRET: the interpreter replaces the compiled kernels")
    target = GPUTarget("cuda", arch, 32)
    done = []
    for name, kernel, signature, constexprs, options in cases(block):
        start = time.perf_counter()
        compiled = triton.compile(source(kernel, signature, constexprs), target=target, options=options)
        if not compiled.asm.get("cubin"):
            raise RuntimeError(f"{name}: no cubin for sm_{arch}")
        if verbose:
            print(f"{name}: sm_{arch} cubin {len(compiled.asm['cubin'])} bytes, {time.perf_counter() - start:.1f} s")
        done.append(name)
    return done


SHARED_LIMIT = {90: 232448}  # bytes of shared memory a block may use (H100/H200: 227 KB)


def resource_usage(cubin: bytes) -> tuple[int, int] | None:
    """(registers per thread, local-memory bytes per thread: spills and stack) of a cubin, read
    with the ``cuobjdump`` that Triton's NVIDIA backend ships; None where there is none."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        out = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True, text=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", out)
    return (int(found[1]), int(found[2]) + int(found[3])) if found else None


def check_fit(arch: int = 90, block: int = 128, dtype: str = "fp32", spill_free: bool = False,
              verbose: bool = True) -> list[str]:
    """For every autotuned kernel, at ``block`` x ``block`` blocks in ``dtype``, compiles each
    autotune configuration and checks that at least one fits in the shared memory of
    ``sm_<arch>`` (the autotuner skips configurations that do not fit, and fails when none does,
    which only a GPU would otherwise show); reports each configuration's registers and spilled
    bytes per thread, and with ``spill_free`` raises when any configuration spills."""
    target, limit, lines = GPUTarget("cuda", arch, 32), SHARED_LIMIT[arch], []
    for name, kernel, signature, constexprs, options in cases(block):
        if f"[{dtype}]" not in name or not isinstance(kernel, triton.runtime.Autotuner):
            continue
        shared, regs, spills = [], [], []
        for config in kernel.configs:
            compiled = triton.compile(source(kernel, signature, {**constexprs, **config.kwargs}), target=target,
                                      options={"num_warps": config.num_warps, "num_stages": config.num_stages})
            shared.append(compiled.metadata.shared)
            usage = resource_usage(compiled.asm["cubin"])
            regs.append(usage[0] if usage else None)
            spills.append(usage[1] if usage else None)
        line = (f"{name} block {block}: shared memory per config {shared} (limit {limit}), "
                f"registers {regs}, spilled bytes {spills}")
        if min(shared) > limit:
            raise RuntimeError(f"no autotune configuration fits: {line}")
        if spill_free and any(s for s in spills):
            raise RuntimeError(f"a configuration spills registers: {line}")
        if verbose:
            print(line)
        lines.append(line)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--fit", action="store_true", help="also compile every autotune configuration of every "
                        "kernel at 128x128 fp32 blocks (one must fit in shared memory) and 64x64 bf16 blocks "
                        "(none may spill registers)")
    args = parser.parse_args(argv)
    compile_all(args.arch, args.block)
    if args.fit:
        check_fit(args.arch)  # the largest footprint: one configuration must fit
        check_fit(args.arch, block=64, dtype="bf16", spill_free=True)  # the targets' case: no configuration spills
    return 0


if __name__ == "__main__":
    sys.exit(main())
