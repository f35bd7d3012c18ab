"""``repack``: installs a new topology on a block-sparse layer, moving its values and its
optimizer state with it. Every topology change (prune and grow at fixed ``nnz``, or a
change of ``nnz``) goes through this one function (DESIGN.md, "Invariants")."""
from __future__ import annotations

import torch

from .layout import BlockLayout
from .module import BlockSparseWeight


def _gather(t: torch.Tensor, index: torch.Tensor, grown: torch.Tensor) -> torch.Tensor:
    if t.shape[0] == 0:
        return t.new_zeros((index.numel(), *t.shape[1:]))
    out = t.index_select(0, index)
    return out.masked_fill_(grown.view(-1, *([1] * (t.dim() - 1))), 0)


def repack(layer: BlockSparseWeight, layout: BlockLayout, src: torch.Tensor,
           optimizer: torch.optim.Optimizer | None = None) -> None:
    """Gives ``layer`` the topology ``layout``: new slot ``s`` takes the values of old slot
    ``src[s]``, or zeros where ``src[s] == -1`` (a grown block).

    Every tensor of ``optimizer.state[layer.values]`` shaped like the values (SGD momentum,
    Adam/AdamW moments, ...) is moved the same way, so a grown block starts with zero
    momentum; scalar state (Adam's ``step``) is kept. ``layer.values`` stays the same
    ``nn.Parameter`` object when ``nnz`` is unchanged; when it changes the layer gets a new
    parameter and the optimizer is pointed to it. The gradient of the values is cleared.
    """
    values = layer.values
    src = torch.as_tensor(src).reshape(-1)
    if src.numel() != layout.nnz:
        raise ValueError(f"src must have one entry per slot of the new layout ({layout.nnz}), got {src.numel()}")
    if src.numel() and (src.min() < -1 or src.max() >= values.shape[0]):
        raise ValueError(f"src entries must be -1 or an old slot in [0, {values.shape[0]})")
    src = src.to(values.device)
    grown = src < 0
    index = src.clamp(min=0)
    old_shape = tuple(values.shape)
    if optimizer is not None and values in optimizer.state:
        state = optimizer.state[values]
        for key, tensor in list(state.items()):
            if torch.is_tensor(tensor) and tuple(tensor.shape) == old_shape:
                state[key] = _gather(tensor, index, grown)
    with torch.no_grad():
        new_values = _gather(values.detach(), index, grown)
    layer.set_layout(layout, new_values)
    values.grad = None
    if optimizer is not None and layer.values is not values:
        swap_parameter(optimizer, values, layer.values)


def swap_parameter(optimizer: torch.optim.Optimizer, old: torch.nn.Parameter, new: torch.nn.Parameter) -> None:
    """Points ``optimizer`` (its param groups and its state) at ``new`` in place of ``old``."""
    for group in optimizer.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    if old in optimizer.state:
        optimizer.state[new] = optimizer.state.pop(old)
