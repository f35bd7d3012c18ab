"""Convolution geometry shared by every op and backend face: pairs, the output size, and the
check that a padded input holds the dilated kernel. Integers only; no tensors are touched."""
from __future__ import annotations

import operator

Pair = tuple[int, int]


def _integer(value):
    if isinstance(value, bool):
        raise TypeError
    return operator.index(value)


def pair(value, name: str, op: str = "suptickets") -> Pair:
    """``(v, v)`` for an integer, the two integers of a pair; ``ValueError`` naming ``name``
    otherwise (floats and booleans are refused, never truncated)."""
    try:
        if not hasattr(value, "__len__"):
            v = _integer(value)
            return (v, v)
        items = tuple(_integer(i) for i in value)
    except TypeError:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return (items[0], items[1])


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output size of a convolution along one axis (the formula of ``torch.nn.Conv2d``)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_output_shape(hw, kernel_size, stride, padding, dilation) -> Pair:
    """``(Ho, Wo)`` of an ``(H, W)`` input for pairs of the four geometry arguments."""
    return (conv_output_size(hw[0], kernel_size[0], stride[0], padding[0], dilation[0]),
            conv_output_size(hw[1], kernel_size[1], stride[1], padding[1], dilation[1]))


def conv_geometry(kernel_size, stride, padding, dilation, op: str) -> tuple[Pair, Pair, Pair, Pair]:
    """The four geometry arguments as pairs: kernel, stride and dilation >= 1, padding >= 0."""
    kernel, stride, padding, dilation = (pair(v, n, op) for v, n in ((kernel_size, "kernel_size"), (stride, "stride"),
                                                                      (padding, "padding"), (dilation, "dilation")))
    if min(kernel + stride + dilation) < 1 or min(padding) < 0:
        raise ValueError(f"{op}: kernel_size, stride and dilation must be >= 1 and padding >= 0, got kernel_size "
                         f"{kernel}, stride {stride}, padding {padding}, dilation {dilation}")
    return kernel, stride, padding, dilation


def check_kernel_fits(hw, kernel, padding, dilation, op: str) -> None:
    """``ValueError`` when the zero-padded ``(H, W)`` input is smaller than the dilated kernel."""
    padded = (hw[0] + 2 * padding[0], hw[1] + 2 * padding[1])
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    if padded[0] < span[0] or padded[1] < span[1]:
        raise ValueError(f"{op}: the padded input {padded} is smaller than the dilated kernel {span}")
