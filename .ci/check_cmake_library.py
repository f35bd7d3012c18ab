"""Loads the CMake-built operator library into this (fresh) process and checks that every
suptickets:: operator it defines has a CPU kernel: the library and `pip install .` must build
the same sources."""
import sys

import torch

torch.ops.load_library(sys.argv[1])
names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("suptickets::"))
missing = [n for n in names if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CPU")]
if not names or missing:
    sys.exit(f"{sys.argv[1]}: {len(names)} suptickets operators, without a CPU kernel: {missing or 'none defined'}")
print(f"{sys.argv[1]}: all {len(names)} suptickets operators have a CPU kernel")
