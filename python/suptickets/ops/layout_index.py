"""The index arithmetic of ``BlockLayout`` as operators: CSR/CSC pointers and the column
permutation of a layout (counting sort), and the merge of kept and grown blocks in a
topology update, and the gather of values and optimizer state into new slots.
``sparse/layout.py`` and ``sparse/repack.py`` hold the contracts and are the callers; CPU
index tensors run the C++ versions (linear time, no sort), others the reference (both
give the same exact result, so ``SUPTICKETS_BACKEND`` does not apply)."""
from __future__ import annotations

import torch

from . import _extension, reference


def _use_kernel(t: torch.Tensor) -> bool:
    # Integer bookkeeping with one exact answer: SUPTICKETS_BACKEND does not apply.
    return t.device.type == "cpu" and _extension.available


def _value_error(exc: RuntimeError):
    return ValueError(str(exc).split("\n")[0].removeprefix("suptickets: "))


def layout_index(rows: torch.Tensor, cols: torch.Tensor, grid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(row_ptr[gr + 1], col_ptr[gc + 1], col_perm[nnz])`` (int32) of the row-major slots
    ``rows``/``cols`` (int32) in the block ``grid = (gr, gc)``."""
    if not _use_kernel(rows):
        return reference.layout_index(rows, cols, grid)
    return torch.ops.suptickets.layout_index.default(rows, cols, int(grid[0]), int(grid[1]))


def merge_blocks(rows: torch.Tensor, cols: torch.Tensor, drop: torch.Tensor, grow: torch.Tensor,
                 grid_cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """New row-major slots without the slots ``drop`` and with the blocks ``grow`` (flat ids
    ``r * grid_cols + c``; both int64 ascending): ``(rows, cols, src)``, ``src[s]`` the old
    slot of new slot ``s`` or -1 for a grown block. Raises ``ValueError`` on bad indices."""
    if not _use_kernel(rows):
        return reference.merge_blocks(rows, cols, drop, grow, grid_cols)
    try:
        return torch.ops.suptickets.merge_blocks.default(rows, cols, drop, grow, int(grid_cols))
    except RuntimeError as exc:
        raise _value_error(exc) from None


def gather_slots(t: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """A new ``[len(src), ...]`` tensor: row ``s`` is ``t[src[s]]``, or zeros where ``src[s] == -1``
    (``src`` int64 on ``t``'s device). Raises ``ValueError`` for an entry outside ``[-1, len(t))``."""
    if not _use_kernel(t):
        if src.numel() and (src.min() < -1 or src.max() >= t.shape[0]):
            raise ValueError(f"src entries must be -1 or an old slot in [0, {t.shape[0]})")
        return reference.gather_slots(t, src)
    try:
        return torch.ops.suptickets.gather_slots.default(t, src)
    except RuntimeError as exc:
        raise _value_error(exc) from None
