"""``plan(model, example)``: the path each sparse layer's product takes for an input like
``example`` (the C++ kernels, the Triton kernels, the dense path, or the reference) and why: the
cost model's estimates when the dense path is the faster, the reason when no kernel takes the call."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..ops import backend, cost, precision
from ..ops.geometry import conv_output_shape
from .conv import SparseConv2d
from .module import BlockSparseWeight


@dataclass
class PlanRow:
    name: str
    kind: str        # "Linear" or "Conv2d"
    shape: tuple     # the 2-D weight's
    block_size: tuple
    density: float
    path: str        # "cpu", "triton", "dense" or "reference"
    why: str         # the cost model's estimates, the fallback's reason, or ""


class Plan(list):
    """Rows of :class:`PlanRow`; ``str()`` prints an aligned table."""

    def __str__(self) -> str:
        header = ("layer", "type", "weight", "block", "density", "path", "why")
        body = [(r.name or "<model>", r.kind, "x".join(map(str, r.shape)), f"{r.block_size[0]}x{r.block_size[1]}",
                 f"{r.density:.4f}", r.path, r.why) for r in self]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    @property
    def dense_layers(self) -> int:
        """How many layers take the dense path."""
        return sum(r.path == "dense" for r in self)


def plan(model: nn.Module, example: torch.Tensor) -> Plan:
    """Runs ``model(example)`` once (no gradient) and records, per sparse layer, the path its
    product takes for that input's shape and dtype under ``SUPTICKETS_BACKEND=auto`` (called in a
    ``torch.autocast`` region: for the region's dtype, as the layers then compute)."""
    rows = Plan()
    hooks = []

    def record(name: str):
        def hook(module: BlockSparseWeight, args):
            # the operands as the product computes with them (cast in a torch.autocast region)
            x, values, _ = precision.product_operands(args[0], module.values, None)
            if isinstance(module, SparseConv2d):
                x4 = x if x.dim() == 4 else x.unsqueeze(0)
                out_hw = conv_output_shape(x4.shape[2:], module.kernel_size, module.stride, module.padding,
                                           module.dilation)
                work, op = cost.conv_work(x4, module.layout, values, out_hw), "bsr_conv2d"
            else:
                work, op = cost.linear_work(x, module.layout, values), "bsr_linear"
            decision = backend.explain(op, x, values, block_size=module.block_size, work=work)
            rows.append(PlanRow(name, type(module).__name__.replace("Sparse", ""), module.weight_shape2d,
                                module.block_size, module.density, decision.backend,
                                decision.note or decision.fallback or ""))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, BlockSparseWeight):
            hooks.append(module.register_forward_pre_hook(record(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return rows
