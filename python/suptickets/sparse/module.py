"""What SparseLinear and SparseConv2d share: a block-sparse 2-D weight held as
``values[nnz, br, bc]`` plus the layout's index tensors as buffers.

State dict: ``values``, ``layout_rows``, ``layout_cols`` (and ``bias``). The other index
tensors are derived (non-persistent buffers), rebuilt on load; loading a state dict whose
``nnz`` differs from the module's gives the module a new ``values`` parameter of that size
in place of the usual shape error (build the optimizer after loading, or let
``SparseTraining.load_state_dict`` do the loading).
"""
from __future__ import annotations

import math
import numbers
from typing import TypeVar

import torch
from torch import nn

from .collective import gather_batch
from .layout import BlockLayout, _as_pair

Dense = TypeVar("Dense", nn.Linear, nn.Conv2d)

_DERIVED = ("layout_row_ptr", "layout_col_ptr", "layout_col_perm")
_ALL = ("layout_rows", "layout_cols", *_DERIVED)


def check_density(density) -> float:
    """``density`` as a float in (0, 1]; ``TypeError`` for anything but a real number (booleans
    and strings included), ``ValueError`` outside the range."""
    if isinstance(density, bool) or not isinstance(density, numbers.Real):
        raise TypeError(f"density must be a number in (0, 1], got {density!r}")
    density = float(density)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    return density


def blocks_for(density: float, num_blocks: int) -> int:
    """Active blocks for a density: ``round(density * num_blocks)``, at least one."""
    return max(1, min(num_blocks, round(density * num_blocks)))


def top_blocks_layout(weight2d: torch.Tensor, block_size, nnz: int) -> BlockLayout:
    """The ``nnz`` blocks of largest L1 magnitude (ties: lower block index first)."""
    R, C = weight2d.shape
    br, bc = block_size
    scores = weight2d.detach().abs().reshape(R // br, br, C // bc, bc).sum((1, 3)).flatten()
    keep = torch.sort(scores.double().cpu(), descending=True, stable=True).indices[:nnz]
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[keep] = True
    return BlockLayout.from_mask(mask.view(R // br, C // bc), block_size, (R, C))


def choose_layout(weight2d: torch.Tensor, block_size, density, mask) -> BlockLayout:
    """The layout ``from_dense`` keeps: the blocks of a boolean block grid ``mask``, or the
    largest-magnitude blocks for ``density`` (all blocks when neither is given)."""
    R, C = weight2d.shape
    grid = (R // block_size[0], C // block_size[1])
    if mask is not None:
        if density is not None:
            raise ValueError("give either density or mask, not both")
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or tuple(mask.shape) != grid:
            raise ValueError(f"mask must be a boolean block grid of shape {grid}, got {mask.dtype} {tuple(mask.shape)}")
        if not mask.any():
            raise ValueError("mask must keep at least one block")
        return BlockLayout.from_mask(mask.cpu(), block_size, (R, C))
    density = 1.0 if density is None else check_density(density)
    return top_blocks_layout(weight2d, block_size, blocks_for(density, grid[0] * grid[1]))


class BlockSparseWeight(nn.Module):
    """Base of the block-sparse layers; subclasses set ``weight_shape2d`` and call ``_setup``."""

    layout_rows: torch.Tensor  # buffers of the layout (``_write_layout``)
    layout_cols: torch.Tensor

    def to_dense(self) -> nn.Module:
        """A plain dense layer whose weight equals this layer's exactly (each subclass's own)."""
        raise NotImplementedError

    def _setup(self, shape2d, block_size, layout: BlockLayout, values: torch.Tensor):
        self.weight_shape2d = tuple(shape2d)
        self.block_size = _as_pair(block_size, "block_size")
        self.values = nn.Parameter(values)
        self._write_layout(layout)

    def _init_random(self, shape2d, block_size, density, fan_in: int, bias: bool, device=None, dtype=None):
        """``round(density * blocks)`` random blocks; weights and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        br, bc = block_size
        nblocks = (shape2d[0] // br) * (shape2d[1] // bc)
        layout = BlockLayout.random(shape2d, block_size, blocks_for(check_density(density), nblocks))
        bound = 1.0 / math.sqrt(fan_in)
        factory = {"device": device, "dtype": dtype}
        self._setup(shape2d, block_size, layout, torch.empty(layout.nnz, br, bc, **factory).uniform_(-bound, bound))
        if bias:
            self.bias = nn.Parameter(torch.empty(shape2d[0], **factory).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    def _adopt_dense(self, weight2d: torch.Tensor, bias, block_size, density, mask):
        """Takes the blocks ``choose_layout`` keeps of a dense 2-D weight, and a copy of its bias."""
        weight2d = weight2d.detach()
        layout = choose_layout(weight2d, block_size, density, mask)
        values = layout.to(weight2d.device).block_values(weight2d).clone()
        self._setup(weight2d.shape, block_size, layout, values)
        if bias is not None:
            self.bias = nn.Parameter(bias.detach().clone())
        else:
            self.register_parameter("bias", None)

    def _fill_dense(self, dense: Dense, weight: torch.Tensor) -> Dense:
        """Copies ``weight`` (this layer's, in the dense layout) and the bias into ``dense``."""
        with torch.no_grad():
            dense.weight.copy_(weight)
            if self.bias is not None:
                dense.bias.copy_(self.bias)  # type: ignore[union-attr]  # a dense layer made with a bias
        return dense

    def _write_layout(self, layout: BlockLayout):
        layout = layout.to(self.values.device)
        tensors = (layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm)
        if "layout_rows" in self._buffers:  # a topology update: swap the tensors in place
            for name, tensor in zip(_ALL, tensors):
                self._buffers[name] = tensor
            return
        for name, tensor in zip(_ALL, tensors):
            self.register_buffer(name, tensor, persistent=name not in _DERIVED)

    @property
    def layout(self) -> BlockLayout:
        """The current :class:`~suptickets.sparse.layout.BlockLayout` (a view of the module's index buffers)."""
        b = self._buffers  # read directly: nn.Module's attribute lookup costs a layer call ~10 us
        return BlockLayout._from_parts(self.weight_shape2d, self.block_size, *(b[name] for name in _ALL))

    @property
    def nnz(self) -> int:
        return int(self.layout_rows.numel())

    @property
    def density(self) -> float:
        """Fraction of active blocks, which is the fraction of active weights."""
        R, C = self.weight_shape2d
        return self.nnz / ((R // self.block_size[0]) * (C // self.block_size[1]))

    def set_layout(self, layout: BlockLayout, values: torch.Tensor | None = None) -> None:
        """Installs a new topology. With ``values`` (``[layout.nnz, br, bc]``) the parameter
        takes them: in place (same ``nn.Parameter`` object) when ``nnz`` is unchanged, as a new
        ``nn.Parameter`` when it changes (autograd keeps the shape a parameter had; an
        optimizer holding the old one must be pointed to the new one, as
        :func:`~suptickets.sparse.repack.repack` does). Without ``values``, ``nnz`` must not change."""
        if layout.shape != self.weight_shape2d or layout.block_size != self.block_size:
            raise ValueError(
                f"layout {layout.shape}/{layout.block_size} does not fit this layer "
                f"{self.weight_shape2d}/{self.block_size}"
            )
        if values is None:
            if layout.nnz != self.nnz:
                raise ValueError(f"layout has {layout.nnz} blocks, the layer {self.nnz}: pass the re-packed values")
        else:
            expected = (layout.nnz, *self.block_size)
            if tuple(values.shape) != expected:
                raise ValueError(f"values must have shape {expected}, got {tuple(values.shape)}")
            values = values.detach().to(device=self.values.device, dtype=self.values.dtype).contiguous()
            if values.shape == self.values.shape:
                self.values.data = values  # same object, same shape: autograd is unaffected
            else:
                self.values = nn.Parameter(values, requires_grad=self.values.requires_grad)
        self._write_layout(layout)

    # ---- inputs and output gradients for the fused gradient score -----------------

    def capture_gradients(self, enabled: bool = True) -> None:
        """Arms (or disarms) keeping this layer's input and output gradient from the next
        forward and backward passes, which :meth:`gradient_scores` reads. Either way, what
        was kept before is released. Training methods arm it only for update steps."""
        self._capture_enabled = bool(enabled)
        self._captured_inputs: list[torch.Tensor] = []
        self._captured_grads: list[torch.Tensor] = []

    def capture_every_step(self, enabled: bool = True) -> None:
        """Keeps the input and output gradient of every step (not only of the steps armed by
        ``capture_gradients``, which still releases them after each step): what
        :meth:`batch_weight_grads` reads under data parallelism."""
        self._capture_always = bool(enabled)

    def _capture(self, x: torch.Tensor, out: torch.Tensor) -> None:
        armed = getattr(self, "_capture_enabled", False) or getattr(self, "_capture_always", False)
        if not armed or not (torch.is_grad_enabled() and out.requires_grad):
            return
        grads = self._captured_grads
        self._captured_inputs.append(x.detach())
        out.register_hook(lambda g: grads.append(g.detach()))

    def gradient_scores(self, kind: str = "l1") -> torch.Tensor:
        """``[R/br, C/bc]`` norms of the blocks of the dense weight gradient of the captured
        passes (every block, active or not), computed without a dense ``[R, C]`` tensor.
        Under ``torch.distributed`` the captured tensors of all ranks are gathered first, so
        the score is that of the global batch on every rank (the gradient each rank's loss
        gives must be its share of the global loss, as ``suptickets train`` arranges)."""
        return next(self.gradient_score_rows(kind, self.layout.grid[0]))[1]

    def gradient_score_rows(self, kind: str, block_rows: int):
        """The rows of :meth:`gradient_scores` in pieces of ``block_rows`` block-rows: yields
        ``(r0, scores[r0:r0 + block_rows])`` in order, one piece in memory at a time (for
        ``(1, 1)`` blocks the whole grid is as large as the dense weight)."""
        xs, gs = getattr(self, "_captured_inputs", []), getattr(self, "_captured_grads", [])
        if not xs or len(xs) != len(gs):
            raise RuntimeError(
                "gradient_scores needs a captured forward and backward: call capture_gradients() before them "
                f"(captured {len(xs)} inputs and {len(gs)} output gradients)"
            )
        # With several processes, the score is of the global batch: every rank's inputs and
        # output gradients, gathered, so every rank takes the same topology decision.
        inputs, grads = gather_batch(xs), gather_batch(gs)
        rows, br = self.layout.grid[0], self.block_size[0]
        dim = self._channel_dim
        for r0 in range(0, rows, block_rows):
            n = min(block_rows, rows - r0) * br
            part = grads if n == rows * br else [g.narrow(dim, r0 * br, n) for g in grads]
            yield r0, self._grad_scores(inputs, part, kind)

    def batch_weight_grads(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """``(dvalues, dbias)`` of the global batch of the captured pass: every rank's captured
        inputs and output gradients gathered in rank order (``collective.gather_batch``) and the
        backward's SDDMM and bias sum run on them, the arithmetic one process does on the whole
        batch. None when nothing was captured this step."""
        xs, gs = getattr(self, "_captured_inputs", []), getattr(self, "_captured_grads", [])
        if not xs or len(xs) != len(gs):
            return None
        pairs = [self._weight_grads(x, g, self.bias is not None) for x, g in zip(gather_batch(xs), gather_batch(gs))]
        dv, db = pairs[0]
        for v, b in pairs[1:]:  # a layer applied more than once in the step
            dv = dv + v
            db = None if db is None else db + b
        return dv, db

    def _weight_grads(self, x: torch.Tensor, grad: torch.Tensor, with_bias: bool):
        raise NotImplementedError

    _channel_dim: int  # the output channels' dimension of the layer's output

    def _grad_scores(self, inputs: list, grads: list, kind: str) -> torch.Tensor:
        raise NotImplementedError

    def weight2d(self) -> torch.Tensor:
        """The dense ``[R, C]`` weight (dense-sized: for conversion and tests, not for training)."""
        return self.layout.dense_weight(self.values)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        rows, cols = state_dict.get(prefix + "layout_rows"), state_dict.get(prefix + "layout_cols")
        if rows is not None and cols is not None:
            try:
                layout = BlockLayout(self.weight_shape2d, self.block_size, rows, cols)
            except (ValueError, TypeError) as exc:
                errors.append(f"invalid layout for {prefix or 'module'}: {exc}")
                return
            values = state_dict.get(prefix + "values")
            if values is not None and tuple(values.shape) != tuple(self.values.shape):
                if tuple(values.shape) != (layout.nnz, *self.block_size):
                    errors.append(
                        f"{prefix}values has shape {tuple(values.shape)}, its layout needs "
                        f"{(layout.nnz, *self.block_size)}"
                    )
                    return
                self.values = nn.Parameter(self.values.new_empty(values.shape), self.values.requires_grad)
            self._write_layout(layout)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    def _sparse_repr(self) -> str:
        return f"density={self.density:.4f}, block_size={self.block_size}, nnz={self.nnz}"
