"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al.), read without running code.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian
uint32 sizes, then the items in row-major order. Only the unsigned-byte type (``0x08``), the
one these datasets use, is read. Files ending in ``.gz`` are decompressed. Every check names
the file: :class:`IdxError` for a wrong magic number, a wrong number of dimensions, sizes
that disagree with what was expected, and truncated or over-long data.
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

_UBYTE = 0x08
_MAX_BYTES = 1 << 32  # a bound on what a sizes header may claim (Fashion-MNIST's largest is 47 MB)


class IdxError(ValueError):
    """An IDX file that is missing, damaged or not what was expected (the message names it)."""


def _read_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise IdxError(f"missing IDX file {path}")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read(_MAX_BYTES + 1)
        with open(path, "rb") as f:
            return f.read(_MAX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxError(f"cannot read IDX file {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                       ) from None


def read_idx(path: str, ndim: int, item_shape: tuple = ()) -> np.ndarray:
    """The uint8 array of the IDX file ``path``: ``ndim`` dimensions, the trailing ones equal to
    ``item_shape`` (e.g. ``(28, 28)`` for images). Raises :class:`IdxError` otherwise."""
    data = _read_bytes(path)
    if len(data) > _MAX_BYTES:
        raise IdxError(f"IDX file {path} is larger than {_MAX_BYTES} bytes")
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxError(f"IDX file {path}: not an IDX file (its magic number is {data[:4].hex() or 'missing'})")
    kind, dims = data[2], data[3]
    if kind != _UBYTE:
        raise IdxError(f"IDX file {path}: item type 0x{kind:02x}, expected unsigned bytes (0x08)")
    if dims != ndim:
        raise IdxError(f"IDX file {path}: {dims} dimensions, expected {ndim}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise IdxError(f"IDX file {path} is truncated inside its header ({len(data)} of {header} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    if item_shape and shape[1:] != tuple(item_shape):
        raise IdxError(f"IDX file {path}: items of shape {shape[1:]}, expected {tuple(item_shape)}")
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != count:
        what = "truncated" if len(data) - header < count else "longer than its header says"
        raise IdxError(f"IDX file {path} is {what}: its header {list(shape)} needs {count} bytes of data, it has "
                       f"{len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, count=count, offset=header).reshape(shape).copy()


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a uint8 ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    blob = bytes([0, 0, _UBYTE, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(blob + array.tobytes())
