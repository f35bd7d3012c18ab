"""The index work of merging two sets of blocks (the superposition of a ticket into the
accumulator): one row-major key per block, the union of two sorted supports, and the strongest
blocks of a scored set. Shared by the reference and the Triton path of ``superpose``; the C++
kernel does the same in ``csrc/cpu/superpose.cpp``."""
from __future__ import annotations

import torch

_ROW = 2**31  # key = row * 2^31 + col orders blocks row-major (rows and cols are int32)


def block_keys(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """int64 keys of blocks ``(rows[i], cols[i])``, ordered as the blocks are row-major."""
    return rows.long() * _ROW + cols.long()


def rows_cols(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The int32 ``(rows, cols)`` of keys."""
    return (keys // _ROW).to(torch.int32), (keys % _ROW).to(torch.int32)


def union(acc_rows, acc_cols, rows, cols) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(keys, at_acc, at_ticket)``: the union of two supports given row-major without repeats
    (``ValueError`` otherwise), as sorted keys, and where each block of either side lies in it."""
    acc_keys, keys = block_keys(acc_rows, acc_cols), block_keys(rows, cols)
    if bool((acc_keys[1:] <= acc_keys[:-1]).any()) or bool((keys[1:] <= keys[:-1]).any()):
        raise ValueError("the blocks of the accumulator and of the ticket must be in row-major order without repeats")
    merged, inverse = torch.unique(torch.cat([acc_keys, keys]), return_inverse=True)
    return merged, inverse[:acc_keys.numel()], inverse[acc_keys.numel():]


def sources(at: torch.Tensor, n: int) -> torch.Tensor:
    """For each of the ``n`` blocks of a union, the slot of one side that holds it, or -1."""
    src = torch.full((n,), -1, dtype=torch.long, device=at.device)
    src[at] = torch.arange(at.numel(), device=at.device)
    return src


def strongest(scores: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` blocks of largest score (ties: the earlier block), ascending: the re-pruning."""
    return torch.sort(scores, descending=True, stable=True).indices[:n].sort().values
