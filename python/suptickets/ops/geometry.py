"""Convolution geometry shared by every op and backend face: pairs, the output size, and the
check that a padded input holds the dilated kernel. Integers only; no tensors are touched."""
from __future__ import annotations

import operator

Pair = tuple[int, int]


def _integer(value) -> int:
    if isinstance(value, bool):
        raise TypeError
    return operator.index(value)  # ints (and NumPy ints); floats are refused, never truncated


def pair(value, name: str, op: str | None = None, minimum: int | None = None) -> Pair:
    """``(v, v)`` for an integer, the two integers of a pair: the one parser of every geometry
    argument (kernel size, stride, padding, dilation, block size, shape). ``TypeError`` naming
    ``name`` (and ``op``) for anything but integers (floats and booleans are refused, never
    truncated), ``ValueError`` for a length other than two or, with ``minimum``, a value below it."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int \
            and (minimum is None or min(value) >= minimum):
        return value  # already a pair (a layer's own geometry, every call): nothing to parse
    where = f"{op}: " if op else ""
    try:
        items = (_integer(value),) * 2 if not hasattr(value, "__iter__") else tuple(_integer(v) for v in value)
    except TypeError:
        raise TypeError(f"{where}{name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) != 2:
        raise ValueError(f"{where}{name} must be an int or a pair of ints, got {value!r}")
    if minimum is not None and min(items) < minimum:
        bound = {0: "non-negative", 1: "positive"}.get(minimum, f">= {minimum}")
        raise ValueError(f"{where}{name} must be a pair of {bound} ints, got {value!r}")
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
    return (pair(kernel_size, "kernel_size", op, 1), pair(stride, "stride", op, 1), pair(padding, "padding", op, 0),
            pair(dilation, "dilation", op, 1))


def check_kernel_fits(hw, kernel, padding, dilation, op: str) -> None:
    """``ValueError`` when the zero-padded ``(H, W)`` input is smaller than the dilated kernel."""
    padded = (hw[0] + 2 * padding[0], hw[1] + 2 * padding[1])
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    if padded[0] < span[0] or padded[1] < span[1]:
        raise ValueError(f"{op}: the padded input {padded} is smaller than the dilated kernel {span}")
