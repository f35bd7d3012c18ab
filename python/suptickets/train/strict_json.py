"""JSON that every parser reads: ``NaN`` and ``Infinity`` are not JSON, so a figure that is
not finite (a diverged loss, an undefined ECE) is written as ``null``."""
from __future__ import annotations

import json
import math


def finite(obj):
    """``obj`` with every non-finite float replaced by ``None`` (dicts, lists, tuples walked)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` of :func:`finite` ``(obj)``, refusing anything that is still not JSON."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
