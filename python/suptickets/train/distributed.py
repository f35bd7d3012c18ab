"""Data-parallel training over ``torch.distributed`` processes started by ``torchrun``.

Each process holds the whole (sparse) model and computes the gradient of its part of every
global batch, scaled as its share of the global batch's mean loss; ``all_reduce_gradients``
sums the gradients of the parameters, which for a sparse layer are its ``values`` (the
active blocks) and bias: no dense weight or gradient is ever communicated. With the same
seed on every rank, the same gradients and the gradient scores of the global batch (see
``BlockSparseWeight.gradient_scores``), every topology update is identical on all ranks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: torch.device) -> Context:
    """Joins the process group ``torchrun`` describes in the environment (gloo on CPU, NCCL
    on CUDA); a plain single-process context without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_state(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, 0)


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Sums every parameter's gradient over the ranks, in one flat buffer per dtype."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = _flatten_dense_tensors(group)
        dist.all_reduce(flat)
        for g, reduced in zip(group, _unflatten_dense_tensors(flat, group)):
            g.copy_(reduced)


def all_reduce_sum(values: list[float], device) -> list[float]:
    """Sums a few numbers over the ranks (losses, counts)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def layouts_agree(model: torch.nn.Module) -> bool:
    """True when every rank holds the same active blocks in every sparse layer."""
    from ..sparse import BlockSparseWeight
    digest = torch.zeros(2, dtype=torch.float64)
    device = next(model.parameters()).device
    for m in model.modules():
        if isinstance(m, BlockSparseWeight):
            code = (m.layout_rows.double().cpu() * 1_000_003 + m.layout_cols.double().cpu())
            weights = torch.arange(1, code.numel() + 1, dtype=torch.float64)
            digest += torch.stack([code.sum(), (code * weights).sum()])
    low, high = digest.to(device), digest.to(device)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low.cpu(), high.cpu()))
