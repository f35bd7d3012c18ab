"""The mechanics of a topology update, written once for every method: block scores ->
selection (``ops.prune_grow``) -> new layout (``BlockLayout.replace_blocks``) -> re-pack of
values and optimizer state (``sparse.repack``). Methods only say when and how much."""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch

from .. import ops
from ..sparse import BlockSparseWeight, repack

log = logging.getLogger("suptickets")

GROWTH = ("gradient", "random")


@dataclass
class LayerUpdate:
    """What one topology change did to one layer (counts in blocks)."""
    step: int
    layer: str
    event: str      # "prune-regrow", "prune" (global magnitude pruning), "snip", "densify", "explore"
    pruned: int
    grown: int
    nnz: int        # active blocks after the change
    density: float  # active fraction after the change

    def as_dict(self) -> dict:
        return asdict(self)


class Topology:
    """The sparse layers of a model and what changes their topology.

    Args:
        model: a model with ``SparseLinear``/``SparseConv2d`` layers.
        optimizer: the optimizer that holds every layer's ``values`` (its state is re-packed).
        generator: the CPU generator of random growth and fresh initialisation.
        score: "l1" or "l2", the block norm of magnitude and gradient scores.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                 score: str = "l1"):
        self.layers = [(n, m) for n, m in model.named_modules() if isinstance(m, BlockSparseWeight)]
        if not self.layers:
            raise ValueError("the model has no SparseLinear/SparseConv2d layer: call st.sparsify(model, ...) first")
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [n for n, m in self.layers if id(m.values) not in owned]
        if missing:
            raise ValueError(f"the optimizer does not hold the values of {', '.join(missing)}: build it from "
                             "model.parameters() after sparsify")
        self.optimizer = optimizer
        self.generator = generator
        self.score = score

    # ---- what the layers hold -------------------------------------------------------

    @staticmethod
    def block_area(layer: BlockSparseWeight) -> int:
        return layer.block_size[0] * layer.block_size[1]

    def active_weights(self) -> int:
        return sum(m.nnz * self.block_area(m) for _, m in self.layers)

    def total_weights(self) -> int:
        return sum(m.weight_shape2d[0] * m.weight_shape2d[1] for _, m in self.layers)

    def density(self) -> float:
        """Active fraction of the sparse layers' weights."""
        return self.active_weights() / self.total_weights()

    def capture_gradients(self, enabled: bool) -> None:
        for _, m in self.layers:
            m.capture_gradients(enabled)

    # ---- scores ------------------------------------------------------------------------

    def magnitude(self, layer: BlockSparseWeight) -> torch.Tensor:
        return ops.block_scores(layer.values.detach(), self.score)

    def grow_scores(self, layer: BlockSparseWeight, growth: str) -> torch.Tensor:
        """Score of every block of the grid: the fused gradient score, or uniform noise."""
        if growth == "gradient":
            return layer.gradient_scores(self.score)
        noise = torch.rand(layer.layout.grid, generator=self.generator, dtype=torch.float64)
        return noise.to(layer.values.device)

    # ---- changes -------------------------------------------------------------------------

    def _record(self, step, name, layer, event, pruned, grown) -> LayerUpdate:
        rec = LayerUpdate(step, name, event, int(pruned), int(grown), layer.nnz, layer.density)
        log.info("step %d %s %s: -%d +%d blocks, nnz %d (density %.4f)", step, event, name, rec.pruned, rec.grown,
                 rec.nnz, rec.density)
        return rec

    def prune_regrow(self, step: int, name: str, layer: BlockSparseWeight, k: int, growth: str,
                     grow_scores: torch.Tensor | None = None, event: str = "prune-regrow") -> LayerUpdate:
        """Drops the ``k`` lowest-magnitude blocks of ``layer`` and grows ``k`` by ``growth``
        ("gradient" or "random"), or by the given ``grow_scores`` grid; grown blocks and their
        optimizer state start at zero. ``event`` names the change in the record. A grid of more
        than ``CHUNK_BLOCKS`` blocks (``(1, 1)`` blocks on a large layer) is scored and selected
        in pieces of block-rows, with the same result, so no score grid of the weight's size exists."""
        k = min(int(k), layer.nnz)
        if k > 0:
            layout = layer.layout
            try:
                if grow_scores is None and layout.num_blocks > self.CHUNK_BLOCKS:
                    drop, grow = self._select_by_rows(layer, k, growth)
                else:
                    if grow_scores is None:
                        grow_scores = self.grow_scores(layer, growth)
                    drop, grow = ops.prune_grow(self.magnitude(layer), grow_scores, layout, k)
            except ValueError as exc:  # NaN or inf scores: name the layer and the step
                raise ValueError(f"step {step}, layer {name!r}: {exc} (training diverged: lower the learning "
                                 "rate)") from None
            new_layout, src = layout.replace_blocks(drop, grow)
            repack(layer, new_layout, src, self.optimizer)
        return self._record(step, name, layer, event, k, k)

    # The most blocks a score grid is built for at once (4 MiB of float32 scores).
    CHUNK_BLOCKS = 1 << 20

    def _select_by_rows(self, layer: BlockSparseWeight, k: int, growth: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``ops.prune_grow(magnitude, grow_scores, layout, k)`` with the grow scores made and
        selected a piece of block-rows at a time: each piece's ``k`` best inactive blocks (ties to
        the lower index, as ``prune_grow``), merged into the ``k`` best so far."""
        layout = layer.layout
        drop = ops.select_k(self.magnitude(layer), k)
        kept = torch.ones(layout.nnz, dtype=torch.bool, device=drop.device)
        kept[drop] = False
        rows, cols = layout.rows[kept.to(layout.rows.device)], layout.cols[kept.to(layout.cols.device)]
        n_rows, n_cols = layout.grid
        step_rows = max(1, self.CHUNK_BLOCKS // n_cols)
        if growth == "gradient":
            pieces = layer.gradient_score_rows(self.score, step_rows)
        else:
            pieces = ((r0, torch.rand((min(step_rows, n_rows - r0), n_cols), generator=self.generator,
                                      dtype=torch.float64).to(layer.values.device))
                      for r0 in range(0, n_rows, step_rows))
        best_scores, best = None, None
        for r0, scores in pieces:
            inside = (rows >= r0) & (rows < r0 + scores.shape[0])
            active = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
            active[((rows[inside] - r0).long() * n_cols + cols[inside].long()).to(scores.device)] = True
            take = min(k, scores.numel() - int(torch.count_nonzero(inside)))
            grown = ops.select_k(scores.flatten(), take, largest=True, skip=active).to(scores.device)
            found = scores.flatten()[grown]
            grown = grown + r0 * n_cols
            if best is not None:  # the earlier pieces' blocks have lower indices: ties keep them first
                found, grown = torch.cat([best_scores, found]), torch.cat([best, grown])
            order = torch.sort(found, descending=True, stable=True).indices[:k]
            best_scores, best = found[order], grown[order]
        return drop, torch.sort(best).values

    def keep_global(self, step: int, scores: list[torch.Tensor], keep_weights: int, event: str) -> list[LayerUpdate]:
        """Keeps the blocks of highest score per weight across all layers, ``keep_weights``
        weights in total (in whole blocks), at least one block per layer; drops the rest."""
        drops = select_global(scores, [self.block_area(m) for _, m in self.layers], keep_weights)
        records = []
        for (name, layer), drop in zip(self.layers, drops):
            if drop.numel():
                new_layout, src = layer.layout.replace_blocks(drop.to(layer.layout.device))
                repack(layer, new_layout, src, self.optimizer)
            records.append(self._record(step, name, layer, event, drop.numel(), 0))
        return records

    def densify(self, step: int) -> list[LayerUpdate]:
        """Makes every layer fully dense: active blocks keep their values, the others are drawn
        from the layer's initial distribution ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
        records = []
        for name, layer in self.layers:
            before = layer.nnz
            layout = layer.layout
            grow = (~layout.mask().flatten()).nonzero().squeeze(1)
            new_layout, src = layout.replace_blocks(grow=grow)
            repack(layer, new_layout, src, self.optimizer)
            bound = 1.0 / math.sqrt(layer.weight_shape2d[1])
            fresh = torch.rand((int((src < 0).sum()), *layer.block_size), generator=self.generator,
                               dtype=torch.float64)
            with torch.no_grad():
                layer.values[src.to(layer.values.device) < 0] = ((fresh * 2 - 1) * bound).to(layer.values)
            records.append(self._record(step, name, layer, "densify", 0, layer.nnz - before))
        return records


def select_global(scores: list[torch.Tensor], areas: list[int], keep_weights: int) -> list[torch.Tensor]:
    """Slots to drop per layer so that the blocks kept, ranked by score per weight across
    layers (ties: earlier layer, lower slot), hold ``keep_weights`` weights; each layer keeps
    at least its best block. Equal block areas select exactly ``round(keep_weights/area)``
    blocks with the radix selection of ``ops.select_k``; mixed areas fill greedily."""
    per_weight = [s.detach().double().cpu() / a for s, a in zip(scores, areas)]
    sizes = [s.numel() for s in per_weight]
    flat = torch.cat(per_weight)
    big = torch.finfo(torch.float64).max
    offset = 0
    for n in sizes:  # each layer's best block is kept
        if n:
            flat[offset + int(torch.argmax(flat[offset:offset + n]))] = big
        offset += n
    if len(set(areas)) == 1:
        keep = min(len(flat), max(sum(1 for n in sizes if n), round(keep_weights / areas[0])))
        drop = ops.select_k(flat, len(flat) - keep)
        dropped = torch.zeros(len(flat), dtype=torch.bool)
        dropped[drop] = True
    else:
        area = torch.cat([torch.full((n,), a, dtype=torch.long) for n, a in zip(sizes, areas)])
        order = torch.sort(flat, descending=True, stable=True).indices
        kept = (area[order].cumsum(0) <= keep_weights) | (flat[order] == big)
        dropped = torch.ones(len(flat), dtype=torch.bool)
        dropped[order[kept]] = False
    return [d.nonzero().squeeze(1) for d in dropped.split(sizes)]
