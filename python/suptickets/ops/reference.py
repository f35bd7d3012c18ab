"""Plain-PyTorch reference of every suptickets op: the test oracle and the last fallback.

Each function takes the same arguments as its public op in ``suptickets.ops`` and is
differentiable by ordinary autograd (float64 ``gradcheck`` runs on it). It builds the
dense weight, so it is exactly as slow as dense training; correctness is its only job.

``layout`` is a ``suptickets.BlockLayout`` (``shape`` (R, C), ``block_size`` (br, bc), int32
``rows``/``cols`` of the active blocks); the dense weight is its ``dense_weight``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.nn.grad

from . import block_union
from .merge_rule import merge_weights


def dense_weight(values: torch.Tensor, layout) -> torch.Tensor:
    """The ``[R, C]`` matrix whose block ``(rows[s], cols[s])`` is ``values[s]``, zeros elsewhere
    (``BlockLayout.dense_weight``)."""
    return layout.dense_weight(values)


def conv_weight(values: torch.Tensor, layout, kernel_size) -> torch.Tensor:
    """The 4-D conv weight ``[out, in, kh, kw]`` whose 2-D view ``W.permute(0, 2, 3, 1).reshape(out, kh*kw*in)``
    is :func:`dense_weight` (``BlockLayout.conv_weight``)."""
    return layout.conv_weight(values, kernel_size)


def bsr_linear(x, values, layout, bias=None):
    """``x @ W.T + bias`` for ``x[..., C]``; returns ``[..., R]``."""
    return F.linear(x, dense_weight(values, layout), bias)


def bsr_conv2d(x, values, layout, bias=None, *, kernel_size, stride=1, padding=0, dilation=1):
    """``conv2d(x, W, bias)`` for NCHW ``x`` with the block-sparse weight of ``layout``."""
    return F.conv2d(x, conv_weight(values, layout, kernel_size), bias, stride, padding, dilation)


# ---- topology maintenance --------------------------------------------------------------


def block_norms(matrix: torch.Tensor, block_size, kind: str = "l1") -> torch.Tensor:
    """Grid ``[R/br, C/bc]`` of the L1 or L2 norms of the ``(br, bc)`` blocks of a dense ``[R, C]``."""
    R, C = matrix.shape
    br, bc = block_size
    grid = matrix.reshape(R // br, br, C // bc, bc)
    return grid.abs().sum((1, 3)) if kind == "l1" else grid.square().sum((1, 3)).sqrt()


def block_scores(values: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """``[nnz]``: the L1 or L2 norm of each block of ``values[nnz, br, bc]``."""
    return values.abs().sum((1, 2)) if kind == "l1" else values.square().sum((1, 2)).sqrt()


def linear_grad_scores(x, grad_out, block_size, kind: str = "l1") -> torch.Tensor:
    """Block norms of the dense weight gradient ``dW = dY^T X`` of a linear layer (``x[..., C]``,
    ``grad_out[..., R]``)."""
    dw = grad_out.reshape(-1, grad_out.shape[-1]).T @ x.reshape(-1, x.shape[-1])
    return block_norms(dw, block_size, kind)


def conv2d_grad_scores(x, grad_out, block_size, *, kernel_size, stride=1, padding=0, dilation=1,
                       kind: str = "l1") -> torch.Tensor:
    """Block norms of the dense conv weight gradient, in the 2-D view ``[out, kh*kw*in]``."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    shape = (grad_out.shape[1], x.shape[1], kh, kw)
    dw = torch.nn.grad.conv2d_weight(x, shape, grad_out, stride, padding, dilation)
    return block_norms(dw.permute(0, 2, 3, 1).reshape(shape[0], -1), block_size, kind)


def _check_finite(scores: torch.Tensor, what: str) -> None:
    if not torch.isfinite(scores).all():
        raise ValueError(f"{what} contain NaN or inf")


def select_k(scores, k: int, largest: bool = False, skip=None):
    """Indices (int64, ascending) of the ``k`` lowest ``scores[n]`` (``largest``: highest) among
    the entries whose ``skip`` is False; ties go to the lower index."""
    _check_finite(scores, "scores")
    candidates = torch.arange(scores.numel(), device=scores.device)
    if skip is not None:
        candidates = candidates[~skip.to(scores.device)]
    if k > candidates.numel():
        raise ValueError(f"cannot select {k} of {candidates.numel()} candidate scores")
    order = torch.sort(scores[candidates], descending=largest, stable=True).indices
    return candidates[order[:k]].sort().values


def prune_grow(drop_scores, grow_scores, rows, cols, k_drop: int, k_grow: int):
    """``(drop, grow)``: the ``k_drop`` slots of lowest ``drop_scores[nnz]`` and the ``k_grow`` blocks
    (flat ids ``r * gc + c`` of the grid ``grow_scores[gr, gc]``) of highest score among those not
    active once ``drop`` is out; ties go to the lower index. Both int64, ascending."""
    drop = select_k(drop_scores, k_drop)
    if k_grow == 0:
        return drop, torch.zeros(0, dtype=torch.long, device=drop_scores.device)
    _check_finite(grow_scores, "grow scores")
    gc = grow_scores.shape[1]
    active = torch.zeros(grow_scores.numel(), dtype=torch.bool, device=grow_scores.device)
    ids = rows.long() * gc + cols.long()
    active[ids] = True
    active[ids[drop]] = False
    return drop, select_k(grow_scores.flatten(), k_grow, largest=True, skip=active)


# ---- layout index arithmetic -----------------------------------------------------------


def layout_index(rows, cols, grid):
    """``(row_ptr, col_ptr, col_perm)`` (int32) of row-major slots ``rows``/``cols`` in a ``grid``."""
    rows64, cols64 = rows.long(), cols.long()
    zero = torch.zeros(1, dtype=torch.int64, device=rows.device)
    row_ptr = torch.cat([zero, torch.bincount(rows64, minlength=grid[0]).cumsum(0)]).to(torch.int32)
    col_ptr = torch.cat([zero, torch.bincount(cols64, minlength=grid[1]).cumsum(0)]).to(torch.int32)
    col_perm = torch.sort(cols64, stable=True).indices.to(torch.int32)  # row order kept within a column
    return row_ptr, col_ptr, col_perm


def merge_blocks(rows, cols, drop, grow, grid_cols: int):
    """Row-major slots without slots ``drop`` and with blocks ``grow`` (flat ids, both ascending):
    new ``rows``, ``cols`` (int32) and ``src`` (int64: old slot, or -1 for a grown block)."""
    device, nnz = rows.device, rows.numel()
    if drop.numel() and (drop.min() < 0 or drop.max() >= nnz):
        raise ValueError(f"drop slots must lie in [0, {nnz})")
    if (drop[1:] <= drop[:-1]).any():
        raise ValueError("drop slots must be ascending and must not repeat")
    if (grow[1:] <= grow[:-1]).any():
        raise ValueError("grow blocks must be ascending without repeats")
    drop, grow = drop.contiguous(), grow.contiguous()
    keep = torch.ones(nnz, dtype=torch.bool, device=device)
    keep[drop] = False
    ids = rows.long() * grid_cols + cols.long()
    kept_ids, kept_src = ids[keep].contiguous(), keep.nonzero().squeeze(1)
    at = torch.searchsorted(kept_ids, grow)
    hit = at < kept_ids.numel()
    if hit.any() and (kept_ids[at[hit]] == grow[hit]).any():
        raise ValueError("a grow block is already active")
    pos_kept = torch.arange(kept_ids.numel(), device=device) + torch.searchsorted(grow, kept_ids)
    pos_grow = torch.arange(grow.numel(), device=device) + at
    new_ids = torch.empty(kept_ids.numel() + grow.numel(), dtype=torch.long, device=device)
    new_ids[pos_kept], new_ids[pos_grow] = kept_ids, grow
    src = torch.full((new_ids.numel(),), -1, dtype=torch.long, device=device)
    src[pos_kept] = kept_src
    return (new_ids // grid_cols).to(torch.int32), (new_ids % grid_cols).to(torch.int32), src


def gather_slots(t, src):
    """``out[s] = t[src[s]]`` for a ``[nnz, ...]`` tensor, zeros where ``src[s] == -1``."""
    if src.numel() and (src.min() < -1 or src.max() >= t.shape[0]):
        raise ValueError(f"src entries must be -1 or an old slot in [0, {t.shape[0]})")
    if t.shape[0] == 0:
        return t.new_zeros((src.numel(), *t.shape[1:]))
    out = t.index_select(0, src.clamp(min=0))
    return out.masked_fill_((src < 0).view(-1, *([1] * (t.dim() - 1))), 0)


# ---- Sup-tickets superposition -------------------------------------------------------------


def superpose_union(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t: int, mode: str, beta: float,
                    kind: str = "l1"):
    """The accumulator's and the ticket's blocks merged on the union of their supports (row-major):
    ``(values, rows, cols, counts, scores)``. CIA: ``(t-1)/t * acc + 1/t * ticket``; CIMA:
    ``beta * acc + (1-beta) * ticket`` (a block missing from one side counts as zeros there);
    CAA: ``(n * acc + ticket) / (n + 1)`` where the ticket has the block (``n`` its count),
    the accumulator's block unchanged elsewhere. ``counts`` add one where the ticket has the
    block; ``scores`` are the merged blocks' norms."""
    keys, ia, it = block_union.union(acc_rows, acc_cols, rows, cols)
    n = keys.numel()
    acc = acc_values.new_zeros((n, *acc_values.shape[1:]))
    tic = torch.zeros_like(acc)
    acc[ia], tic[it] = acc_values, values
    counts = torch.zeros(n, dtype=torch.int32, device=acc.device)
    counts[ia] = acc_counts
    in_ticket = torch.zeros(n, dtype=torch.bool, device=acc.device)
    in_ticket[it] = True
    if mode in ("cia", "cima"):
        a, b = merge_weights(mode, t, beta)
        out = acc * a + tic * b
    else:
        n_ = counts.to(acc.dtype).view(-1, 1, 1)
        out = torch.where(in_ticket.view(-1, 1, 1), (n_ * acc + tic) * (1 / (n_ + 1)), acc)
    counts = counts + in_ticket.int()
    return (out, *block_union.rows_cols(keys), counts, block_scores(out, kind))


def superpose_(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t: int, mode: str, beta: float,
               kind: str = "l1"):
    """``superpose_union``, then the ``len(acc_values)`` merged blocks of largest norm (ties: the
    earlier block) are written into ``acc_values`` in place. Returns their ``(rows, cols, counts)``."""
    out, urows, ucols, ucounts, scores = superpose_union(acc_values, acc_rows, acc_cols, acc_counts, values, rows,
                                                         cols, t, mode, beta, kind)
    kept = block_union.strongest(scores, acc_values.shape[0])
    acc_values.copy_(out[kept])
    return urows[kept], ucols[kept], ucounts[kept]
