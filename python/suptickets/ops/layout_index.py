"""The index arithmetic of ``BlockLayout`` as operators: CSR/CSC pointers and the column
permutation of a layout (counting sort), the merge of kept and grown blocks in a topology
update, and the gather of values and optimizer state into new slots. ``sparse/layout.py`` and
``sparse/repack.py`` hold the contracts and are the callers. These ops are ``exact`` in the
dispatch table: CPU tensors run the C++ versions (``csrc/cpu/layout_index.cpp``, linear time,
no sort), others the reference; both give the same integers, so ``SUPTICKETS_BACKEND`` does not
apply. Bad indices raise ``ValueError``."""
from __future__ import annotations

import torch

from . import backend, reference


def layout_index(rows: torch.Tensor, cols: torch.Tensor, grid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(row_ptr[gr + 1], col_ptr[gc + 1], col_perm[nnz])`` (int32) of the row-major slots
    ``rows``/``cols`` (int32) in the block ``grid = (gr, gc)``."""
    return _RUN_INDEX[backend.choose("layout_index", rows, cols)](rows, cols, (int(grid[0]), int(grid[1])))


def merge_blocks(rows: torch.Tensor, cols: torch.Tensor, drop: torch.Tensor, grow: torch.Tensor,
                 grid_cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """New row-major slots without the slots ``drop`` and with the blocks ``grow`` (flat ids
    ``r * grid_cols + c``; both int64 ascending): ``(rows, cols, src)``, ``src[s]`` the old
    slot of new slot ``s`` or -1 for a grown block."""
    return _RUN_MERGE[backend.choose("merge_blocks", rows, cols, drop, grow)](rows, cols, drop, grow, int(grid_cols))


def gather_slots(t: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """A new ``[len(src), ...]`` tensor: row ``s`` is ``t[src[s]]``, or zeros where ``src[s] == -1``
    (``src`` int64 on ``t``'s device)."""
    return _RUN_GATHER[backend.choose("gather_slots", t, src)](t, src)


_RUN_INDEX = {"cpu": lambda rows, cols, grid: torch.ops.suptickets.layout_index.default(rows, cols, *grid),
              "reference": reference.layout_index}
_RUN_MERGE = {"cpu": lambda *args: torch.ops.suptickets.merge_blocks.default(*args),
              "reference": reference.merge_blocks}
_RUN_GATHER = {"cpu": lambda *args: torch.ops.suptickets.gather_slots.default(*args),
               "reference": reference.gather_slots}
