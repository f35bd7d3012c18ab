"""Timing and peak-memory helpers shared by the benchmark scripts."""
from __future__ import annotations

import gc
import re
import statistics
import time


def median_ms(fn, repeats: int, setup=None, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in milliseconds; ``setup()`` runs untimed before each call."""
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    times = []
    for _ in range(repeats):
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def interleaved_median_ms(fns, repeats: int, setups=None, warmup: int = 1) -> list[float]:
    """Median wall times (ms) of several functions timed in turn, one call of each per round, so
    that a machine whose speed drifts during the run slows all of them alike."""
    setups = setups or [None] * len(fns)
    times = [[] for _ in fns]
    for round_ in range(warmup + repeats):
        for fn, setup, acc in zip(fns, setups, times):
            if setup:
                setup()
            start = time.perf_counter()
            fn()
            if round_ >= warmup:
                acc.append(time.perf_counter() - start)
    return [1e3 * statistics.median(t) for t in times]


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def peak_mb(fn, setup=None) -> float:
    """Peak resident memory that ``fn()`` adds to this process, in MiB: the kernel's high-water
    mark (reset through /proc/self/clear_refs) minus the resident size before the call. It sees
    every allocation, torch's and the C++ operators' own. Run it in a fresh process: memory that
    an allocator kept from earlier calls and hands out again is not counted."""
    if setup:
        setup()
    gc.collect()
    before = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    fn()
    return max(0, _status_bytes("VmHWM") - before) / 2**20


def markdown_table(header, rows) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(str(c).rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)])
