"""Triton kernels of suptickets' GPU path (DESIGN.md, "Layers"). Imports torch and triton only;
``suptickets.ops`` is the only caller. Under ``TRITON_INTERPRET=1`` (set before import) the
same kernels run on CPU tensors, which is how CI tests them."""
from . import bsr_conv, bsr_matmul, scores, superpose
from .config import interpreting

__all__ = ["bsr_conv", "bsr_matmul", "scores", "superpose", "interpreting"]
