"""``SparseConv2d``: ``nn.Conv2d`` with a block-sparse weight.

The weight's 2-D view is ``W.permute(0, 2, 3, 1).reshape(out, kh*kw*in)`` (DESIGN.md):
a block is ``br`` output channels by ``bc`` input channels of one kernel tap, so
``block_size[0]`` must divide ``out_channels`` and ``block_size[1]`` ``in_channels``.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import ops
from ..ops.geometry import pair
from .linear import check_block_fits
from .module import BlockSparseWeight, check_density

_CHANNELS = ("out_channels", "in_channels")


def _padding(padding, kernel_size, stride, dilation):
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' needs stride 1")
            total = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
            if any(t % 2 for t in total):
                raise ValueError("padding='same' with an even effective kernel is not supported; give explicit padding")
            return tuple(t // 2 for t in total)
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    return pair(padding, "padding", minimum=0)


def conv_weight2d(weight4d: torch.Tensor) -> torch.Tensor:
    """``[out, in, kh, kw] -> [out, kh*kw*in]`` (taps outer, input channels inner)."""
    out = weight4d.shape[0]
    return weight4d.permute(0, 2, 3, 1).reshape(out, -1)


class SparseConv2d(BlockSparseWeight):
    """``nn.Conv2d`` (groups=1, zero padding) whose weight is block-sparse.

    Topology and initialisation follow :class:`SparseLinear`: ``round(density * blocks)``
    random blocks, weights and bias from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
    ``fan_in = in_channels * kh * kw``, the distribution ``nn.Conv2d`` gives each weight.
    The C++ kernels return ``channels_last`` outputs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, *, density, block_size=(32, 32), padding_mode: str = "zeros",
                 device=None, dtype=None):
        super().__init__()
        if groups != 1:
            raise ValueError(f"SparseConv2d supports groups=1 only, got groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"SparseConv2d supports padding_mode='zeros' only, got {padding_mode!r}")
        self._set_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation)
        check_density(density)
        block_size = check_block_fits(block_size, self.out_channels, self.in_channels, _CHANNELS)
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        self._init_random(self.weight_shape(), block_size, density, fan_in, bias, device, dtype)

    def _set_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation):
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.stride = pair(stride, "stride", minimum=1)
        self.dilation = pair(dilation, "dilation", minimum=1)
        self.padding = _padding(padding, self.kernel_size, self.stride, self.dilation)
        self.groups = 1
        self.padding_mode = "zeros"

    def weight_shape(self) -> tuple[int, int]:
        kh, kw = self.kernel_size
        return (self.out_channels, kh * kw * self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[B, in, H, W]`` (any memory format) or unbatched ``[in, H, W]`` -> ``[B, out, Ho, Wo]``
        (``ops.bsr_conv2d``; the C++ kernels return ``channels_last``). During a step armed by
        ``capture_gradients`` the input and the output's gradient are kept for the gradient score."""
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        y = ops.bsr_conv2d(x, self.values, self.layout, self.bias, kernel_size=self.kernel_size,
                           stride=self.stride, padding=self.padding, dilation=self.dilation)
        self._capture(x, y)
        return y.squeeze(0) if unbatched else y

    _channel_dim = 1  # of the output (gradient)

    def _weight_grads(self, x, grad, with_bias):
        return ops.bsr_conv2d_weight_grads(x, grad, self.values, self.layout, with_bias, kernel_size=self.kernel_size,
                                           stride=self.stride, padding=self.padding, dilation=self.dilation)

    def _grad_scores(self, inputs, grads, kind):
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs)
        g = grads[0] if len(grads) == 1 else torch.cat(grads)
        return ops.conv2d_grad_scores(x, g, self.block_size, kernel_size=self.kernel_size, stride=self.stride,
                                      padding=self.padding, dilation=self.dilation, kind=kind)

    def weight4d(self) -> torch.Tensor:
        """The dense ``[out, in, kh, kw]`` weight (for conversion and tests)."""
        return self.layout.conv_weight(self.values, self.kernel_size)

    @classmethod
    def from_dense(cls, module: nn.Conv2d, *, density=None, mask=None, block_size=(32, 32)) -> "SparseConv2d":
        """A SparseConv2d keeping the largest-magnitude blocks of the 2-D weight view (L1 norm per
        block) to reach ``density``, or exactly the blocks of a boolean block grid ``mask``."""
        if not isinstance(module, nn.Conv2d):
            raise TypeError(f"from_dense expects an nn.Conv2d, got {type(module).__name__}")
        if module.groups != 1 or module.padding_mode != "zeros":
            raise ValueError("SparseConv2d supports groups=1 and padding_mode='zeros' only")
        out = cls.__new__(cls)
        BlockSparseWeight.__init__(out)
        out._set_geometry(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                          module.padding, module.dilation)
        block_size = check_block_fits(block_size, out.out_channels, out.in_channels, _CHANNELS)
        out._adopt_dense(conv_weight2d(module.weight), module.bias, block_size, density, mask)
        return out

    def to_dense(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` whose weight equals this layer's exactly."""
        dense = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                          self.dilation, bias=self.bias is not None, device=self.values.device,
                          dtype=self.values.dtype)
        return self._fill_dense(dense, self.weight4d())

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}, "
                + self._sparse_repr())
