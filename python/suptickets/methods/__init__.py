"""Sparse-training methods (topology policies) and the controller that runs them (DESIGN.md)."""
from .base import Method
from .ensemble import TicketEnsemble
from .granet import GraNet
from .rigl import RigL
from .set import SET
from .snip import SNIP
from .static import Static
from .sup_tickets import SupTickets, cyclic_lr
from .superposer import Superposer
from .topology import LayerUpdate, Topology, select_global
from .training import SparseTraining

__all__ = ["Method", "Static", "SNIP", "SET", "RigL", "GraNet", "SparseTraining", "SupTickets", "Superposer",
           "TicketEnsemble", "cyclic_lr", "Topology", "LayerUpdate", "select_global"]
