"""``Static``: sparse training on a fixed topology (the ERK/ER/uniform random one ``sparsify`` drew)."""
from .base import Method


class Static(Method):
    """Never changes the topology. With an ERK ``sparsify`` this is the static ERK baseline
    of RigL (Evci et al., 2020) and Sup-tickets (Yin et al., 2022)."""
