"""``prune_grow``: the fused selection of a topology update.

In one call: the ``k_drop`` active slots of lowest score go out, and the ``k_grow``
blocks of highest score among those inactive once they are out (a block just dropped
may come back) come in. Ties go to the lower slot or block index, so an update is
reproducible. The C++ kernel selects by radix (O(n), no sort), which matters for
``(1, 1)`` blocks, whose grid is as large as the weight.
"""
from __future__ import annotations

import torch

from . import _extension, backend, precision, reference


def prune_grow(drop_scores: torch.Tensor, grow_scores: torch.Tensor | None, layout, k_drop: int,
               k_grow: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Selects the slots to drop and the blocks to grow.

    Args:
        drop_scores: ``[layout.nnz]`` score of each active slot (lowest are dropped).
        grow_scores: ``[R/br, C/bc]`` score of every block of the grid (highest are grown);
            ``None`` when ``k_grow`` is 0.
        layout: the current ``BlockLayout`` (``select_k`` selects without one).
        k_drop: how many slots to drop, in ``[0, nnz]``.
        k_grow: how many blocks to grow (default ``k_drop``).

    Returns:
        ``(drop_slots, grow_blocks)``: int64 ascending; ``grow_blocks`` are flat block ids
        ``r * (C/bc) + c``. NaN or inf in a score raises ``ValueError``.
    """
    if k_grow is None:
        k_grow = k_drop
    nnz = layout.nnz
    if drop_scores.dim() != 1 or drop_scores.numel() != nnz:
        raise ValueError(f"prune_grow: drop_scores must be [nnz={nnz}], got shape {tuple(drop_scores.shape)}")
    if not 0 <= int(k_drop) <= nnz:
        raise ValueError(f"prune_grow: k_drop must be in [0, {nnz}], got {k_drop}")
    free = layout.num_blocks - nnz + int(k_drop)
    if not 0 <= int(k_grow) <= free:
        raise ValueError(f"prune_grow: k_grow must be in [0, {free}] (inactive blocks once k_drop are out), "
                         f"got {k_grow}")
    if k_grow:
        if grow_scores is None or tuple(grow_scores.shape) != layout.grid:
            got = None if grow_scores is None else tuple(grow_scores.shape)
            raise ValueError(f"prune_grow: grow_scores must be the block grid {layout.grid}, got {got}")
    else:
        grow_scores = drop_scores.new_empty((0, 0))
    drop_scores, grow_scores = drop_scores.detach(), grow_scores.detach()
    choice = backend.choose("prune_grow", drop_scores, grow_scores)
    return _RUN[choice](drop_scores, grow_scores, layout.rows, layout.cols, int(k_drop), int(k_grow))


def _cpu(drop_scores, grow_scores, rows, cols, k_drop, k_grow):
    return torch.ops.suptickets.prune_grow.default(drop_scores, grow_scores, rows.cpu(), cols.cpu(), k_drop, k_grow)


_RUN = {"cpu": _cpu, "reference": reference.prune_grow}


if _extension.available:

    precision.register_float32("suptickets::prune_grow")

    @torch.library.register_fake("suptickets::prune_grow")
    def _prune_grow_fake(drop_scores, grow_scores, rows, cols, k_drop, k_grow):
        return drop_scores.new_empty((k_drop,), dtype=torch.long), drop_scores.new_empty((k_grow,), dtype=torch.long)
