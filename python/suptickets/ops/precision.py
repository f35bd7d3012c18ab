"""Mixed precision of the ops, as PyTorch users train (``torch.autocast``):

- the products (``bsr_linear``, ``bsr_conv2d``) follow ``nn.Linear``/``nn.Conv2d``: in an autocast
  region their input, ``values`` and bias are cast to the region's dtype (``values`` stays a float32
  parameter: the cast is differentiable, so its gradient arrives in float32), and the output is in
  that dtype;
- topology scores (block norms, gradient scores), selection and the superposition always compute
  in float32.

The faces apply these rules themselves (so the region's own dtype is honoured) and run the operator
with autocast off; the operators also carry ``torch.library`` autocast rules of the same kind (the
device's default autocast dtype for a product, float32 for the rest) for code that calls them
directly.
"""
from __future__ import annotations

import contextlib

import torch

LOW_PRECISION = (torch.float16, torch.bfloat16)
# the default dtype of torch.autocast per device type, for the operators' own rules
_DEFAULT_AUTOCAST = {"cpu": torch.bfloat16, "cuda": torch.float16}


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype of the enabled autocast region for ``device_type``, or None outside one."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def _cast(t: torch.Tensor | None, dtype: torch.dtype):
    return t if t is None or not t.is_floating_point() or t.dtype == dtype else t.to(dtype)


def product_operands(x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None):
    """``(x, values, bias)`` as a product computes with them: cast to the autocast dtype inside a
    region (differentiably), unchanged outside one."""
    dtype = autocast_dtype(x.device.type)
    if dtype is None:
        return x, values, bias
    return _cast(x, dtype), _cast(values, dtype), _cast(bias, dtype)


def in_float32(*tensors: torch.Tensor) -> tuple:
    """The tensors with every float16/bfloat16 one cast to float32 (scores are always float32)."""
    return tuple(t.float() if t is not None and t.dtype in LOW_PRECISION else t for t in tensors)


def without_autocast(device_type: str):
    """The context an operator runs in once its operands are cast: autocast off for the device."""
    if autocast_dtype(device_type) is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def _devices(device_types):
    return [d for d in device_types if torch.amp.is_autocast_available(d)]


def register_product(qualname: str, device_types=("cpu", "cuda")) -> None:
    """The autocast rule of a product operator: floating inputs to the device's default autocast dtype."""
    for device in _devices(device_types):
        torch.library.register_autocast(qualname, device, _DEFAULT_AUTOCAST[device])


def register_float32(qualname: str, device_types=("cpu", "cuda")) -> None:
    """The autocast rule of a score, selection or superposition operator: floating inputs to float32."""
    for device in _devices(device_types):
        torch.library.register_autocast(qualname, device, torch.float32)
