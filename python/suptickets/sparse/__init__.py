"""Block-sparse layers and conversion (DESIGN.md, "Data model")."""
from .conv import SparseConv2d
from .convert import LayerRow, SparsityTable, densify, sparsify, sparsity_table
from .distribution import layer_densities
from .layout import BlockLayout
from .linear import SparseLinear
from .module import BlockSparseWeight
from .plan import Plan, PlanRow, plan
from .repack import repack

__all__ = ["BlockLayout", "SparseLinear", "SparseConv2d", "BlockSparseWeight", "sparsify", "densify",
           "sparsity_table", "SparsityTable", "LayerRow", "layer_densities", "repack", "plan", "Plan", "PlanRow"]
