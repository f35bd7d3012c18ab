"""Argument checks and the schedules of topology updates (drop fractions, densities)."""
from __future__ import annotations

import math
import numbers


def check_steps(value, name: str, minimum: int = 1) -> int:
    """An integer count of optimizer steps, at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer number of optimizer steps, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_fraction(value, name: str, *, include_one: bool = False) -> float:
    """A number in (0, 1), or (0, 1] with ``include_one``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    ok = 0.0 < value <= 1.0 if include_one else 0.0 < value < 1.0
    if not ok:
        raise ValueError(f"{name} must be in (0, 1{']' if include_one else ')'}, got {value}")
    return value


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def cosine_decay(base: float, t: int, t_end: int) -> float:
    """``base/2 * (1 + cos(pi * t / t_end))``: ``base`` at 0, 0 at ``t_end`` and after (RigL's drop fraction)."""
    return 0.0 if t >= t_end else base / 2 * (1 + math.cos(math.pi * t / t_end))


def cubic_density(initial: float, final: float, t: int, start: int, end: int) -> float:
    """Gradual magnitude pruning (Zhu & Gupta, 2017; GraNet): ``final + (initial - final)(1 - p)^3`` with
    ``p = (t - start)/(end - start)`` clamped to [0, 1]: ``initial`` at ``start``, ``final`` from ``end`` on."""
    p = min(1.0, max(0.0, (t - start) / (end - start)))
    return final + (initial - final) * (1.0 - p) ** 3
