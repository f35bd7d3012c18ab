"""Prune-and-regrow at a fixed density every ``update_every`` steps: what SET and RigL share."""
from __future__ import annotations

from .base import Method
from .schedule import check_choice, check_fraction, check_steps, cosine_decay
from .topology import LayerUpdate, Topology

SCHEDULES = ("constant", "cosine")


class PruneRegrow(Method):
    """Every ``update_every`` steps up to ``end`` (a fraction of the run), each layer drops
    ``floor(f_t * nnz)`` blocks of lowest magnitude and grows as many by ``growth``, with
    ``f_t = drop_fraction`` ("constant") or ``drop_fraction/2 * (1 + cos(pi t / T_end))``
    ("cosine"). Each layer's ``nnz`` is unchanged."""

    takes_drop_schedule = True

    @classmethod
    def from_options(cls, options, total_steps: int, say=print) -> PruneRegrow:
        schedule = {"schedule": options.drop_schedule} if options.drop_schedule else {}  # unset: the method's own
        window = int(options.update_end * total_steps)
        if window < options.update_every:  # a short run of a long-interval recipe: its topology stays the initial one
            say(f"note: the {window} steps before --update-end {options.update_end} are fewer than --update-every "
                f"{options.update_every}: {cls.__name__} makes no topology update in this run")
            return cls(update_every=total_steps, drop_fraction=options.drop_fraction, end=1.0, **schedule)
        return cls(update_every=options.update_every, drop_fraction=options.drop_fraction, end=options.update_end,
                   **schedule)

    def __init__(self, update_every: int, drop_fraction: float, schedule: str, end: float):
        self.update_every = check_steps(update_every, "update_every")
        self.drop_fraction = check_fraction(drop_fraction, "drop_fraction")
        self.schedule = check_choice(schedule, "schedule", SCHEDULES)
        self.end = check_fraction(end, "end", include_one=True)

    def bind(self, total_steps: int) -> None:
        super().bind(total_steps)
        self.end_step = int(self.end * self.total_steps)
        if self.end_step < self.update_every:
            raise ValueError(
                f"end={self.end} of total_steps={self.total_steps} is step {self.end_step}, before the first "
                f"update at step update_every={self.update_every}: no topology update would happen"
            )

    def is_update(self, t: int) -> bool:
        return t % self.update_every == 0 and t < self.end_step

    def drop_fraction_at(self, t: int) -> float:
        if self.schedule == "constant":
            return self.drop_fraction
        return cosine_decay(self.drop_fraction, t, self.end_step)

    def needs_gradient(self, t: int) -> bool:
        return self.growth == "gradient" and self.is_update(t)

    def update(self, t: int, topology: Topology) -> list[LayerUpdate]:
        if not self.is_update(t):
            return []
        f = self.drop_fraction_at(t)
        return [topology.prune_regrow(t, name, layer, int(f * layer.nnz), self.growth)
                for name, layer in topology.layers]
