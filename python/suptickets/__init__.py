"""suptickets: block-sparse training that is faster than dense, with the Sup-tickets booster.

    import suptickets as st
    fc = st.SparseLinear(1024, 4096, density=0.1, block_size=(32, 32))
    model = st.sparsify(model, density=0.1, distribution="erk", block_size=(32, 32))
"""
from . import ops
from .methods import SET, SNIP, GraNet, RigL, SparseTraining, Static, Superposer, SupTickets, TicketEnsemble
from .ops.backend import FallbackWarning
from .sparse import (
    BlockLayout,
    SparseConv2d,
    SparseLinear,
    densify,
    layer_densities,
    plan,
    sparsify,
    sparsity_table,
)
from .train import flops

__version__ = "0.1.0"
__all__ = ["ops", "flops", "BlockLayout", "SparseLinear", "SparseConv2d", "sparsify", "densify", "sparsity_table",
           "plan", "FallbackWarning", "layer_densities", "SparseTraining", "Static", "SNIP", "SET", "RigL", "GraNet",
           "SupTickets", "Superposer", "TicketEnsemble"]
