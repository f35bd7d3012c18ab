"""``GraNet``: gradual pruning with zero-cost neuroregeneration (Liu et al., 2021)."""
from __future__ import annotations

import math

from .base import Method
from .schedule import check_fraction, check_steps, cosine_decay, cubic_density
from .topology import LayerUpdate, Topology

# How far the sparse layers' density may be from initial_density (per-layer rounding, and ERK
# layers that sparsify keeps dense); the schedule starts from the measured density.
_DENSITY_SLACK = 0.05


class GraNet(Method):
    """From ``initial_density`` (the density the model was sparsified to) down to
    ``final_density`` by global magnitude pruning on the cubic schedule

        d_t = d_f + (d_i - d_f) * (1 - (t - t0) / (n * dT))^3,   t = t0, t0 + dT, ..., t0 + n*dT,

    with ``t0 = prune_start``, ``dT = update_every``, ``t0 + n*dT = prune_end`` (so the
    global density is exactly ``final_density``, in whole blocks, at ``prune_end``), plus
    neuroregeneration at every update from ``prune_start`` to the end of training: each
    layer drops ``floor(r_t * nnz)`` blocks by magnitude and regrows as many by gradient,
    with ``r_t = regrow_fraction/2 * (1 + cos(pi t / T))`` (T = ``total_steps``).
    Global pruning compares blocks by magnitude per weight and keeps at least one block
    per layer. Densities are those of the sparse layers: ``d_i`` is their density when
    training starts, which must be within 0.05 of ``initial_density``.
    """

    growth = "gradient"

    @staticmethod
    def starting_density(options) -> float:
        return options.granet_initial_density

    @classmethod
    def from_options(cls, options, total_steps: int, say=print) -> GraNet:
        final = 1.0 - options.sparsity
        if options.granet_initial_density <= final:
            raise ValueError(f"--granet-initial-density ({options.granet_initial_density}) must be above the final "
                             f"density 1 - --sparsity ({final:.4f})")
        every = options.update_every
        prune_end = math.floor(options.granet_prune_end * total_steps / every) * every
        if prune_end < every:
            raise ValueError(f"--granet-prune-end {options.granet_prune_end} of {total_steps} steps ends before the "
                             f"first update (--update-every {every})")
        return cls(options.granet_initial_density, final, prune_start=0, prune_end=prune_end, update_every=every,
                   regrow_fraction=options.drop_fraction)

    def __init__(self, initial_density: float, final_density: float, prune_start: int, prune_end: int,
                 update_every: int, regrow_fraction: float = 0.5):
        self.initial_density = check_fraction(initial_density, "initial_density", include_one=True)
        self.final_density = check_fraction(final_density, "final_density", include_one=True)
        if self.final_density >= self.initial_density:
            raise ValueError(f"final_density ({final_density}) must be below initial_density ({initial_density})")
        self.prune_start = check_steps(prune_start, "prune_start", minimum=0)
        self.prune_end = check_steps(prune_end, "prune_end", minimum=1)
        self.update_every = check_steps(update_every, "update_every")
        if self.prune_end <= self.prune_start:
            raise ValueError(f"prune_end ({prune_end}) must come after prune_start ({prune_start})")
        if (self.prune_end - self.prune_start) % self.update_every:
            raise ValueError(f"prune_end - prune_start ({self.prune_end - self.prune_start}) must be a multiple of "
                             f"update_every ({self.update_every}) so that pruning ends on an update")
        self.regrow_fraction = check_fraction(regrow_fraction, "regrow_fraction")

    def bind(self, total_steps: int) -> None:
        super().bind(total_steps)
        if self.prune_end > self.total_steps:
            raise ValueError(f"prune_end ({self.prune_end}) must be at most total_steps ({self.total_steps})")

    def setup(self, topology: Topology) -> list[LayerUpdate]:
        density = topology.density()
        if abs(density - self.initial_density) > _DENSITY_SLACK:
            raise ValueError(f"GraNet starts at initial_density={self.initial_density}, but the model's sparse layers "
                             f"have density {density:.4f}: sparsify the model to initial_density")
        self._start_density = density
        return []

    def state_dict(self) -> dict:
        return {"start_density": self._start_density}

    def load_state_dict(self, state: dict) -> None:
        self._start_density = state["start_density"]

    def is_update(self, t: int) -> bool:
        return t >= max(1, self.prune_start) and (t - self.prune_start) % self.update_every == 0

    def density_at(self, t: int) -> float:
        start = getattr(self, "_start_density", self.initial_density)
        return cubic_density(start, self.final_density, t, self.prune_start, self.prune_end)

    def regrow_fraction_at(self, t: int) -> float:
        return cosine_decay(self.regrow_fraction, t, self.total_steps)

    def needs_gradient(self, t: int) -> bool:
        return self.is_update(t)

    def update(self, t: int, topology: Topology) -> list[LayerUpdate]:
        if not self.is_update(t):
            return []
        records = []
        if t <= self.prune_end:
            keep = round(self.density_at(t) * topology.total_weights())
            if keep < topology.active_weights():
                scores = [topology.magnitude(layer) for _, layer in topology.layers]
                records += topology.keep_global(t, scores, keep, "prune")
        r = self.regrow_fraction_at(t)
        records += [topology.prune_regrow(t, name, layer, math.floor(r * layer.nnz), self.growth)
                    for name, layer in topology.layers]
        return records
