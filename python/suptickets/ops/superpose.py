"""Superposition of Sup-tickets (DESIGN.md, "Sup-tickets, exactly"): a ticket's sparse weight
merged into the sparse accumulator of the superposed ticket, on the union of their
supports, then magnitude re-pruning.

- ``superpose_union``: the merged blocks (at most both supports together) with their
  counts and block norms, for a caller that re-prunes itself (one global threshold).
- ``superpose_``: the same merge, then the blocks of largest norm, as many as the
  accumulator holds, written into the accumulator's values in place (per-layer re-pruning).

The accumulator is ``(values[n, br, bc], rows, cols, counts)``: row-major slots like a
``BlockLayout``'s, ``counts`` (int32) how many merged tickets had each block since it last
entered the accumulator (CAA divides by it). ``t`` is the number of the ticket being merged
(the accumulator holds tickets ``1..t-1``, ``t >= 2``). No ``[R, C]`` tensor is formed.
"""
from __future__ import annotations

import torch

from . import _extension, _triton, backend, block_union, precision, reference
from .merge_rule import MODES, merge_weights


def _check(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t, mode, beta, kind):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if kind not in ("l1", "l2"):
        raise ValueError(f"kind must be 'l1' or 'l2'; got {kind!r}")
    if mode == "cima" and not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if mode == "cia" and int(t) < 2:
        raise ValueError(f"t (the number of the ticket being merged) must be >= 2, got {t}")
    if acc_values.dim() != 3 or values.dim() != 3 or acc_values.shape[1:] != values.shape[1:]:
        raise ValueError(f"acc_values and values must be [n, br, bc] with the same blocks, got "
                         f"{tuple(acc_values.shape)} and {tuple(values.shape)}")
    if acc_values.dtype != values.dtype or acc_values.device != values.device:
        raise TypeError(f"acc_values ({acc_values.dtype}, {acc_values.device}) and values ({values.dtype}, "
                        f"{values.device}) must have the same dtype and device")
    for name, idx, n in (("acc_rows", acc_rows, acc_values.shape[0]), ("acc_cols", acc_cols, acc_values.shape[0]),
                         ("acc_counts", acc_counts, acc_values.shape[0]), ("rows", rows, values.shape[0]),
                         ("cols", cols, values.shape[0])):
        if idx.dtype != torch.int32 or idx.dim() != 1 or idx.numel() != n:
            raise ValueError(f"{name} must be a 1-D int32 tensor of {n} entries, got {idx.dtype} {tuple(idx.shape)}")


def _kernel_args(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols):
    return (acc_values, acc_rows.cpu(), acc_cols.cpu(), acc_counts.cpu(), values.detach(), rows.cpu(), cols.cpu())


def _choose(acc_values, values) -> str:
    return backend.choose("superpose", acc_values, values, block_size=values.shape[1:])


def _triton_union(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t, mode, beta, kind):
    """The union's index work in torch (``block_union``), the merge arithmetic in the Triton
    operator; scores in float32."""
    keys, at_acc, at_ticket = block_union.union(acc_rows, acc_cols, rows, cols)
    a, b = merge_weights(mode, t, beta) if mode != "caa" else (0.0, 0.0)  # CAA weighs by the counts
    out, counts, scores = torch.ops.suptickets.triton_superpose_merge(
        acc_values.contiguous(), acc_counts.contiguous(), block_union.sources(at_acc, keys.numel()),
        values.contiguous(), block_union.sources(at_ticket, keys.numel()), mode, a, b, kind)
    return out, *block_union.rows_cols(keys), counts, scores


def _cpu_union(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t, mode, beta, kind):
    return torch.ops.suptickets.superpose_union.default(
        *_kernel_args(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols), t, mode, beta, kind)


def _triton_scored_union(*args):
    *merged, scores = _triton_union(*args)
    return (*merged, scores.to(args[0].dtype))


def _cpu_superpose(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t, mode, beta, kind):
    return torch.ops.suptickets.superpose_.default(
        *_kernel_args(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols), t, mode, beta, kind)


def _triton_superpose(acc_values, *args):
    out, urows, ucols, ucounts, scores = _triton_union(acc_values, *args)
    kept = block_union.strongest(scores, acc_values.shape[0])
    acc_values.copy_(out[kept])
    return urows[kept], ucols[kept], ucounts[kept]


_RUN_UNION = {"cpu": _cpu_union, "triton": _triton_scored_union, "reference": reference.superpose_union}
_RUN_SUPERPOSE = {"cpu": _cpu_superpose, "triton": _triton_superpose, "reference": reference.superpose_}


def superpose_union(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t: int, mode: str = "cia",
                    beta: float = 0.8, kind: str = "l1"):
    """``(values, rows, cols, counts, scores)`` of the merged blocks, row-major (see module doc)."""
    _check(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t, mode, beta, kind)
    acc_values, values = precision.in_float32(acc_values.detach(), values.detach())
    return _RUN_UNION[_choose(acc_values, values)](acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols,
                                                   int(t), mode, float(beta), kind)


def superpose_(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t: int, mode: str = "cia",
               beta: float = 0.8, kind: str = "l1"):
    """Merges the ticket into the accumulator and keeps, in ``acc_values`` (written in place,
    contiguous), its ``len(acc_values)`` blocks of largest norm (ties: the earlier block).
    Returns the accumulator's new ``(rows, cols, counts)``."""
    _check(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t, mode, beta, kind)
    if not acc_values.is_contiguous():
        raise ValueError("acc_values must be contiguous (it is written in place)")
    if acc_values.dtype in precision.LOW_PRECISION:  # merged in float32, then written back
        acc32 = acc_values.detach().float()
        result = superpose_(acc32, acc_rows, acc_cols, acc_counts, values.float(), rows, cols, t, mode, beta, kind)
        with torch.no_grad():
            acc_values.copy_(acc32)
        return result
    with torch.no_grad():
        return _RUN_SUPERPOSE[_choose(acc_values, values)](acc_values, acc_rows, acc_cols, acc_counts,
                                                           values.detach(), rows, cols, int(t), mode, float(beta),
                                                           kind)


if _extension.available:

    precision.register_float32("suptickets::superpose_union")
    precision.register_float32("suptickets::superpose_")

    @torch.library.register_fake("suptickets::superpose_union")
    def _superpose_union_fake(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t, rule, beta, kind):
        n = torch.library.get_ctx().new_dynamic_size()
        idx = acc_rows.new_empty((n,))
        return (acc_values.new_empty((n, *acc_values.shape[1:])), idx, idx.clone(), idx.clone(),
                acc_values.new_empty((n,)))

    @torch.library.register_fake("suptickets::superpose_")
    def _superpose_fake(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, t, rule, beta, kind):
        n = acc_values.shape[0]
        return acc_rows.new_empty((n,)), acc_cols.new_empty((n,)), acc_counts.new_empty((n,))


@_triton.on_load
def _register_triton(kernels) -> None:
    @_triton.define("suptickets::triton_superpose_merge")
    def _merge(acc_values: torch.Tensor, acc_counts: torch.Tensor, src_acc: torch.Tensor, values: torch.Tensor,
               src_ticket: torch.Tensor, rule: str, a: float, b: float,
               kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return kernels.superpose.merge(acc_values, acc_counts, src_acc, values, src_ticket, rule, a, b, kind)

    precision.register_float32("suptickets::triton_superpose_merge", ("cuda",))

    @torch.library.register_fake("suptickets::triton_superpose_merge")
    def _merge_fake(acc_values, acc_counts, src_acc, values, src_ticket, rule, a, b, kind):
        n = src_acc.shape[0]
        return (acc_values.new_empty((n, *acc_values.shape[1:])), acc_counts.new_empty((n,)),
                acc_values.new_empty((n,), dtype=torch.float32))
