"""Triton kernel of the Sup-tickets merge: for each block of the union of the accumulator's and
the ticket's supports (the union and the source slots are index work done by the caller), the
running average of the two blocks (CIA / CIMA weights, or CAA's per-block count), the new
count and the block's norm, in one pass. A program handles ``SLOTS`` union blocks."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .block_scores import KINDS

RULES = {"cia": 0, "caa": 1, "cima": 0}  # CIMA is CIA's formula with its own weights


@triton.jit
def _merge(acc_ptr, acc_counts_ptr, src_acc_ptr, tic_ptr, src_tic_ptr, out_ptr, out_counts_ptr, scores_ptr, n,
           a, b, CAA: tl.constexpr, KIND: tl.constexpr, AREA: tl.constexpr, SLOTS: tl.constexpr):
    u = tl.cast(tl.program_id(0) * SLOTS + tl.arange(0, SLOTS), tl.int64)
    in_u = u < n
    e = tl.arange(0, AREA)
    sa = tl.cast(tl.load(src_acc_ptr + u, mask=in_u, other=-1), tl.int64)
    st = tl.cast(tl.load(src_tic_ptr + u, mask=in_u, other=-1), tl.int64)
    has_a = sa >= 0
    has_t = st >= 0
    x = tl.load(acc_ptr + sa[:, None] * AREA + e[None, :], mask=has_a[:, None], other=0.0).to(tl.float32)
    y = tl.load(tic_ptr + st[:, None] * AREA + e[None, :], mask=has_t[:, None], other=0.0).to(tl.float32)
    count = tl.load(acc_counts_ptr + sa, mask=has_a, other=0)
    if CAA:  # (n * acc + ticket) / (n + 1) where the ticket has the block, the accumulator's block elsewhere
        nf = count.to(tl.float32)[:, None]
        merged = tl.where(has_t[:, None], (nf * x + y) * (1.0 / (nf + 1.0)), x)
    else:
        merged = a * x + b * y
    new_count = count + has_t.to(tl.int32)
    tl.store(out_ptr + u[:, None] * AREA + e[None, :], merged.to(out_ptr.dtype.element_ty), mask=in_u[:, None])
    tl.store(out_counts_ptr + u, new_count, mask=in_u)
    if KIND == 1:
        score = tl.sum(tl.abs(merged), axis=1)
    else:
        score = tl.sqrt(tl.sum(merged * merged, axis=1))
    tl.store(scores_ptr + u, score, mask=in_u)


def merge(acc_values, acc_counts, src_acc, values, src_ticket, rule: str, a: float, b: float, kind: str):
    """Merged ``values[n, BR, BC]`` (dtype of the inputs), ``counts`` (int32) and fp32 ``scores``
    of the ``n`` union blocks; ``src_acc``/``src_ticket`` (int64 ``[n]``) give each union block's
    slot in the accumulator / the ticket, or -1."""
    n = src_acc.numel()
    BR, BC = values.shape[1:]
    area = BR * BC
    out = values.new_empty((n, BR, BC))
    counts = torch.empty(n, dtype=torch.int32, device=values.device)
    scores = torch.empty(n, dtype=torch.float32, device=values.device)
    slots = max(1, min(64, 4096 // area))
    if n:
        torch.library.wrap_triton(_merge)[(triton.cdiv(n, slots),)](
            acc_values, acc_counts, src_acc, values, src_ticket, out, counts, scores, n, float(a), float(b),
            CAA=RULES[rule] == 1, KIND=KINDS[kind], AREA=area, SLOTS=slots)
    return out, counts, scores
