"""Sparse-training methods (topology policies) and the controller that runs them (DESIGN.md)."""
from .base import Method
from .ensemble import TicketEnsemble
from .granet import GraNet
from .rigl import RigL
from .set import SET
from .snip import SNIP
from .static import Static
from .sup_tickets import (
           MEASURED_WITHOUT_GAIN,
           SHORTEST_HELPFUL_CYCLE,
           SHORTEST_HELPFUL_RUN,
           SupTickets,
           base_method_note,
           cyclic_lr,
           short_cycle_note,
           short_run_note,
)
from .superposer import Superposer
from .topology import LayerUpdate, Topology, select_global
from .training import SparseTraining

# every method by the name `suptickets train --method` gives it (a new method: its file, and a line here)
METHODS: dict[str, type[Method]] = {"static": Static, "snip": SNIP, "set": SET, "rigl": RigL, "granet": GraNet}

__all__ = ["METHODS", "Method", "Static", "SNIP", "SET", "RigL", "GraNet", "SparseTraining", "SupTickets", "Superposer",
           "TicketEnsemble", "cyclic_lr", "SHORTEST_HELPFUL_CYCLE", "SHORTEST_HELPFUL_RUN",
           "MEASURED_WITHOUT_GAIN", "base_method_note", "short_cycle_note", "short_run_note", "Topology", "LayerUpdate",
           "select_global"]
