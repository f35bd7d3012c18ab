"""``select_k``: the ``k`` lowest (or highest) entries of a 1-D score tensor, optionally among
those not marked in ``skip``, in O(n) (the C++ kernel selects by radix, no sort). Ties go to
the lower index, so a selection is reproducible; NaN or inf in any score raises ``ValueError``.
``prune_grow`` is this selection fused with a layout's active blocks."""
from __future__ import annotations

import torch

from . import _extension, backend, precision, reference


def select_k(scores: torch.Tensor, k: int, largest: bool = False, skip: torch.Tensor | None = None) -> torch.Tensor:
    """Indices (int64, ascending) of the ``k`` smallest ``scores`` (``largest``: the ``k``
    largest) among the entries whose ``skip`` is False (every entry without ``skip``).

    Args:
        scores: ``[n]`` float32 or float64.
        k: how many to select, in ``[0, n - skip.sum()]``.
        largest: select the highest scores instead of the lowest.
        skip: ``[n]`` bool, True for entries that may not be selected.
    """
    if scores.dim() != 1:
        raise ValueError(f"select_k: scores must be 1-D, got shape {tuple(scores.shape)}")
    n = scores.numel()
    if skip is not None and (skip.dtype != torch.bool or tuple(skip.shape) != (n,)):
        raise ValueError(f"select_k: skip must be a bool tensor of shape ({n},), got {skip.dtype} "
                         f"{tuple(skip.shape)}")
    candidates = n - (int(torch.count_nonzero(skip)) if skip is not None else 0)
    if not 0 <= int(k) <= candidates:
        raise ValueError(f"select_k: k must be in [0, {candidates}] (entries not skipped), got {k}")
    scores = scores.detach()
    choice = backend.choose("select_k", scores)
    return _RUN[choice](scores, int(k), bool(largest), skip)


def _cpu(scores, k, largest, skip):
    return torch.ops.suptickets.select_k.default(scores, k, largest, None if skip is None else skip.cpu())


_RUN = {"cpu": _cpu, "reference": reference.select_k}


if _extension.available:

    precision.register_float32("suptickets::select_k")

    @torch.library.register_fake("suptickets::select_k")
    def _select_k_fake(scores, k, largest, skip):
        return scores.new_empty((k,), dtype=torch.long)
