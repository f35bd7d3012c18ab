"""What SparseLinear and SparseConv2d share: a block-sparse 2-D weight held as
``values[nnz, br, bc]`` plus the layout's index tensors as buffers.

State dict: ``values``, ``layout_rows``, ``layout_cols`` (and ``bias``). The other index
tensors are derived (non-persistent buffers), rebuilt on load; loading a state dict whose
``nnz`` differs from the module's resizes ``values`` in place of the usual shape error.
"""
from __future__ import annotations

import torch
from torch import nn

from ..ops import reference
from .layout import BlockLayout, _as_pair

_DERIVED = ("layout_row_ptr", "layout_col_ptr", "layout_col_perm")


def check_density(density) -> float:
    try:
        density = float(density)
    except (TypeError, ValueError):
        raise TypeError(f"density must be a number in (0, 1], got {density!r}") from None
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


class BlockSparseWeight(nn.Module):
    """Base of the block-sparse layers; subclasses set ``weight_shape2d`` and call ``_setup``."""

    def _setup(self, shape2d, block_size, layout: BlockLayout, values: torch.Tensor):
        self.weight_shape2d = tuple(shape2d)
        self.block_size = _as_pair(block_size, "block_size")
        self.values = nn.Parameter(values)
        self._write_layout(layout)

    def _write_layout(self, layout: BlockLayout):
        device = self.values.device
        layout = layout.to(device)
        for name, tensor in (("layout_rows", layout.rows), ("layout_cols", layout.cols)):
            self.register_buffer(name, tensor)
        for name, tensor in zip(_DERIVED, (layout.row_ptr, layout.col_ptr, layout.col_perm)):
            self.register_buffer(name, tensor, persistent=False)

    @property
    def layout(self) -> BlockLayout:
        """The current :class:`BlockLayout` (a view of the module's index buffers)."""
        return BlockLayout._from_parts(
            self.weight_shape2d, self.block_size, self.layout_rows, self.layout_cols,
            self.layout_row_ptr, self.layout_col_ptr, self.layout_col_perm,
        )

    @property
    def nnz(self) -> int:
        return int(self.layout_rows.numel())

    @property
    def density(self) -> float:
        """Fraction of active blocks, which is the fraction of active weights."""
        R, C = self.weight_shape2d
        return self.nnz / ((R // self.block_size[0]) * (C // self.block_size[1]))

    def set_layout(self, layout: BlockLayout, values: torch.Tensor | None = None) -> None:
        """Installs a new topology. With ``values`` (``[layout.nnz, br, bc]``) the parameter is
        re-packed in place (same ``nn.Parameter`` object); without, ``nnz`` must not change."""
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
            with torch.no_grad():
                self.values.data = values.to(device=self.values.device, dtype=self.values.dtype).contiguous()
        self._write_layout(layout)

    def weight2d(self) -> torch.Tensor:
        """The dense ``[R, C]`` weight (dense-sized: for conversion and tests, not for training)."""
        return reference.dense_weight(self.values, self.layout)

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
                self.values.data = self.values.new_empty(values.shape)
            self._write_layout(layout)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    def _sparse_repr(self) -> str:
        return f"density={self.density:.4f}, block_size={self.block_size}, nnz={self.nnz}"
