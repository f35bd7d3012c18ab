"""The cost model that chooses between a product's C++ kernels and its dense path
(``ops/dense_path.py``) for CPU tensors, per layer and call shape, without timing the calls
themselves (CUDA tensors take the Triton kernels).

A forward+backward of a product on path ``p`` (``dense``, ``element``: blocks with a side below
8, ``tile``: the rest) is modelled as ``t = a_p + f_p * w + e_p * n`` with ``w`` the FLOPs it does
(``6 M N K``, times the density for a sparse path), ``n`` the activation elements it reads and
writes (its input and output; packing them costs the sparse kernels much when a layer has few
channels), and ``(a_p, f_p, e_p)`` a fixed cost and the costs of a FLOP and of an element, per
product (linear, conv), path and dtype. They are fitted (non-negative least squares) once per
machine to the forward+backward times of three problems, one of them with few channels (a
second or so), and the constants are
cached (unless the machine was busy while they were measured: see ``UNDISTURBED``) in
``$SUPTICKETS_CACHE_DIR`` (default ``$XDG_CACHE_HOME/suptickets`` or
``~/.cache/suptickets``), in a file named by the CPU model and the thread count. A run records
the constants it used in its checkpoints (:func:`state` / :func:`load_state`), so a resumed run
takes the same paths as the uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass

import torch

PATHS = ("dense", "element", "tile")
_constants: dict[str, list[float]] = {}  # "linear/element/float32" -> [a_ms, ms per FLOP, ms per element]
_agreed: set[str] = set()  # keys this process has settled (with rank 0's values under torch.distributed)
_disturbed: set[str] = set()  # keys calibrated on a busy machine (never written to the cache)
_loaded_from: str | None = None
version = 0  # changes whenever the constants in use change (decisions cached on them are then stale)


@dataclass(frozen=True)
class Work:
    """One product call: ``M`` rows (pixels times batch), ``N`` outputs, ``K`` inputs per output
    (taps times input channels for a conv), the weight's density and block, ``conv`` or not."""
    M: int
    N: int
    K: int
    density: float
    block: tuple
    conv: bool
    dtype: torch.dtype
    elements: int  # of the activations read and written: the input and the output

    def flops(self, path: str) -> float:
        dense = 6.0 * self.M * self.N * self.K  # forward, dX and dW
        return dense if path == "dense" else dense * self.density

    @property
    def sparse_path(self) -> str:
        return "element" if min(self.block) < 8 else "tile"


def global_rows(rows: int) -> int:
    """Rows of the global batch of a call: ``rows`` times the processes of ``torch.distributed``
    (every rank must take the path one process with the whole batch takes)."""
    import torch.distributed as dist
    return rows * (dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1)


def linear_work(x: torch.Tensor, layout, values: torch.Tensor) -> Work:
    R, C = layout.shape
    br, bc = layout.block_size
    M = global_rows(x.numel() // max(1, C))
    return Work(M, R, C, values.shape[0] * br * bc / (R * C), (br, bc), False, x.dtype, M * (R + C))


def conv_work(x: torch.Tensor, layout, values: torch.Tensor, out_hw: tuple) -> Work:
    R, C = layout.shape
    br, bc = layout.block_size
    B = global_rows(x.shape[0])
    elements = B * (x.shape[1] * x.shape[2] * x.shape[3] + R * out_hw[0] * out_hw[1])
    return Work(B * out_hw[0] * out_hw[1], R, C, values.shape[0] * br * bc / (R * C), (br, bc), True, x.dtype,
                elements)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_file() -> str:
    folder = os.environ.get("SUPTICKETS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "suptickets")
    key = hashlib.sha256(_cpu_model().encode()).hexdigest()[:12]
    return os.path.join(folder, f"cost-{key}-threads{torch.get_num_threads()}.json")


def _key(kind: str, path: str, dtype: torch.dtype) -> str:
    return f"{kind}/{path}/{str(dtype).removeprefix('torch.')}"


def state() -> dict:
    """The constants in use (what a checkpoint records)."""
    return {k: list(v) for k, v in _constants.items()}


def load_state(values: dict) -> None:
    """Uses ``values`` (a :func:`state`) from now on, in place of the cache's."""
    global _loaded_from, version
    _constants.clear()
    _agreed.clear()
    _disturbed.clear()
    version += 1
    _constants.update({str(k): [float(c) for c in v] for k, v in values.items()})
    _loaded_from = "state"


def reset() -> None:
    """Forgets the constants in use: the next product reads the cache (or calibrates) again."""
    global _loaded_from, version
    _constants.clear()
    _agreed.clear()
    _disturbed.clear()
    _loaded_from = None
    version += 1


def _read_cache() -> None:
    global _loaded_from
    if _loaded_from is not None:
        return
    _loaded_from = cache_file()
    try:
        with open(_loaded_from) as f:
            values = json.load(f)
        if isinstance(values, dict):
            _constants.update({str(k): [float(c) for c in v] for k, v in values.get("constants", {}).items()
                               if isinstance(v, list) and len(v) == 3})
    except (OSError, ValueError, TypeError):
        pass  # no cache yet (or an unreadable one): calibrate


def _write_cache() -> None:
    path = cache_file()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"cpu": _cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "constants": {k: v for k, v in state().items() if k not in _disturbed}}, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the constants live in this process only


def _time_ms(fn, repeats: int = 5, warmup: int = 2) -> float:
    """The fastest of ``repeats`` timed calls after ``warmup`` untimed ones: the least disturbed
    by whatever else the machine does."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


# The calibration problems: small (the fixed cost), large (FLOPs), few channels (elements).
_LINEAR_SAMPLES = ((64, 256, 256), (1024, 512, 512), (4096, 32, 32))   # (rows, in, out)
_CONV_SAMPLES = ((8, 32, 32, 16), (32, 64, 64, 16), (64, 8, 16, 28))     # (batch, in, out, image size)


def _sample(kind: str, path: str, dtype: torch.dtype, size: int) -> tuple[float, float, float]:
    """(FLOPs, elements, ms) of one forward+backward of calibration problem ``size``."""
    from . import dense_path
    generator = torch.Generator().manual_seed(size)
    block = (1, 1) if path == "element" else (8, 8) if size == 2 else (16, 16)  # (blocks that fit the channels)
    shape: tuple[int, ...]
    if kind == "linear":
        M, C, R = _LINEAR_SAMPLES[size]
        shape, geometry, M_rows, elements = (M, C), None, M, M * (C + R)
    else:
        B, C, R, HW = _CONV_SAMPLES[size]
        shape, geometry = (B, C, HW, HW), ((3, 3), (1, 1), (1, 1), (1, 1))
        M_rows, elements = B * HW * HW, B * HW * HW * (C + R)
    K = C * (9 if geometry else 1)
    layout = _random_layout((R, K), block, generator)
    values = torch.randn(layout.nnz, *block, generator=generator).to(dtype).requires_grad_()
    x = torch.randn(*shape, generator=generator).to(dtype).requires_grad_()
    index = (layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm)
    if path == "dense":
        run = (lambda: dense_path.bsr_linear(x, values, layout, None)) if geometry is None else \
            (lambda: dense_path.bsr_conv2d(x, values, layout, None, geometry))
    else:  # the C++ operators themselves, with their autograd (no dispatch: no cost model inside its own calibration)
        run = (lambda: torch.ops.suptickets.bsr_linear(x, values, *index, None, R)) if geometry is None else \
            (lambda: torch.ops.suptickets.bsr_conv2d(x, values, *index, None, R, *(list(g) for g in geometry)))
    density = layout.nnz * block[0] * block[1] / (R * K) if path != "dense" else 1.0
    work = Work(M_rows, R, K, density, block, geometry is not None, dtype, elements)
    grad = torch.randn(run().shape, generator=generator).to(dtype)
    ms = _time_ms(lambda: run().backward(grad))
    return work.flops(path), float(elements), ms


def _random_layout(shape: tuple, block: tuple, generator: torch.Generator):
    """A layout of a tenth of the blocks, at random, with the fields the ops read (the ops layer
    has no ``BlockLayout``: that is ``sparse/``'s, above it)."""
    from types import SimpleNamespace

    from .layout_index import layout_index
    grid = (shape[0] // block[0], shape[1] // block[1])
    chosen = torch.randperm(grid[0] * grid[1], generator=generator)[:max(1, (grid[0] * grid[1]) // 10)].sort().values
    rows, cols = (chosen // grid[1]).to(torch.int32), (chosen % grid[1]).to(torch.int32)
    row_ptr, col_ptr, col_perm = layout_index(rows, cols, grid)
    return SimpleNamespace(shape=shape, block_size=block, grid=grid, nnz=int(rows.numel()), rows=rows, cols=cols,
                           row_ptr=row_ptr, col_ptr=col_ptr, col_perm=col_perm)


def _fit(samples: list[tuple[float, float, float]]) -> list[float]:
    """Non-negative ``(a, f, e)`` with ``a + f w + e n`` closest to the times (least squares on
    relative errors; a coefficient that comes out negative is dropped and the rest fitted again)."""
    free = [0, 1, 2]
    while True:
        rows = torch.tensor([[1.0, w, n] for w, n, _ in samples], dtype=torch.float64)
        t = torch.tensor([ms for *_, ms in samples], dtype=torch.float64)
        A = rows[:, free] / t.unsqueeze(1)
        solution = torch.linalg.lstsq(A, torch.ones_like(t).unsqueeze(1)).solution.squeeze(1)
        if bool((solution >= 0).all()) or len(free) == 1:
            coeffs = [0.0, 0.0, 0.0]
            for i, c in zip(free, solution.tolist()):
                coeffs[i] = max(0.0, c)
            return coeffs
        free = [i for i, c in zip(free, solution.tolist()) if c >= 0] or [1]


# A calibration whose thread was on the CPU for less than this share of its wall time shared the
# machine with other work, and its times hold that work too (idle: 1.00; beside two busy processes
# on two cores: 0.44-0.73). Its constants serve the process but are not cached, so that a busy
# moment does not decide the paths of every later run on the machine.
UNDISTURBED = 0.9


def _calibrate(kind: str, path: str, dtype: torch.dtype) -> tuple[list[float], float]:
    """The fitted constants, and the share of the calibration's wall time its thread was on the CPU."""
    # (the call that needs the constants may run without gradients or under autocast)
    wall, cpu = time.perf_counter(), time.thread_time()
    with torch.enable_grad(), torch.autocast("cpu", enabled=False):
        fitted = _fit([_sample(kind, path, dtype, size) for size in range(3)])
    return fitted, (time.thread_time() - cpu) / max(time.perf_counter() - wall, 1e-9)


def _note_disturbed(key: str, share: float) -> None:
    import warnings
    first = not _disturbed
    _disturbed.add(key)
    if first:
        warnings.warn(f"suptickets: the machine was busy while the cost model measured {key} (on the CPU "
                      f"{share:.0%} of the time): the constants serve this process only, and the next one "
                      "measures again; which layers take the dense path may be chosen worse meanwhile",
                      stacklevel=3)


def constants(kind: str, path: str, dtype: torch.dtype) -> list[float]:
    """``[a_ms, ms per FLOP, ms per element]`` of a product kind, path and dtype: the cache's, else calibrated now (and
    cached). Under ``torch.distributed`` every process takes rank 0's (all of them settle the same
    keys in the same order, the first time a product of the kind and dtype runs), so every rank
    chooses the paths one process would."""
    import torch.distributed as dist
    _read_cache()
    key = _key(kind, path, dtype)
    if key in _agreed:
        return _constants[key]
    ranks = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    global version
    version += 1
    if key not in _constants and (not ranks or dist.get_rank() == 0):
        _constants[key], share = _calibrate(kind, path, dtype)
        if share < UNDISTURBED:
            _note_disturbed(key, share)
        elif _loaded_from != "state":
            _write_cache()
    if ranks:
        shared = [_constants.get(key)]
        dist.broadcast_object_list(shared, src=0)
        _constants[key] = list(shared[0] or [0.0, 0.0, 0.0])
    _agreed.add(key)
    return _constants[key]


def estimate_ms(work: Work, path: str) -> float:
    a, per_flop, per_element = constants("conv" if work.conv else "linear", path, work.dtype)
    return a + per_flop * work.flops(path) + per_element * work.elements


def settled(work: Work) -> bool:
    """Whether this process has the constants of both paths of ``work`` (no file read, no
    calibration: what ``torch.compile`` may look at while it traces)."""
    kind = "conv" if work.conv else "linear"
    return all(_key(kind, path, work.dtype) in _agreed for path in ("dense", work.sparse_path))


def prefers_dense(work: Work) -> bool:
    """True when the dense path's modelled forward+backward is shorter than the sparse kernels'."""
    return estimate_ms(work, "dense") < estimate_ms(work, work.sparse_path)
