"""Triton kernels of suptickets' GPU path (DESIGN.md, "Layers"). Imports torch and triton only;
``suptickets.ops`` is the only caller. Under ``TRITON_INTERPRET=1`` (set before import) the
same kernels run on CPU tensors, which is how CI tests them."""
from . import block_scores, bsr_conv2d, bsr_linear, superpose
from .config import interpreting

__all__ = ["block_scores", "bsr_conv2d", "bsr_linear", "superpose", "interpreting"]
