#!/usr/bin/env bash
# The whole GPU check and benchmark in one call, for a lent H200 whose image has torch and
# triton (nothing is installed or built): every Triton kernel against the reference on the GPU,
# then the timing tables of benchmarks/gpu/bench_gpu.py (rows printed as measured; tables cut
# short after --budget seconds, 270 by default, so the whole call stays under 5 minutes).
#   bash benchmarks/gpu/run_all.sh            # tables on stdout, and in $OUT/gpu_tables.md if OUT is set
# The interpreter is python3 (the CUDA image's, which holds torch and triton), or $PYTHON.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/python:$PWD${PYTHONPATH:+:$PYTHONPATH}"  # suptickets and suptickets_kernels
export TRITON_DEFAULT_FP_FUSION=1
unset TRITON_INTERPRET
py="${PYTHON:-$(command -v python3 || command -v python)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$py" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())"
out="${OUT:-/tmp}/gpu_tables.md"
"$py" benchmarks/gpu/bench_gpu.py "$@" 2>&1 | grep -v "UserWarning\|to_sparse_bsr" | tee "$out"
