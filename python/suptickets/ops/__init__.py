"""The ops of suptickets, one file each; every op picks its backend in ``backend.py``
(docs/DESIGN.md, "Ops").

Public ops take ``(tensors..., layout)`` where ``layout`` is a ``suptickets.BlockLayout``;
``reference`` holds the plain-PyTorch version of each.
"""
from . import reference
from ._extension import available as extension_available
from ._extension import release_workspace, simd_level, workspace_bytes
from .block_scores import block_scores, conv2d_grad_scores, linear_grad_scores
from .bsr_conv2d import bsr_conv2d, bsr_conv2d_weight_grads
from .bsr_linear import bsr_linear, bsr_linear_weight_grads
from .layout_index import gather_slots, layout_index, merge_blocks
from .prune_grow import prune_grow
from .select_k import select_k
from .superpose import superpose_, superpose_union

__all__ = ["bsr_linear", "bsr_conv2d", "bsr_linear_weight_grads", "bsr_conv2d_weight_grads",
           "block_scores", "linear_grad_scores", "conv2d_grad_scores", "prune_grow",
           "select_k",
           "layout_index", "merge_blocks", "gather_slots", "superpose_union", "superpose_", "reference",
           "extension_available", "simd_level", "workspace_bytes", "release_workspace"]
