"""``SNIP``: single-shot pruning at initialisation by connection sensitivity (Lee et al., 2019)."""
from __future__ import annotations

import torch

from .. import ops
from .base import Method
from .schedule import check_steps
from .topology import LayerUpdate, Topology


class SNIP(Method):
    """Prunes once, before training, to the model's current global density, then trains the
    sparse network on a fixed topology.

    When training starts the sparse layers are made dense: active blocks keep their values,
    the others are drawn from the layer's initial distribution (a dense initialisation, as
    SNIP prunes a dense network). The first ``batches`` steps score instead of updating:
    each block's connection sensitivity ``sum |g * w|`` (g the loss gradient of that step,
    w the initial weight) is summed over them; after the last one the blocks of highest
    sensitivity per weight across all layers are kept (global top-k, at least one block
    per layer) and the others dropped, which sets each layer's density. Training then
    proceeds from the initial weights of the kept blocks.
    """

    def __init__(self, batches: int = 1):
        self.batches = check_steps(batches, "batches")

    def bind(self, total_steps: int) -> None:
        super().bind(total_steps)
        if self.batches >= self.total_steps:
            raise ValueError(f"SNIP scores {self.batches} batches, which leaves no training in total_steps="
                             f"{self.total_steps}")

    def setup(self, topology: Topology) -> list[LayerUpdate]:
        self._target = topology.active_weights()
        self._scores = None
        return topology.densify(0)

    def scores_instead(self, t: int) -> bool:
        return t <= self.batches

    def score(self, t: int, topology: Topology) -> None:
        scores = []
        for _, layer in topology.layers:
            v = layer.values.detach()
            g = layer.values.grad
            sens = torch.zeros(layer.nnz, dtype=torch.float64, device=v.device) if g is None else \
                ops.block_scores((g.detach() * v), "l1").double()
            scores.append(sens)
        self._scores = scores if self._scores is None else [a + b for a, b in zip(self._scores, scores)]

    def is_update(self, t: int) -> bool:
        return t == self.batches

    def update(self, t: int, topology: Topology) -> list[LayerUpdate]:
        if t != self.batches:
            return []
        records = topology.keep_global(t, self._scores, self._target, "snip")
        self._scores = None
        return records

    def state_dict(self) -> dict:
        return {"target": getattr(self, "_target", None), "scores": getattr(self, "_scores", None)}

    def load_state_dict(self, state: dict) -> None:
        self._target, self._scores = state["target"], state["scores"]
