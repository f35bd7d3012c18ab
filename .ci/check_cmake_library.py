"""Loads the CMake-built operator library into this (fresh) process and checks that every
suptickets:: operator it defines has a CPU kernel, and the products their C++ autograd formula:
the library and `pip install .` must build the same sources."""
import sys

import torch

torch.ops.load_library(sys.argv[1])
names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("suptickets::"))
missing = [n for n in names if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CPU")]
if not names or missing:
    sys.exit(f"{sys.argv[1]}: {len(names)} suptickets operators, without a CPU kernel: {missing or 'none defined'}")
products = ("suptickets::bsr_linear", "suptickets::bsr_conv2d")
no_autograd = [n for n in products if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "Autograd")]
if no_autograd:
    sys.exit(f"{sys.argv[1]}: products without their Autograd kernel (csrc/product_autograd.cpp): {no_autograd}")
print(f"{sys.argv[1]}: all {len(names)} suptickets operators have a CPU kernel, the products their autograd")
