"""Unpickling that cannot run code, for the CIFAR python-pickle files.

A pickle names the callables that rebuild its objects, so ``pickle.load`` of a planted file
runs whatever it names. :func:`load` admits only what the CIFAR batches hold: dicts, lists,
tuples, bytes and str, numbers, and NumPy arrays (the array constructors numpy's pickles name,
with dtypes of plain integers, floats or bytes). Anything else is refused before it is called.
"""
from __future__ import annotations

import importlib
import pickle

import numpy as np

# (module, name) of the callables NumPy arrays pickle with, across numpy 1.x and 2.x
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 2 pickles of bytes are read back
}
_DTYPE_KINDS = "biufS"  # bool, signed and unsigned integers, floats, bytes: no objects, no records


def _dtype(spec, *args):
    dtype = np.dtype(spec)
    if dtype.kind not in _DTYPE_KINDS or dtype.fields is not None:
        raise pickle.UnpicklingError(f"an array of dtype {dtype} (only plain numbers or bytes are accepted)")
    return np.dtype(spec, *args)


class _Restricted(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a data file has no reason to call")
        if (module, name) == ("numpy", "dtype"):
            return _dtype
        return getattr(importlib.import_module(module), name)


def load(path: str, encoding: str = "bytes"):
    """The object pickled in ``path``, refusing any callable but NumPy's array constructors
    (``pickle.UnpicklingError`` saying which)."""
    with open(path, "rb") as f:
        return _Restricted(f, encoding=encoding).load()
