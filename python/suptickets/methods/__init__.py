"""Sparse-training methods (topology policies) and the controller that runs them (DESIGN.md)."""
from .base import Method
from .granet import GraNet
from .rigl import RigL
from .set import SET
from .snip import SNIP
from .static import Static
from .topology import LayerUpdate, Topology, select_global
from .training import SparseTraining

__all__ = ["Method", "Static", "SNIP", "SET", "RigL", "GraNet", "SparseTraining", "Topology", "LayerUpdate",
           "select_global"]
