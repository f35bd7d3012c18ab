"""Loads the compiled operators (``suptickets._C``, beside this package), which define
``torch.ops.suptickets.*``, from their file: the package root (``methods``, ``train``) is not
imported for it, so ``ops`` stands on its own."""
import importlib.machinery
import importlib.util
import os
import sys
import warnings


def _load_c():
    name = "suptickets._C"
    if name in sys.modules:
        return sys.modules[name]
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "_C" + suffix)
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)  # registers the operators
            sys.modules[name] = module
            return module
    raise ImportError(f"no compiled suptickets._C in {folder}")


try:
    _C = _load_c()
    available = True
    load_error = None
except ImportError as exc:  # a source checkout that was never built
    _C = None
    available = False
    load_error = exc


def simd_level() -> str:
    """Instruction set of the float32 CPU kernels ('avx512', 'avx2', 'generic'), or 'unavailable'."""
    return _C.simd_level() if available else "unavailable"


def workspace_bytes() -> int:
    """Bytes the CPU kernels keep for reuse: this thread's packing buffers (they grow to the
    largest layer seen, about its input plus its output gradient) and the memory of freed
    outputs of 1 MB or more (at most 1 GiB). Reuse saves the page faults and page zeroing
    that a fresh multi-MB buffer costs on every step."""
    return _C.workspace_bytes() if available else 0


def release_workspace() -> None:
    """Frees this thread's packing buffers and the cached output memory."""
    if available:
        _C.release_workspace()


_warned = False


def warn_unavailable_once():
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"suptickets C++ operators are not built ({load_error}); falling back to the "
            "plain-PyTorch reference, which is as slow as dense. Install with "
            "`pip install --no-build-isolation .`.",
            RuntimeWarning,
            stacklevel=3,
        )
