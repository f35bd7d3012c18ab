"""``sparsify`` / ``densify``: swap a model's ``nn.Linear``/``nn.Conv2d`` for block-sparse
layers and back, and the per-layer table that says what happened to each layer."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

from ..ops import backend
from .conv import SparseConv2d, conv_weight2d
from .distribution import LayerShape, layer_densities
from .layout import BlockLayout, _as_pair
from .linear import SparseLinear
from .module import BlockSparseWeight, blocks_for, check_density

_KEPT_DENSE = "_suptickets_kept_dense"  # reason a layer stayed dense, set by sparsify


@dataclass
class LayerRow:
    name: str
    kind: str          # "Linear" or "Conv2d"
    shape: tuple       # the weight's own shape
    density: float     # active fraction of the weights
    nnz: int           # active weights
    block_size: tuple | None
    status: str        # "sparse" or why the layer is dense
    path: str = "torch"  # what runs the layer's product: "cpu", "triton", "reference (why)" or torch's dense op


class SparsityTable(list):
    """Rows of :class:`LayerRow`; ``str()`` prints an aligned table, ``density`` the overall one."""

    @property
    def density(self) -> float:
        total = sum(_numel(r.shape) for r in self)
        return sum(r.nnz for r in self) / total if total else 1.0

    def __str__(self) -> str:
        header = ("layer", "type", "shape", "block", "density", "nnz", "status", "path")
        body = [
            (r.name or "<model>", r.kind, "x".join(map(str, r.shape)),
             "-" if r.block_size is None else f"{r.block_size[0]}x{r.block_size[1]}",
             f"{r.density:.4f}", str(r.nnz), r.status, r.path)
            for r in self
        ]
        body.append(("total", "", "", "", f"{self.density:.4f}", str(sum(r.nnz for r in self)), "", ""))
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _weight_shape(module) -> tuple:
    if isinstance(module, SparseConv2d):
        return (module.out_channels, module.in_channels, *module.kernel_size)
    if isinstance(module, SparseLinear):
        return (module.out_features, module.in_features)
    return tuple(module.weight.shape)


def _unsupported(module) -> str | None:
    """Why a layer cannot be block-sparse at all, or None."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"groups={module.groups} (only 1 is supported)"
        if module.padding_mode != "zeros":
            return f"padding_mode={module.padding_mode!r}"
        if isinstance(module.padding, str) and module.padding == "same" and module.stride != (1, 1):
            return "padding='same' with stride"
    return None


def _misfit(module, block_size) -> str | None:
    """Why ``block_size`` does not tile this layer's weight, or None."""
    br, bc = block_size
    if isinstance(module, nn.Conv2d):
        out_dim, in_dim, what = module.out_channels, module.in_channels, "channels"
    else:
        out_dim, in_dim, what = module.out_features, module.in_features, "features"
    if out_dim % br or in_dim % bc:
        return f"block {br}x{bc} does not fit {out_dim}x{in_dim} {what}"
    return None


def _replace(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    if not name:
        return new
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, new)
    return model


def sparsify(model: nn.Module, *, density, distribution: str = "erk", block_size=(32, 32), exclude=(),
             dense_first: bool = False, unfit: str = "dense", return_table: bool = False):
    """Swaps every ``nn.Linear``/``nn.Conv2d`` of ``model`` (in place) for a block-sparse layer.

    Per-layer densities follow ``distribution`` ("erk", "er" or "uniform"; see
    :mod:`suptickets.sparse.distribution`) over the layers that are made sparse. Each
    sparse layer gets ``round(density_l * blocks)`` blocks drawn uniformly at random and
    keeps the dense layer's values there (the "dense init, then mask" of RigL and SET).

    Layers stay dense (plain modules, outside the budget, marked in the table) when their
    name matches ``exclude`` (names or ``fnmatch`` patterns), when ``dense_first`` and they
    are the first such layer, for ``groups != 1``, or when ERK gives them density 1. A
    layer whose (out, in) channels ``block_size`` does not divide (e.g. a first conv with
    3 input channels) stays dense with ``unfit="dense"`` (default), or with
    ``unfit="unstructured"`` is made sparse with (1, 1) blocks, which run through the
    plain-PyTorch reference (correct, as slow as dense) and count in the budget.

    Returns the model (a top-level ``nn.Linear``/``nn.Conv2d`` is returned replaced), or
    ``(model, table)`` with ``return_table=True``; :func:`sparsity_table` gives the table later.
    """
    density = check_density(density)
    block_size = _as_pair(block_size, "block_size")
    if unfit not in ("dense", "unstructured"):
        raise ValueError(f"unfit must be 'dense' or 'unstructured', got {unfit!r}")
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    candidates = [(n, m) for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    if not candidates:
        raise ValueError("sparsify found no nn.Linear or nn.Conv2d in the model")
    unmatched = [p for p in exclude if not any(fnmatch.fnmatchcase(n, p) for n, _ in candidates)]
    if unmatched:
        raise ValueError(f"sparsify: exclude names {', '.join(map(repr, unmatched))}, which match no nn.Linear or "
                         f"nn.Conv2d of the model (its layers: {', '.join(n for n, _ in candidates[:8])}"
                         f"{', ...' if len(candidates) > 8 else ''})")
    reasons: dict[str, str] = {}
    blocks: dict[str, tuple] = {}
    for i, (name, module) in enumerate(candidates):
        misfit = _misfit(module, block_size)
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
            reasons[name] = "excluded"
        elif dense_first and i == 0:
            reasons[name] = "dense_first"
        elif (unsupported := _unsupported(module)) is not None:
            reasons[name] = unsupported
        elif misfit and unfit == "dense":
            reasons[name] = misfit
        else:
            blocks[name] = (1, 1) if misfit else block_size
    sparse = [(n, m) for n, m in candidates if n not in reasons]
    densities = layer_densities([LayerShape(n, tuple(m.weight.shape)) for n, m in sparse], density, distribution)
    for name, module in candidates:
        if name in reasons:
            setattr(module, _KEPT_DENSE, reasons[name])
            continue
        d = densities[name]
        if d >= 1.0:
            setattr(module, _KEPT_DENSE, f"{distribution} density 1")
            continue
        cls = SparseConv2d if isinstance(module, nn.Conv2d) else SparseLinear
        weight2d = conv_weight2d(module.weight) if cls is SparseConv2d else module.weight
        bs = blocks[name]
        grid = (weight2d.shape[0] // bs[0], weight2d.shape[1] // bs[1])
        layout = BlockLayout.random(weight2d.shape, bs, blocks_for(d, grid[0] * grid[1]))
        model = _replace(model, name, cls.from_dense(module, mask=layout.mask(), block_size=bs))
    return (model, sparsity_table(model)) if return_table else model


def _path(module: BlockSparseWeight) -> str:
    """What runs the layer's product for weights of its dtype and device (``ops.backend.explain``);
    whether the dense path is faster depends on the call's shape too: ``st.plan`` says, per input."""
    op = "bsr_conv2d" if isinstance(module, SparseConv2d) else "bsr_linear"
    decision = backend.explain(op, module.values, block_size=module.block_size)
    return decision.backend if decision.fallback is None else f"{decision.backend} ({decision.fallback})"


def sparsity_table(model: nn.Module) -> SparsityTable:
    """One row per Linear/Conv2d layer, sparse or dense, with its density, active weights and the
    path its product takes (the backend for its weights' dtype and device, or torch's dense op)."""
    table = SparsityTable()
    for name, module in model.named_modules():
        if isinstance(module, BlockSparseWeight):
            shape = _weight_shape(module)
            nnz = module.nnz * module.block_size[0] * module.block_size[1]
            table.append(LayerRow(name, type(module).__name__.replace("Sparse", ""), shape, module.density, nnz,
                                  module.block_size, "sparse", _path(module)))
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            shape = tuple(module.weight.shape)
            table.append(LayerRow(name, type(module).__name__, shape, 1.0, _numel(shape), None,
                                  "dense: " + getattr(module, _KEPT_DENSE, "not sparsified"), "torch (dense)"))
    return table


def densify(model: nn.Module) -> nn.Module:
    """Swaps every SparseLinear/SparseConv2d back to a plain ``nn.Linear``/``nn.Conv2d`` with the
    same weights (in place; a top-level sparse layer is returned replaced). Returns the model."""
    for name, module in list(model.named_modules()):
        if isinstance(module, BlockSparseWeight):
            model = _replace(model, name, module.to_dense())
    for module in model.modules():
        if hasattr(module, _KEPT_DENSE):
            delattr(module, _KEPT_DENSE)
    return model
