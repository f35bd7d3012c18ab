"""``RigL``: Rigging the Lottery (Evci et al., 2020)."""
from .dynamic import PruneRegrow


class RigL(PruneRegrow):
    """Magnitude prune, regrowth of the blocks of largest dense-gradient norm (the fused
    gradient score of the update step's batch), at a fixed density per layer.

    Defaults are the paper's: ``update_every=100`` (Delta T), ``drop_fraction=0.3``
    (alpha), cosine decay ``alpha/2 * (1 + cos(pi t / T_end))``, and no update after
    ``end=0.75`` of training.
    """

    growth = "gradient"

    def __init__(self, update_every: int = 100, drop_fraction: float = 0.3, schedule: str = "cosine",
                 end: float = 0.75):
        super().__init__(update_every, drop_fraction, schedule, end)
