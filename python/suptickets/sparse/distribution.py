"""Per-layer densities for a global density budget: uniform, ER and ERK.

ER and ERK follow RigL's ``get_sparsities_erdos_renyi`` (Evci et al., 2020,
``rigl/sparse_utils.py``): each layer's density is ``eps * raw`` with

- ERK: ``raw = sum(shape) / prod(shape)`` of the layer's own weight shape (a conv's
  4-D ``(out, in, kh, kw)``, kernel dims included);
- ER:  ``raw = (n_in + n_out) / (n_in * n_out)`` (channels, no kernel dims);

``eps`` solved so that the active weights total ``density`` of the layers' weights. A
layer whose density would exceed 1 is made dense (its weights still count against the
budget) and ``eps`` is solved again, until every density is at most 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

DISTRIBUTIONS = ("erk", "er", "uniform")


@dataclass(frozen=True)
class LayerShape:
    name: str
    shape: tuple  # the weight's own shape: (out, in) or (out, in, kh, kw)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def raw_score(self, distribution: str) -> float:
        if distribution == "erk":
            return sum(self.shape) / self.numel
        n_out, n_in = self.shape[0], self.shape[1]
        return (n_in + n_out) / (n_in * n_out)


def layer_densities(layers: list[LayerShape], density: float, distribution: str = "erk") -> dict[str, float]:
    """Density of each layer (by name) so that the layers hold ``density`` of their weights."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}; got {distribution!r}")
    if distribution == "uniform" or density >= 1.0:
        return {layer.name: density for layer in layers}
    sparsity = 1.0 - density
    dense: set[str] = set()
    while True:
        rhs, divisor, raw = 0.0, 0.0, {}
        for layer in layers:
            n_zeros = math.floor(layer.numel * sparsity)
            if layer.name in dense:
                rhs -= n_zeros
            else:
                rhs += layer.numel - n_zeros
                raw[layer.name] = layer.raw_score(distribution)
                divisor += raw[layer.name] * layer.numel
        if not raw:
            eps = 0.0
            break
        eps = rhs / divisor
        max_raw = max(raw.values())
        if max_raw * eps > 1.0:
            dense.update(name for name, r in raw.items() if r == max_raw)
        else:
            break
    return {layer.name: 1.0 if layer.name in dense else eps * raw[layer.name] for layer in layers}
