"""The numeric precision of a ``suptickets train`` run (``--precision``, Lightning's spellings):

- ``fp32``: float32 weights and arithmetic (the default);
- ``bf16-mixed``: float32 master weights and optimizer state; forward and loss under
  ``torch.autocast(dtype=torch.bfloat16)``, so the sparse products run on bf16 activations and
  weights (``ops/precision.py``) and topology scores in float32;
- ``bf16`` (also ``bf16-true``): the whole model, its inputs and its optimizer state in bfloat16.

float16 is not offered: the C++ kernels have no float16 path, and fp16 training needs a gradient
scaler that the topology updates and the divergence checks would have to respect.
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16-mixed", "bf16", "bf16-true")


class Precision:
    """What a precision does to a run: its autocast region, the model's and the inputs' dtype."""

    def __init__(self, name: str, device: torch.device):
        if name not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
        self.name = "bf16" if name == "bf16-true" else name
        self.device = device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's weights."""
        return torch.bfloat16 if self.name == "bf16" else torch.float32

    def autocast(self):
        """The region the forward pass and the loss run in."""
        if self.name == "bf16-mixed":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.dtype) if self.name == "bf16" else model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype) if self.name == "bf16" and x.is_floating_point() else x
