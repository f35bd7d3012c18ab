"""Shared test helpers: layouts of every kind the kernels must handle, and tolerances."""
from __future__ import annotations

import torch

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


def tolerances(dtype: torch.dtype) -> dict:
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}


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
    blocks (Triton's interpreter cases live in the tests/test_triton_*.py files). A case no
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
