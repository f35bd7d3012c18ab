"""``TicketEnsemble``: the naive deep ensemble of tickets (paper Appendix E), which averages
the softmax outputs of M networks at inference; the baseline the superposed ticket is
compared with (one network instead of M forward passes)."""
from __future__ import annotations

import torch
from torch import nn


class TicketEnsemble(nn.Module):
    """``forward(x)`` = mean over ``models`` of ``softmax(model(x), dim)``: class
    probabilities ``[..., classes]`` (take ``log`` for an NLL). Models run in their own mode;
    call ``.eval()`` on the ensemble for inference."""

    def __init__(self, models, dim: int = -1):
        super().__init__()
        models = list(models)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise ValueError("TicketEnsemble needs a non-empty list of nn.Module")
        self.members = nn.ModuleList(models)
        self.dim = dim

    def forward(self, *args, **kwargs) -> torch.Tensor:
        total = None
        for model in self.members:
            p = torch.softmax(model(*args, **kwargs), dim=self.dim)
            total = p if total is None else total + p
        return total / len(self.members)
