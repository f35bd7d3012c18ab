"""The only dispatch point of suptickets: every op picks its backend here (DESIGN.md, "Ops").

Public ops take ``(tensors..., layout)`` where ``layout`` is a ``suptickets.BlockLayout``;
``reference`` holds the plain-PyTorch version of each.
"""
from . import reference
from ._extension import available as extension_available
from ._extension import release_workspace, workspace_bytes, simd_level
from .bsr_conv import bsr_conv2d
from .bsr_matmul import bsr_linear

__all__ = ["bsr_linear", "bsr_conv2d", "reference", "extension_available", "simd_level", "workspace_bytes",
           "release_workspace"]
