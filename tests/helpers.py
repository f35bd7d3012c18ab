"""What the tests share: layouts of every kind the kernels must handle, conv geometries, the one
tolerance table, a small model with its batches and training loop, and superposition operands."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import suptickets as st

# Layouts the op tests run on: one block, sparse, half, full, and a layout with
# an empty block-row and an empty block-column.
TOPOLOGIES = ("one-block", "sparse", "half", "full", "empty-row-col")


def make_layout(shape, block, topology: str, seed: int = 0) -> st.BlockLayout:
    R, C = shape
    br, bc = block
    grid = (R // br, C // bc)
    g = torch.Generator().manual_seed(seed)
    if topology == "one-block":
        mask = torch.zeros(grid, dtype=torch.bool)
        mask[torch.randint(grid[0], (1,), generator=g), torch.randint(grid[1], (1,), generator=g)] = True
    elif topology == "sparse":
        mask = torch.rand(grid, generator=g) < 0.15
    elif topology == "half":
        mask = torch.rand(grid, generator=g) < 0.5
    elif topology == "full":
        mask = torch.ones(grid, dtype=torch.bool)
    elif topology == "empty-row-col":
        mask = torch.rand(grid, generator=g) < 0.6
        mask[grid[0] // 2, :] = False
        mask[:, grid[1] // 2] = False
    else:
        raise ValueError(topology)
    if not mask.any():
        mask[0, 0] = True
    return st.BlockLayout.from_mask(mask, block, shape)


# The one tolerance table: a kernel's (or a compiled or converted module's) result against the
# reference computed in the same dtype or higher, by dtype; then what is compared after more
# arithmetic than one product.
TOLERANCES = {
    torch.float64: {"rtol": 1e-10, "atol": 1e-10},
    torch.float32: {"rtol": 1e-4, "atol": 1e-4},
    torch.float16: {"rtol": 2e-2, "atol": 2e-2},
    torch.bfloat16: {"rtol": 1.6e-2, "atol": 2e-2},
}
REDUCED = {"rtol": 1e-4, "atol": 1e-3}   # float32 norms of sums over many products (gradient scores)
TRAINED = {"rtol": 1e-4, "atol": 1e-5}   # float32 weights after training steps taken another way
STATISTICS = {"rtol": 1e-5, "atol": 1e-6}  # float64 arithmetic of a few sums (superposition, BatchNorm)


# Cost-model constants (ops/cost.py) that always prefer the kernels, or always the dense path.
KERNELS_FIRST = {f"{kind}/{path}/{dtype}": ([1e6, 0.0, 0.0] if path == "dense" else [0.0, 0.0, 0.0])
                 for kind in ("linear", "conv") for path in ("dense", "element", "tile")
                 for dtype in ("float32", "float64", "bfloat16", "float16")}
DENSE_FIRST = {k: ([0.0, 0.0, 0.0] if "/dense/" in k else [1e6, 0.0, 0.0]) for k in KERNELS_FIRST}


def tolerances(dtype: torch.dtype) -> dict:
    return TOLERANCES[dtype]


def oracle_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the reference computes in when a kernel of ``dtype`` is checked: float64 for the
    low-precision dtypes (the reference on the same rounded inputs, exactly), else ``dtype``."""
    return torch.float64 if dtype in (torch.bfloat16, torch.float16) else dtype


def dense_from_element_mask(values: torch.Tensor, layout: st.BlockLayout) -> torch.Tensor:
    """The dense weight built a second way (element mask and scatter), independent of the reference."""
    R, C = layout.shape
    br, bc = layout.block_size
    W = torch.zeros(R, C, dtype=values.dtype)
    for s in range(layout.nnz):
        r, c = int(layout.rows[s]), int(layout.cols[s])
        W[r * br:(r + 1) * br, c * bc:(c + 1) * bc] = values[s].detach()
    assert torch.equal(W != 0, layout.element_mask() & (W != 0))
    return W


def kernel_cases(op: str, blocks, dtypes, *, exclude=("triton",)):
    """pytest params ``(backend, block, dtype)``: every kernel backend that the dispatch table
    (``suptickets.ops.backend``) says takes ``op`` on CPU tensors of ``dtype`` with ``block``
    blocks (Triton's interpreter cases live in the tests/test_*_triton.py files). A case no
    kernel takes has no param: the reference is never compared with itself."""
    import pytest

    from suptickets.ops import backend

    params = []
    for block in blocks:
        for dtype in dtypes:
            probe = torch.empty(0, dtype=dtype)
            for name in backend.implementations(op, probe, block_size=block):
                if name not in exclude:
                    tag = str(dtype).removeprefix("torch.")
                    params.append(pytest.param(name, block, dtype, id=f"{name}-block={block[0]}x{block[1]}-{tag}"))
    return params


# ---- conv geometries: (B, Cin, Cout, H, W, kernel, stride, padding, dilation) --------------------

GEOMETRIES = {
    "3x3-pad1": (2, 32, 32, 9, 7, (3, 3), (1, 1), (1, 1), (1, 1)),
    "3x3-stride2": (3, 32, 32, 8, 9, (3, 3), (2, 2), (1, 1), (1, 1)),
    "1x1": (2, 32, 64, 5, 6, (1, 1), (1, 1), (0, 0), (1, 1)),
    "1x1-stride2": (2, 32, 32, 7, 7, (1, 1), (2, 2), (0, 0), (1, 1)),
    "3x3-dilation2-nopad": (1, 32, 32, 11, 10, (3, 3), (1, 1), (0, 0), (2, 2)),
    "5x3-pad21-stride12": (2, 32, 32, 9, 11, (5, 3), (1, 2), (2, 1), (1, 1)),
    "batch1-odd": (1, 32, 32, 5, 3, (3, 3), (1, 1), (1, 1), (1, 1)),
    "3x3-pad3": (2, 32, 32, 5, 6, (3, 3), (1, 1), (3, 3), (1, 1)),  # padding beyond the kernel's reach

}


# ---- a small model, its batches and a training loop --------------------------------------------

def small_model():
    return nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16),
    )


def batch(step, n=16):
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(n, 8, 6, 6, generator=g), torch.randint(0, 16, (n,), generator=g)


def layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, st.SparseLinear | st.SparseConv2d)]


def run_steps(model, optimizer, sparse, steps):
    for t in steps:
        x, y = batch(t)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        sparse.step()


# ---- superposition operands ---------------------------------------------------------------------

def layout(grid, block, nnz, seed):
    shape = (grid[0] * block[0], grid[1] * block[1])
    return st.BlockLayout.random(shape, block, nnz, generator=torch.Generator().manual_seed(seed))


def operands(grid, block, n_acc, n_ticket, dtype=torch.float64, seed=0, overlap=None):
    g = torch.Generator().manual_seed(seed)
    acc = layout(grid, block, n_acc, seed)
    ticket = acc if overlap == "same" else layout(grid, block, n_ticket, seed + 1)
    acc_values = torch.randn(acc.nnz, *block, generator=g, dtype=dtype)
    values = torch.randn(ticket.nnz, *block, generator=g, dtype=dtype)
    counts = torch.randint(1, 5, (acc.nnz,), generator=g, dtype=torch.int32)
    return acc, acc_values, counts, ticket, values
