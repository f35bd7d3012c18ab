"""Timing and peak-memory helpers shared by the benchmark scripts."""
from __future__ import annotations

import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile


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


def peak_mb(fn, setup=None) -> float:
    """Peak bytes of CPU tensor memory allocated while ``fn()`` runs (C++ scratch included),
    read from the allocator's running total in the profiler's allocation events."""
    from torch._C._profiler import _EventType

    if setup:
        setup()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    peak = 0

    def walk(events):
        nonlocal peak
        for e in events:
            if e.tag == _EventType.Allocation:
                peak = max(peak, e.extra_fields.total_allocated)
            walk(e.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    return peak / 2**20


def markdown_table(header, rows) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(str(c).rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)])
