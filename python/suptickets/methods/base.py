"""``Method``: the interface of a sparse-training method, a small policy object that says
when the topology changes and by how much; ``Topology`` does the change."""
from __future__ import annotations

from .schedule import check_steps
from .topology import LayerUpdate, Topology


class Method:
    """Base of Static, SNIP, SET, RigL and GraNet.

    ``growth`` is the method's rule for new blocks ("gradient" or "random"), which the
    Sup-tickets explorations reuse. Step numbers ``t`` count optimizer steps from 1.
    """

    growth = "random"
    takes_drop_schedule = False  # the method has a drop fraction with a schedule (RigL, SET)

    @classmethod
    def from_options(cls, options, total_steps: int, say=print) -> Method:
        """The method as a run's options ask for it (the fields of ``suptickets train``'s
        configuration: ``sparsity``, ``update_every``, ``drop_fraction``, ``drop_schedule``,
        ``update_end``, ``granet_initial_density``, ``granet_prune_end``), for a run of
        ``total_steps``; ``say`` takes a note for the user. The class's defaults elsewhere."""
        return cls()

    @staticmethod
    def starting_density(options) -> float:
        """The density the model is sparsified to before training: the target, ``1 - sparsity``."""
        return 1.0 - options.sparsity

    def bind(self, total_steps: int) -> None:
        """Called once with the run's length; checks that the schedule fits in it."""
        self.total_steps = check_steps(total_steps, "total_steps")

    def setup(self, topology: Topology) -> list[LayerUpdate]:
        """Called once when training starts, before the first step."""
        return []

    def scores_instead(self, t: int) -> bool:
        """True when step ``t`` only scores the network (no optimizer update): SNIP's batches."""
        return False

    def score(self, t: int, topology: Topology) -> None:
        """Accumulates scores on a step for which :meth:`scores_instead` is true."""

    def needs_gradient(self, t: int) -> bool:
        """True when the update of step ``t`` reads the fused gradient score, so the layers
        keep their inputs and output gradients during that step's forward and backward."""
        return False

    def is_update(self, t: int) -> bool:
        """True when :meth:`update` changes the topology after step ``t``."""
        return False

    def update(self, t: int, topology: Topology) -> list[LayerUpdate]:
        """Changes the topology after the optimizer step ``t`` (if this step calls for it)."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "total_steps")
        return f"{type(self).__name__}({args})"
