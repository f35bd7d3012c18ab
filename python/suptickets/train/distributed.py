"""Data-parallel training over ``torch.distributed`` processes started by ``torchrun``.

Each process holds the whole (sparse) model and runs the forward and the input gradients of its
part of every global batch, its loss scaled as its share of the global batch's mean. The weight
gradients of the sparse layers (``values`` and bias) are not summed over the ranks: every rank
gathers the layers' inputs and output gradients of the whole batch (in rank order, which is the
batch's order) and runs the backward's SDDMM and bias sum on them, the arithmetic one process does
(``BlockSparseWeight.batch_weight_grads``). Since the kernels compute a sample's outputs and input
gradients in an order that does not depend on the batch it comes in, every rank then holds, bit
for bit, the gradients of one process with the same global batch, and with the gradient scores of
the global batch every topology decision is the same as that process's, at every block size.
Dense Linear and Conv2d layers get their weight gradients the same way (the calls autograd makes);
BatchNorm's parameters are summed over the ranks and its statistics stay per process, so a network
with BatchNorm equals one process only approximately. No dense weight or gradient of a sparse layer
is ever communicated. The cost: the weight gradients run on the whole batch on every rank.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

_TIMED_OUT = "suptickets/timed-out/{}"  # the store key where a rank says its collective timed out


class PeerTimeout(RuntimeError):
    """A process of the job did not answer within ``--dist-timeout``."""


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    timeout_s: float = 600.0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: torch.device, timeout_s: float = 600.0) -> Context:
    """Joins the process group ``torchrun`` describes in the environment (gloo on CPU, NCCL
    on CUDA) with a collective timeout of ``timeout_s``; a plain single-process context
    without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(timeout_s=timeout_s)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), timeout_s)


def _store():
    return dist.distributed_c10d._get_default_store()


def is_peer_failure(exc: BaseException) -> bool:
    """True for the errors of a collective whose peer stalled or died (timeout, lost connection)."""
    if isinstance(exc, PeerTimeout):
        return False
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in ("timed out", "timeout", "connection closed",
                                                                      "connection reset", "broken pipe"))


def peer_timeout(ctx: Context, step: int, exc: BaseException) -> PeerTimeout:
    """The one-line error of a stalled or lost peer. Every rank whose collective timed out says
    so in the job's store; after a short grace the ranks that did not are named."""
    silent: list[int] = []
    try:
        store = _store()
        store.set_timeout(timedelta(seconds=5))
        store.set(_TIMED_OUT.format(ctx.rank), str(step))
        time.sleep(min(3.0, max(0.5, ctx.timeout_s / 10)))  # the healthy ranks time out about together
        silent = [r for r in range(ctx.world) if r != ctx.rank and not store.check([_TIMED_OUT.format(r)])]
    except Exception:  # the store itself is gone: say what is known
        pass
    who = ", ".join(f"rank {r}" for r in silent) if silent else "a peer process"
    first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    timed_out = any(w in str(exc).lower() for w in ("timed out", "timeout"))
    what = f"did not answer within --dist-timeout {ctx.timeout_s:g} s" if timed_out else "is gone (connection lost)"
    return PeerTimeout(f"{who} {what} (rank {ctx.rank} waited at step {step}); the job stops ({first})")


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_state(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, 0)


def _keep_dense_batches(module: torch.nn.Module) -> None:
    """A dense Linear or Conv2d keeps its input and output gradient of each step, for the weight
    gradient of the gathered batch (``_dense_batch_grads``)."""
    def hook(mod, inputs, output):
        if torch.is_grad_enabled() and output.requires_grad:
            mod._dp_inputs = inputs[0].detach()
            output.register_hook(lambda g: setattr(mod, "_dp_grad", g.detach()))
    module.register_forward_hook(hook)


def _dense_batch_grads(m: torch.nn.Module):
    """``(dweight, dbias)`` of a dense Linear or Conv2d for the gathered batch, by the calls autograd
    makes on one process (``mm`` of the flattened rows; ``convolution_backward``)."""
    x, g = getattr(m, "_dp_inputs", None), getattr(m, "_dp_grad", None)
    m._dp_inputs = m._dp_grad = None
    if x is None or g is None:
        return None
    from ..sparse.collective import gather_batch
    x, g = gather_batch([x, g])
    if isinstance(m, torch.nn.Linear):
        x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
        return g2.t().mm(x2), (g2.sum(0) if m.bias is not None else None)
    _, dw, db = torch.ops.aten.convolution_backward(
        g, x, m.weight.detach(), [m.out_channels] if m.bias is not None else None, m.stride, m.padding, m.dilation,
        False, [0, 0], m.groups, [False, True, m.bias is not None])
    return dw, db


def keep_batches(model: torch.nn.Module) -> None:
    """Makes every sparse layer, and every dense Linear and Conv2d (zero padding, 2-D inputs for a
    Linear), keep its input and output gradient of each step, for :func:`all_reduce_gradients`."""
    from ..sparse import BlockSparseWeight
    for m in model.modules():
        if isinstance(m, BlockSparseWeight):
            m.capture_every_step(True)
        elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and getattr(m, "padding_mode", "zeros") == "zeros":
            _keep_dense_batches(m)


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """The gradients of the global batch on every rank: a sparse layer's ``values`` and bias, and a
    dense Linear's or Conv2d's weight and bias, from the gathered batch (after :func:`keep_batches`);
    every other parameter's (BatchNorm's) summed over the ranks in one flat buffer per dtype."""
    from ..sparse import BlockSparseWeight
    exact: set[int] = set()
    for m in model.modules():
        if isinstance(m, BlockSparseWeight) and getattr(m, "_capture_always", False):
            grads, weight = m.batch_weight_grads(), m.values
        elif hasattr(m, "_dp_inputs"):
            grads, weight = _dense_batch_grads(m), m.weight
        else:
            continue
        if grads is None:
            continue
        weight.grad = grads[0]
        exact.add(id(weight))
        if m.bias is not None:
            m.bias.grad = grads[1]
            exact.add(id(m.bias))
    grads = [p.grad for p in model.parameters() if p.grad is not None and id(p) not in exact]
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
