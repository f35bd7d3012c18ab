"""``SparseLinear``: ``nn.Linear`` with a block-sparse weight."""
from __future__ import annotations

import torch
from torch import nn

from .. import ops
from .layout import _as_pair
from .module import BlockSparseWeight


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
        block_size = check_block_fits(block_size, self.out_features, self.in_features)
        self._init_random((self.out_features, self.in_features), block_size, density, self.in_features, bias,
                          device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[..., in_features] -> [..., out_features]`` (``ops.bsr_linear``; a new tensor). During
        a step armed by ``capture_gradients`` the input and the output's gradient are kept for the
        gradient score."""
        y = ops.bsr_linear(x, self.values, self.layout, self.bias)
        self._capture(x, y)
        return y

    _channel_dim = -1  # of the output (gradient)

    def _weight_grads(self, x, grad, with_bias):
        return ops.bsr_linear_weight_grads(x, grad, self.values, self.layout, with_bias)

    def _grad_scores(self, inputs, grads, kind):
        x = torch.cat([t.reshape(-1, self.in_features) for t in inputs])
        g = torch.cat([t.reshape(-1, t.shape[-1]) for t in grads])
        return ops.linear_grad_scores(x, g, self.block_size, kind)

    @classmethod
    def from_dense(cls, module: nn.Linear, *, density=None, mask=None, block_size=(32, 32)) -> "SparseLinear":
        """A SparseLinear keeping the largest-magnitude blocks of ``module.weight`` (L1 norm per block)
        to reach ``density``, or exactly the blocks of a boolean block grid ``mask``. Neither: keep all."""
        if not isinstance(module, nn.Linear):
            raise TypeError(f"from_dense expects an nn.Linear, got {type(module).__name__}")
        block_size = check_block_fits(block_size, module.out_features, module.in_features)
        out = cls.__new__(cls)
        BlockSparseWeight.__init__(out)
        out.in_features, out.out_features = module.in_features, module.out_features
        out._adopt_dense(module.weight, module.bias, block_size, density, mask)
        return out

    def to_dense(self) -> nn.Linear:
        """A plain ``nn.Linear`` whose weight equals this layer's exactly."""
        dense = nn.Linear(self.in_features, self.out_features, self.bias is not None,
                          device=self.values.device, dtype=self.values.dtype)
        return self._fill_dense(dense, self.weight2d())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, " + \
            self._sparse_repr()

