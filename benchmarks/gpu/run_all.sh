#!/usr/bin/env bash
# The whole GPU check and benchmark in one call, for a lent H200 whose image has torch and
# triton (nothing is installed or built): every Triton kernel against the reference on the GPU,
# the compile check for sm_90, then the timing tables of benchmarks/gpu/bench_gpu.py.
#   bash benchmarks/gpu/run_all.sh            # tables on stdout, and in $OUT/gpu_tables.md if OUT is set
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
export TRITON_DEFAULT_FP_FUSION=1
unset TRITON_INTERPRET
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())"
python -m suptickets_kernels.compile_check --arch 90 | tail -3
out="${OUT:-/tmp}/gpu_tables.md"
python benchmarks/gpu/bench_gpu.py "$@" 2>&1 | grep -v "UserWarning\|to_sparse_bsr" | tee "$out"
