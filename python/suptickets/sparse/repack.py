"""``repack``: installs a new topology on a block-sparse layer, moving its values and its
optimizer state with it. Every topology change (prune and grow at fixed ``nnz``, or a
change of ``nnz``) goes through this one function (DESIGN.md, "Invariants")."""
from __future__ import annotations

import torch

from .. import ops
from .layout import BlockLayout
from .module import BlockSparseWeight


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
    src = torch.as_tensor(src).reshape(-1).long()
    if src.numel() != layout.nnz:
        raise ValueError(f"src must have one entry per slot of the new layout ({layout.nnz}), got {src.numel()}")
    src = src.to(values.device)
    with torch.no_grad():
        new_values = ops.gather_slots(values.detach(), src)  # checks src
    old_shape = tuple(values.shape)
    if optimizer is not None and values in optimizer.state:
        state = optimizer.state[values]
        for key, tensor in list(state.items()):
            if torch.is_tensor(tensor) and tuple(tensor.shape) == old_shape:
                state[key] = ops.gather_slots(tensor, src)
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
