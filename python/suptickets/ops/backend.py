"""Which implementation runs an op: one table and one rule (docs/DESIGN.md, "Ops").

``TABLE`` maps every op to the backends that implement it, in the order ``auto`` tries them,
and what each backend takes (dtypes, block shapes). An op asks :func:`choose` once per call;
:func:`eligible` says why a backend cannot take a call (``None`` when it can).

``SUPTICKETS_BACKEND`` (read at every call):

- ``auto`` (default, or unset): the first backend of the op that can take the call; CPU
  tensors run the C++ kernels, CUDA tensors the Triton kernels, anything else the reference.
- ``cpu`` / ``triton``: that backend for every op that has it, and a ``RuntimeError`` naming
  the reason when it cannot take the call (no silent fallback); ops without it run as under
  ``auto``. ``triton`` also sends CPU tensors to the Triton kernels, which then run in Triton's
  interpreter (``TRITON_INTERPRET=1``, set before import).
- ``reference``: the plain-PyTorch reference (``ops/reference.py``) for every op.

Ops marked ``exact`` (integer bookkeeping of layouts, with one exact answer) ignore the
variable: they run the C++ version on CPU tensors and the reference elsewhere.

Adding a backend: its kernels under the op's stem, its entries here (what each op takes) and its
device and availability rule in :func:`eligible`, and its entry in each op file's dispatch dict
(a product registers its operator pair with ``product.register``; a Triton op is defined in an
``_triton.on_load`` hook). A special path of an existing backend is only a change of its
``Takes``. The kernel tests take their cases from :func:`implementations`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

from . import _extension, _triton

CHOICES = ("auto", "cpu", "triton", "dense", "reference")
_DEVICE = {"cpu": "cpu", "triton": "cuda"}  # the device type each kernel backend serves under auto
FLOATS_CPU = (torch.float32, torch.float64)
FLOATS_CPU_PRODUCT = (torch.float32, torch.float64, torch.bfloat16)  # bf16: float32 arithmetic
FLOATS_TRITON = (torch.float16, torch.bfloat16, torch.float32)


@dataclass(frozen=True)
class Takes:
    """What one backend of one op accepts: ``dtypes`` of its floating-point operands (``None``:
    any), and block shapes: sides of at least ``min_block``, powers of two if ``pow2``."""

    dtypes: tuple[torch.dtype, ...] | None = FLOATS_CPU
    min_block: int = 1
    pow2: bool = False

    def block_reason(self, block_size) -> str | None:
        if block_size is None:
            return None
        block = tuple(int(b) for b in block_size)
        if any(b < self.min_block or (self.pow2 and b & (b - 1)) for b in block):
            return f"block size {block} (needs powers of two >= {self.min_block})"
        return None


@dataclass(frozen=True)
class Entry:
    """The backends of one op, in the order ``auto`` tries them (the reference is always last)."""

    backends: dict[str, Takes]
    exact: bool = False


_PRODUCT_TRITON = Takes(FLOATS_TRITON, min_block=16, pow2=True)
_DENSE = Takes(dtypes=None)  # the products' dense path (ops/dense_path.py): torch's dense ops, any float
_ANY_BLOCK_TRITON = Takes(FLOATS_TRITON, min_block=1, pow2=True)

TABLE: dict[str, Entry] = {
    # products: the C++ kernels take any block (sides below 8 run the element kernels, the rest
    # the SIMD tiles); Triton's tl.dot needs powers of two >= 16
    # the dense path is taken when the cost model prefers it, or when no kernel takes a call
    "bsr_linear": Entry({"cpu": Takes(FLOATS_CPU_PRODUCT), "triton": _PRODUCT_TRITON, "dense": _DENSE}),
    "bsr_conv2d": Entry({"cpu": Takes(FLOATS_CPU_PRODUCT), "triton": _PRODUCT_TRITON, "dense": _DENSE}),
    # topology maintenance
    "block_scores": Entry({"cpu": Takes(), "triton": _ANY_BLOCK_TRITON}),
    "linear_grad_scores": Entry({"cpu": Takes(), "triton": _PRODUCT_TRITON}),
    "conv2d_grad_scores": Entry({"cpu": Takes(), "triton": _PRODUCT_TRITON}),
    "prune_grow": Entry({"cpu": Takes()}),
    "select_k": Entry({"cpu": Takes()}),
    "superpose": Entry({"cpu": Takes(), "triton": _ANY_BLOCK_TRITON}),
    # layout index arithmetic (integers; any dtype for the gathered rows)
    "layout_index": Entry({"cpu": Takes(dtypes=None)}, exact=True),
    "merge_blocks": Entry({"cpu": Takes(dtypes=None)}, exact=True),
    "gather_slots": Entry({"cpu": Takes(dtypes=None)}, exact=True),
}


def requested() -> str:
    """The value of ``SUPTICKETS_BACKEND`` (``auto`` when unset)."""
    value = os.environ.get("SUPTICKETS_BACKEND", "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"SUPTICKETS_BACKEND must be one of {', '.join(CHOICES)}; got {value!r}")
    return value


def _entry(op: str) -> Entry:
    try:
        return TABLE[op]
    except KeyError:
        raise ValueError(f"unknown op {op!r}; the table has {', '.join(TABLE)}") from None


def eligible(op: str, backend: str, *tensors: torch.Tensor, block_size=None, forced: bool = False) -> str | None:
    """Why ``backend`` cannot run ``op`` on ``tensors`` with blocks ``block_size``, or ``None``.
    ``forced``: the backend was asked for by name (only then do CPU tensors go to Triton)."""
    if backend == "reference":
        return None
    takes = _entry(op).backends.get(backend)
    if takes is None:
        return f"{op} has no {backend} kernel"
    if backend == "dense":  # torch's dense ops: any float dtype, block and device
        return None
    devices = {t.device.type for t in tensors}
    if backend == "cpu":
        if devices - {"cpu"}:
            return f"tensors are on {', '.join(sorted(devices - {'cpu'}))}"
        if not _extension.available:
            return f"the C++ extension is not built ({_extension.load_error})"
    elif backend == "triton":
        if devices - {"cpu", "cuda"}:
            return f"tensors are on {', '.join(sorted(devices - {'cpu', 'cuda'}))}"
        if "cpu" in devices and not forced:  # decided without loading Triton
            return "CPU tensors run the Triton kernels only under TRITON_INTERPRET=1 and SUPTICKETS_BACKEND=triton"
        if not _triton.available:
            return f"Triton kernels are unavailable ({_triton.load_error})"
        if "cpu" in devices and not _triton.interpreting():
            return "CPU tensors run the Triton kernels only under TRITON_INTERPRET=1 and SUPTICKETS_BACKEND=triton"
    if takes.dtypes is not None:
        bad = next((t.dtype for t in tensors if t.dtype not in takes.dtypes), None)
        if bad is not None:
            names = ", ".join(str(d).removeprefix("torch.") for d in takes.dtypes)
            return f"dtype {bad} (the {backend} kernels of {op} take {names})"
    return takes.block_reason(block_size)


class FallbackWarning(RuntimeWarning):
    """No kernel takes a call of an op, which therefore runs at dense cost (a product's dense path,
    or the plain-PyTorch reference) although nobody asked for that."""


_warned: set[tuple] = set()


@dataclass(frozen=True)
class Decision:
    """What ``auto`` runs a call on: ``backend``; ``fallback``, why no kernel could take it (the
    call then runs the dense path or the reference at dense cost), or None; ``note``, the cost
    model's estimates behind a choice between the dense path and a kernel that could take the call,
    or None (no choice made: no work description, a traced call, or no dense path)."""
    backend: str
    fallback: str | None = None
    note: str | None = None


def explain(op: str, *tensors: torch.Tensor, block_size=None, work=None) -> Decision:
    """The backend ``auto`` runs this call of ``op`` on, and why. ``work`` (an ``ops.cost.Work``)
    lets the cost model choose a product's dense path over its kernel when it is faster."""
    entry = _entry(op)
    devices = {t.device.type for t in tensors}
    reasons = []
    for backend in entry.backends:
        if backend == "dense":
            continue
        reason = eligible(op, backend, *tensors, block_size=block_size)
        if reason is None:
            if backend == "cpu" and "dense" in entry.backends and work is not None and "meta" not in devices:
                from . import cost
                if torch.compiler.is_compiling():
                    # traced: the constants this process has settled, never a calibration or a file inside the
                    # graph (without them the kernel), and no note (st.plan runs eagerly)
                    if cost.settled(work) and cost.prefers_dense(work):
                        return Decision("dense")
                    return Decision(backend)
                dense_ms, sparse_ms = cost.estimate_ms(work, "dense"), cost.estimate_ms(work, work.sparse_path)
                if dense_ms < sparse_ms:
                    return Decision("dense", note=f"modelled {dense_ms:.3g} ms dense, {sparse_ms:.3g} ms on the "
                                                  f"{backend} {work.sparse_path} kernels")
                return Decision(backend, note=f"modelled {sparse_ms:.3g} ms on the {backend} {work.sparse_path} "
                                              f"kernels, {dense_ms:.3g} ms dense")
            return Decision(backend)
        if _DEVICE[backend] in devices:  # (a backend of another device is no news)
            reasons.append(f"{backend}: {reason}")
    last = "dense" if "dense" in entry.backends else "reference"
    return Decision(last, fallback="; ".join(reasons) if reasons else None)


_decisions: dict[tuple, Decision] = {}


def _decided(op: str, tensors, block_size, work) -> Decision:
    """``explain`` of a call, remembered for calls that look the same to it (devices, dtypes, block,
    work, and the cost model's constants): a layer's calls after its first cost a dict lookup."""
    from . import cost
    if torch.compiler.is_compiling():  # traced once into the graph: nothing to remember, no global to mutate
        return explain(op, *tensors, block_size=block_size, work=work)
    key = (op, tuple((t.device.type, t.dtype) for t in tensors), None if block_size is None else tuple(block_size),
           work, cost.version, _extension.available)
    decision = _decisions.get(key)
    if decision is None:
        if len(_decisions) > 4096:
            _decisions.clear()
        decision = _decisions[key] = explain(op, *tensors, block_size=block_size, work=work)
    return decision


def choose(op: str, *tensors: torch.Tensor, block_size=None, where: str | None = None, work=None) -> str:
    """The backend that runs this call of ``op``: ``"cpu"``, ``"triton"``, ``"dense"`` (a
    product's dense path) or ``"reference"``. When ``auto`` finds no kernel that takes a call (not
    for tensors on ``meta``, nor when a backend was asked for), a :class:`FallbackWarning`
    says so once per op, ``where`` (what the call computes, e.g. the weight's shape), dtype, block
    size and reason."""
    entry = _entry(op)
    want = "auto" if entry.exact else requested()
    if want == "reference":
        return "reference"
    if want in entry.backends:
        reason = eligible(op, want, *tensors, block_size=block_size, forced=True)
        if reason is not None:
            raise RuntimeError(f"SUPTICKETS_BACKEND={want}, but the {want} kernels cannot run this {op} call: "
                               f"{reason}")
        return want
    decision = _decided(op, tensors, block_size, work)
    if decision.fallback is None and (decision.backend != "reference" or entry.exact):
        return decision.backend
    devices = {t.device.type for t in tensors}
    if "cpu" in entry.backends and not _extension.available and devices <= {"cpu"}:
        _extension.warn_unavailable_once()
    elif decision.fallback is not None and "meta" not in devices and not entry.exact:
        dtype = next((t.dtype for t in tensors if t.is_floating_point()), None)
        block = tuple(int(b) for b in block_size) if block_size is not None else None
        key = (op, where, dtype, block, decision.fallback)
        if key not in _warned:
            _warned.add(key)
            what = f"{op}{f' of a {where}' if where else ''} in {str(dtype).removeprefix('torch.')}" + (
                f" with {block[0]}x{block[1]} blocks" if block else "")
            path = ("the dense path (torch's dense op on the scattered weight)" if decision.backend == "dense"
                    else "the plain-PyTorch reference, which builds the dense weight")
            warnings.warn(f"suptickets: {what} runs {path}, at dense time and memory: {decision.fallback}",
                          FallbackWarning, stacklevel=3)
    return decision.backend


def implementations(op: str, *tensors: torch.Tensor, block_size=None) -> list[str]:
    """The kernel backends (not the reference) that can run this call when asked for by name:
    what the kernel tests compare against the reference."""
    return [b for b in _entry(op).backends
            if eligible(op, b, *tensors, block_size=block_size, forced=True) is None]


def check_operands(op: str, x: torch.Tensor, values: torch.Tensor, bias) -> None:
    """Clear errors for mixed dtypes or devices of a product, before any backend sees them."""
    if values.dim() != 3:
        raise ValueError(f"{op}: values must be [nnz, br, bc], got shape {tuple(values.shape)}")
    if x.dtype != values.dtype:
        raise TypeError(f"{op}: input dtype {x.dtype} does not match values dtype {values.dtype}")
    if x.device != values.device:
        raise ValueError(f"{op}: input is on device {x.device} but values are on device {values.device}")
    if bias is not None and (bias.dtype != values.dtype or bias.device != values.device):
        raise TypeError(
            f"{op}: bias ({bias.dtype}, {bias.device}) must match values ({values.dtype}, {values.device})"
        )
