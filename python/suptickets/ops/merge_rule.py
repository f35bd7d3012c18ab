"""The weights of the Sup-tickets merge rules (paper §3.2 and §4.2), used by the reference, the
Triton path and ``methods/superposer.py`` (dense parameters); the C++ kernel computes the same.

- CIA (cumulative index averaging): ticket ``t`` enters as ``(t-1)/t * acc + 1/t * ticket``;
- CIMA (cumulative index moving average): ``beta * acc + (1 - beta) * ticket``;
- CAA (cumulative activation averaging): per block, ``n/(n+1) * acc + 1/(n+1) * ticket`` where
  the ticket has the block (``n`` the accumulator's count of tickets that had it), the
  accumulator's block unchanged elsewhere; for dense parameters every ticket has every entry,
  so CAA weighs them as CIA.
"""
from __future__ import annotations

MODES = ("cia", "caa", "cima")


def merge_weights(mode: str, t: int, beta: float) -> tuple[float, float]:
    """``(a, b)``: the weights of the accumulator and of ticket ``t`` for every entry that both
    have; CAA's per-block weights are ``merge_weights("cia", n + 1, beta)``."""
    if mode == "cima":
        return (float(beta), 1.0 - float(beta))
    if mode in ("cia", "caa"):
        return ((t - 1) / t, 1 / t)
    raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
