"""``SparseLinear``: ``nn.Linear`` with a block-sparse weight."""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import ops
from ..ops import reference
from .layout import BlockLayout, _as_pair
from .module import BlockSparseWeight, blocks_for, check_density, top_blocks_layout


def check_block_fits(block_size, out_dim: int, in_dim: int, what=("out_features", "in_features")) -> tuple:
    br, bc = _as_pair(block_size, "block_size")
    if out_dim % br or in_dim % bc:
        raise ValueError(
            f"block_size {(br, bc)} must divide ({what[0]}={out_dim}, {what[1]}={in_dim}); "
            f"use a block that divides both, or (1, 1)"
        )
    return br, bc


class SparseLinear(BlockSparseWeight):
    """``y = x @ W.T + b`` with ``W[out, in]`` block-sparse: only ``density`` of its
    ``(br, bc)`` blocks exist, in ``values[nnz, br, bc]``.

    The initial topology is ``round(density * blocks)`` blocks (at least one) drawn
    uniformly at random (``torch``'s global RNG). Initialisation: every active weight and
    the bias are drawn from ``U(-1/sqrt(in_features), 1/sqrt(in_features))``, the
    distribution ``nn.Linear`` gives each weight. This is what the sparse-training
    literature's code does (a dense init, then a mask), so results compare with it and a
    ``from_dense``/``to_dense`` round trip is the same model.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, density,
                 block_size=(32, 32), device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        density = check_density(density)
        br, bc = check_block_fits(block_size, self.out_features, self.in_features)
        shape = (self.out_features, self.in_features)
        nblocks = (shape[0] // br) * (shape[1] // bc)
        layout = BlockLayout.random(shape, (br, bc), blocks_for(density, nblocks))
        bound = 1.0 / math.sqrt(self.in_features)
        factory = {"device": device, "dtype": dtype}
        values = torch.empty(layout.nnz, br, bc, **factory).uniform_(-bound, bound)
        self._setup(shape, (br, bc), layout, values)
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_features, **factory).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.bsr_linear(x, self.values, self.layout, self.bias)

    @classmethod
    def from_dense(cls, module: nn.Linear, *, density=None, mask=None, block_size=(32, 32)) -> "SparseLinear":
        """A SparseLinear keeping the largest-magnitude blocks of ``module.weight`` (L1 norm per block)
        to reach ``density``, or exactly the blocks of a boolean block grid ``mask``. Neither: keep all."""
        if not isinstance(module, nn.Linear):
            raise TypeError(f"from_dense expects an nn.Linear, got {type(module).__name__}")
        weight = module.weight.detach()
        br, bc = check_block_fits(block_size, module.out_features, module.in_features)
        layout = _choose_layout(weight, (br, bc), density, mask)
        out = cls.__new__(cls)
        BlockSparseWeight.__init__(out)
        out.in_features, out.out_features = module.in_features, module.out_features
        out._setup(weight.shape, (br, bc), layout, reference.block_values(weight, layout.to(weight.device)).clone())
        if module.bias is not None:
            out.bias = nn.Parameter(module.bias.detach().clone())
        else:
            out.register_parameter("bias", None)
        return out

    def to_dense(self) -> nn.Linear:
        """A plain ``nn.Linear`` whose weight equals this layer's exactly."""
        dense = nn.Linear(self.in_features, self.out_features, self.bias is not None,
                          device=self.values.device, dtype=self.values.dtype)
        with torch.no_grad():
            dense.weight.copy_(self.weight2d())
            if self.bias is not None:
                dense.bias.copy_(self.bias)
        return dense

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, " + \
            self._sparse_repr()


def _choose_layout(weight2d: torch.Tensor, block_size, density, mask) -> BlockLayout:
    R, C = weight2d.shape
    grid = (R // block_size[0], C // block_size[1])
    if mask is not None:
        if density is not None:
            raise ValueError("give either density or mask, not both")
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or tuple(mask.shape) != grid:
            raise ValueError(f"mask must be a boolean block grid of shape {grid}, got {mask.dtype} {tuple(mask.shape)}")
        if not mask.any():
            raise ValueError("mask must keep at least one block")
        return BlockLayout.from_mask(mask.cpu(), block_size, (R, C))
    density = 1.0 if density is None else check_density(density)
    return top_blocks_layout(weight2d, block_size, blocks_for(density, grid[0] * grid[1]))
