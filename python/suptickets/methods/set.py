"""``SET``: Sparse Evolutionary Training (Mocanu et al., 2018)."""
from .dynamic import PruneRegrow


class SET(PruneRegrow):
    """Magnitude prune, uniformly random regrowth, at a fixed density per layer.

    Args:
        update_every: optimizer steps between topology updates (SET updates once per epoch:
            pass the number of steps of an epoch).
        drop_fraction: fraction of each layer's blocks replaced per update (zeta = 0.3 in the paper).
        schedule: "constant" (the paper) or "cosine" (decayed as RigL's).
        end: fraction of ``total_steps`` after which the topology is frozen (1.0: never).
    """

    growth = "random"

    def __init__(self, update_every: int, drop_fraction: float = 0.3, schedule: str = "constant", end: float = 1.0):
        super().__init__(update_every, drop_fraction, schedule, end)
