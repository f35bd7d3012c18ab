"""``BlockLayout``: which blocks of a 2-D weight ``[R, C]`` are active, and in which slot.

The weight is tiled into ``(br, bc)`` blocks, a grid of ``R/br x C/bc``. A layout lists
its ``nnz`` active blocks as slots in row-major order: slot ``s`` is block
``(rows[s], cols[s])`` and its values are ``values[s]`` of the layer. Derived once, at
construction, for the kernels:

- ``row_ptr[r] : row_ptr[r+1]``: the slots of block-row ``r`` (CSR pointer);
- ``col_perm[col_ptr[c] : col_ptr[c+1]]``: the slots of block-column ``c`` in row order
  (the column-major walk that ``dX = dY @ W`` takes).

All index tensors are int32. A layout is immutable: a topology change builds a new one.
"""
from __future__ import annotations

import torch

from .. import ops
from ..ops.geometry import pair


def _as_pair(value, name: str) -> tuple[int, int]:
    """A pair of positive integers (``ops.geometry.pair``)."""
    return pair(value, name, minimum=1)


def sample_distinct(n: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` distinct integers of ``[0, n)``, uniformly at random, ascending (int64), in time
    and memory proportional to ``k``, not ``n``: the first ``k`` distinct values of a stream of
    uniform draws (drawn in batches) form a uniform ``k``-subset. For ``k > n / 2`` the
    ``n - k`` values left out are drawn instead (then ``n < 2k``)."""
    if k > n - k:
        out = torch.ones(n, dtype=torch.bool)
        out[sample_distinct(n, n - k, generator)] = False
        return out.nonzero().squeeze(1)
    drawn = torch.zeros(0, dtype=torch.long)
    while True:
        batch = torch.randint(n, (max(16, k + k // 4 + 16),), generator=generator)
        drawn = torch.cat([drawn, batch])
        values, inverse = torch.unique(drawn, sorted=True, return_inverse=True)
        if values.numel() >= k:
            break
    # the first k distinct values in order of appearance
    first = torch.full((values.numel(),), drawn.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(drawn.numel()), reduce="amin")
    return values[first.argsort()[:k]].sort().values


class BlockLayout:
    """Active blocks of a block-sparse ``[R, C]`` matrix.

    Args:
        shape: ``(R, C)`` of the 2-D weight.
        block_size: ``(br, bc)``; each must divide the matching dimension of ``shape``.
        rows, cols: block coordinates of the active blocks, in row-major order without
            repeats (any integer dtype; stored as int32).
    """

    __slots__ = ("shape", "block_size", "rows", "cols", "row_ptr", "col_ptr", "col_perm", "_frozen")

    def __init__(self, shape, block_size, rows, cols):
        shape = _as_pair(shape, "shape")
        block_size = _as_pair(block_size, "block_size")
        for dim, (n, b) in enumerate(zip(shape, block_size)):
            if n % b:
                raise ValueError(
                    f"block_size {block_size} does not divide the weight's 2-D shape {shape}: "
                    f"{n} % {b} != 0 in dimension {dim}"
                )
        rows = torch.as_tensor(rows).reshape(-1)
        cols = torch.as_tensor(cols).reshape(-1)
        if rows.numel() != cols.numel():
            raise ValueError(f"expected one column per active block, got {rows.numel()} rows and {cols.numel()} cols")
        if rows.dtype.is_floating_point or cols.dtype.is_floating_point:
            raise TypeError("rows and cols must be integer tensors")
        grid = (shape[0] // block_size[0], shape[1] // block_size[1])
        rows64, cols64 = rows.long(), cols.long()
        if rows.numel():
            if rows64.min() < 0 or rows64.max() >= grid[0] or cols64.min() < 0 or cols64.max() >= grid[1]:
                raise ValueError(f"block coordinates must lie in the {grid[0]} x {grid[1]} block grid")
            key = rows64 * grid[1] + cols64
            if (key[1:] <= key[:-1]).any():
                raise ValueError("active blocks must be in row-major order without repeats")
        self._init(shape, block_size, rows64, cols64)

    def _init(self, shape, block_size, rows64, cols64):
        object.__setattr__(self, "_frozen", False)
        grid = (shape[0] // block_size[0], shape[1] // block_size[1])
        self.shape = shape
        self.block_size = block_size
        self.rows = rows64.to(torch.int32)
        self.cols = cols64.to(torch.int32)
        self.row_ptr, self.col_ptr, self.col_perm = ops.layout_index(self.rows, self.cols, grid)
        self._frozen = True

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False):
            raise AttributeError("BlockLayout is immutable; build a new layout instead")
        object.__setattr__(self, name, value)

    # ---- constructors -------------------------------------------------------------

    @classmethod
    def from_mask(cls, mask: torch.Tensor, block_size, shape=None) -> "BlockLayout":
        """Layout of a boolean block grid ``mask[R/br, C/bc]`` (``shape`` defaults to grid x block)."""
        block_size = _as_pair(block_size, "block_size")
        mask = torch.as_tensor(mask)
        if mask.dim() != 2:
            raise ValueError(f"mask must be a 2-D block grid, got shape {tuple(mask.shape)}")
        if shape is None:
            shape = (mask.shape[0] * block_size[0], mask.shape[1] * block_size[1])
        shape = _as_pair(shape, "shape")
        grid = (shape[0] // block_size[0], shape[1] // block_size[1])
        if tuple(mask.shape) != grid:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, the block grid of {shape} / {block_size} is {grid}")
        rows, cols = mask.bool().nonzero(as_tuple=True)  # row-major
        return cls(shape, block_size, rows, cols)

    @classmethod
    def random(cls, shape, block_size, nnz: int, generator: torch.Generator | None = None) -> "BlockLayout":
        """``nnz`` distinct blocks drawn uniformly at random."""
        shape = _as_pair(shape, "shape")
        block_size = _as_pair(block_size, "block_size")
        grid = (shape[0] // block_size[0], shape[1] // block_size[1])
        total = grid[0] * grid[1]
        if not 0 <= nnz <= total:
            raise ValueError(f"nnz must be in [0, {total}] for a {grid[0]} x {grid[1]} block grid, got {nnz}")
        chosen = sample_distinct(total, nnz, generator)
        return cls._trusted(shape, block_size, chosen // grid[1], chosen % grid[1])

    @classmethod
    def dense(cls, shape, block_size) -> "BlockLayout":
        """Every block active."""
        shape = _as_pair(shape, "shape")
        block_size = _as_pair(block_size, "block_size")
        grid = (shape[0] // block_size[0], shape[1] // block_size[1])
        return cls.from_mask(torch.ones(grid, dtype=torch.bool), block_size, shape)

    @classmethod
    def _trusted(cls, shape, block_size, rows, cols) -> "BlockLayout":
        """A layout of coordinates known to be valid and row-major (skips the checks)."""
        out = object.__new__(cls)
        out._init(tuple(shape), tuple(block_size), rows, cols)
        return out

    # ---- topology changes -----------------------------------------------------------

    def block_ids(self) -> torch.Tensor:
        """Flat block index ``rows * (C/bc) + cols`` of each slot (int64, ascending)."""
        return self.rows.long() * self.grid[1] + self.cols.long()

    def replace_blocks(self, drop=None, grow=None) -> tuple["BlockLayout", torch.Tensor]:
        """The layout without the slots ``drop`` and with the blocks ``grow`` (flat block ids,
        none of them active once ``drop`` is out; both ascending, as ``ops.prune_grow``
        returns them). A grown block may be one just dropped.

        Returns ``(layout, src)``: ``src[s]`` is the old slot whose values new slot ``s``
        keeps, or -1 where ``s`` is a grown block (int64, on this layout's device). This is
        the one place where slots are renumbered; :func:`~suptickets.sparse.repack.repack` applies
        ``src`` to values and optimizer state.
        """
        device = self.device
        none = torch.zeros(0, dtype=torch.long, device=device)
        drop = none if drop is None else torch.as_tensor(drop, device=device).long().reshape(-1)
        grow = none if grow is None else torch.as_tensor(grow, device=device).long().reshape(-1)
        if grow.numel() and (grow.min() < 0 or grow.max() >= self.num_blocks):
            raise ValueError(f"grow blocks must lie in [0, {self.num_blocks})")
        rows, cols, src = ops.merge_blocks(self.rows, self.cols, drop, grow, self.grid[1])
        return BlockLayout._trusted(self.shape, self.block_size, rows, cols), src

    # ---- properties ---------------------------------------------------------------

    @property
    def grid(self) -> tuple[int, int]:
        """``(R/br, C/bc)``: the number of block-rows and block-columns."""
        return (self.shape[0] // self.block_size[0], self.shape[1] // self.block_size[1])

    @property
    def nnz(self) -> int:
        """Number of active blocks."""
        return int(self.rows.numel())

    @property
    def num_blocks(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def density(self) -> float:
        """Fraction of active blocks (equal to the fraction of active weights)."""
        return self.nnz / self.num_blocks

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def mask(self) -> torch.Tensor:
        """Boolean block grid ``[R/br, C/bc]``, True where a block is active."""
        m = torch.zeros(self.grid, dtype=torch.bool, device=self.device)
        m[self.rows.long(), self.cols.long()] = True
        return m

    def dense_weight(self, values: torch.Tensor) -> torch.Tensor:
        """The ``[R, C]`` matrix whose block ``(rows[s], cols[s])`` is ``values[s]`` (``[nnz, br,
        bc]``), zeros elsewhere; differentiable in ``values``. Dense-sized: for conversion,
        ``to_dense()`` and the reference, never for a training step."""
        R, C = self.shape
        br, bc = self.block_size
        grid = values.new_zeros(R // br, C // bc, br, bc)
        grid = grid.index_put((self.rows.long(), self.cols.long()), values)
        return grid.permute(0, 2, 1, 3).reshape(R, C)

    def conv_weight(self, values: torch.Tensor, kernel_size) -> torch.Tensor:
        """The 4-D conv weight ``[out, in, kh, kw]`` whose 2-D view ``W.permute(0, 2, 3, 1).reshape(out,
        kh*kw*in)`` (taps outer, input channels inner) is :meth:`dense_weight` ``(values)``."""
        kh, kw = _as_pair(kernel_size, "kernel_size")
        R, C = self.shape
        return self.dense_weight(values).view(R, kh, kw, C // (kh * kw)).permute(0, 3, 1, 2)

    def block_values(self, weight2d: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`dense_weight`: the ``[nnz, br, bc]`` blocks of a dense ``[R, C]``
        matrix at this layout's slots."""
        R, C = self.shape
        br, bc = self.block_size
        grid = weight2d.reshape(R // br, br, C // bc, bc).permute(0, 2, 1, 3)
        return grid[self.rows.long(), self.cols.long()]

    def element_mask(self) -> torch.Tensor:
        """Boolean ``[R, C]`` mask of active weights (dense-sized: for tests and conversion)."""
        br, bc = self.block_size
        return self.mask().repeat_interleave(br, 0).repeat_interleave(bc, 1)

    def to(self, device) -> "BlockLayout":
        """The same layout with its index tensors on ``device``."""
        device = torch.device(device)
        if device == self.device:
            return self
        out = object.__new__(BlockLayout)
        object.__setattr__(out, "_frozen", False)
        for name in ("rows", "cols", "row_ptr", "col_ptr", "col_perm"):
            object.__setattr__(out, name, getattr(self, name).to(device))
        object.__setattr__(out, "shape", self.shape)
        object.__setattr__(out, "block_size", self.block_size)
        object.__setattr__(out, "_frozen", True)
        return out

    @classmethod
    def _from_parts(cls, shape, block_size, rows, cols, row_ptr, col_ptr, col_perm) -> "BlockLayout":
        """Wraps index tensors that a layout already derived (no validation, no copies)."""
        out = object.__new__(cls)
        for name, value in (("shape", tuple(shape)), ("block_size", tuple(block_size)), ("rows", rows),
                            ("cols", cols), ("row_ptr", row_ptr), ("col_ptr", col_ptr), ("col_perm", col_perm)):
            object.__setattr__(out, name, value)
        object.__setattr__(out, "_frozen", True)
        return out

    def __eq__(self, other) -> bool:
        if not isinstance(other, BlockLayout):
            return NotImplemented
        return (
            self.shape == other.shape
            and self.block_size == other.block_size
            and torch.equal(self.rows.cpu(), other.rows.cpu())
            and torch.equal(self.cols.cpu(), other.cols.cpu())
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking equality: unhashable

    def __repr__(self) -> str:
        return (
            f"BlockLayout(shape={self.shape}, block_size={self.block_size}, nnz={self.nnz}/{self.num_blocks}, "
            f"density={self.density:.4f})"
        )
