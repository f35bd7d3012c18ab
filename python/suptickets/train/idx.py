"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), read without running code.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian
uint32 sizes, then the items in row-major order. Only the unsigned-byte type (``0x08``), the
one these datasets use, is read. Files ending in ``.gz`` are decompressed. Every check names
the file: :class:`IdxError` for a wrong magic number, a wrong number of dimensions, sizes
that disagree with what was expected or exceed what a dataset can be, and truncated or over-long
data. Memory is bounded by what the header declares, never by the file's length.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

_UBYTE = 0x08
MAX_ITEMS = 10**6  # an IDX file of more items is refused (Fashion-MNIST's largest holds 60,000)
_CHUNK = 1 << 20


class IdxError(ValueError):
    """An IDX file that is missing, damaged or not what was expected (the message names it)."""


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _read_exactly(f, out: memoryview) -> int:
    """Fills ``out`` from ``f`` a chunk at a time; the number of bytes read (short at the end of ``f``)."""
    done = 0
    while done < len(out):
        n = f.readinto(out[done:done + _CHUNK])
        if not n:
            break
        done += n
    return done


def read_idx(path: str, ndim: int, item_shape: tuple = (), max_items: int = MAX_ITEMS) -> np.ndarray:
    """The uint8 array of the IDX file ``path``: ``ndim`` dimensions, the trailing ones equal to
    ``item_shape`` (e.g. ``(28, 28)`` for images), at most ``max_items`` items. The header is read
    first and checked, then exactly the bytes it declares are decompressed into the array (a file
    longer or shorter than its header says is refused), so memory is bounded by what the header
    may declare, never by the file. Raises :class:`IdxError` naming the file otherwise, also
    when the memory for the declared size cannot be had."""
    if not os.path.isfile(path):
        raise IdxError(f"missing IDX file {path}")
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
                raise IdxError(f"IDX file {path}: not an IDX file (its magic number is {magic.hex() or 'missing'})")
            kind, dims = magic[2], magic[3]
            if kind != _UBYTE:
                raise IdxError(f"IDX file {path}: item type 0x{kind:02x}, expected unsigned bytes (0x08)")
            if dims != ndim:
                raise IdxError(f"IDX file {path}: {dims} dimensions, expected {ndim}")
            sizes = f.read(4 * dims)
            if len(sizes) < 4 * dims:
                raise IdxError(f"IDX file {path} is truncated inside its header ({4 + len(sizes)} of {4 + 4 * dims} "
                               "bytes)")
            shape = tuple(int.from_bytes(sizes[4 * i:4 * i + 4], "big") for i in range(dims))
            if item_shape and shape[1:] != tuple(item_shape):
                raise IdxError(f"IDX file {path}: items of shape {shape[1:]}, expected {tuple(item_shape)}")
            if shape and shape[0] > max_items:
                raise IdxError(f"IDX file {path}: its header declares {shape[0]} items, more than this dataset can "
                               f"hold ({max_items})")
            count = math.prod(shape)
            try:
                array = np.empty(count, dtype=np.uint8)
            except MemoryError:
                raise IdxError(f"IDX file {path}: not enough memory for the {count} bytes its header declares"
                               ) from None
            got = _read_exactly(f, memoryview(array))
            if got < count:
                raise IdxError(f"IDX file {path} is truncated: its header {list(shape)} needs {count} bytes of data, "
                               f"it has {got}")
            if f.read(1):
                raise IdxError(f"IDX file {path} is longer than its header says: its header {list(shape)} needs "
                               f"{count} bytes of data")
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxError(f"cannot read IDX file {path}: {_first_line(exc)}") from None
    return array.reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a uint8 ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    blob = bytes([0, 0, _UBYTE, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(blob + array.tobytes())
