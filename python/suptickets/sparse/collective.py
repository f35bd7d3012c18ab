"""Across processes of ``torch.distributed``: what a layer's gradient score needs to be the
same on every rank (the score of the whole global batch, not of one rank's part)."""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes of the default group (1 without ``torch.distributed``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_batch(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor concatenated along dim 0 over the ranks of the default group, in rank
    order (the ranks' parts may differ in length); the tensors themselves with one process."""
    if world_size() == 1:
        return tensors
    out = []
    for t in tensors:
        t = t.contiguous()
        n = torch.tensor([t.shape[0]], device=t.device)
        sizes = [torch.zeros_like(n) for _ in range(world_size())]
        dist.all_gather(sizes, n)
        longest = int(max(s.item() for s in sizes))
        padded = t.new_zeros((longest, *t.shape[1:]))
        padded[:t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        out.append(torch.cat([p[:int(s.item())] for p, s in zip(parts, sizes)]))
    return out
