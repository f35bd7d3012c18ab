"""One Sup-tickets superposition step of a ResNet-50-sized network: suptickets against the dense
approach of public code.

    python benchmarks/bench_superpose.py             # densities 0.1, 0.2; blocks 1x1, 32x32
    python benchmarks/bench_superpose.py --quick     # fewer repeats

The layers are those of ``bench_prune_grow.py`` (ResNet-50's 52 convolutions after the stem and
a 2048 -> 1024 classifier, 25.5 M weights). Ticket 2 has ticket 1's topology after one
exploration (half the blocks of each layer replaced at random), as in a Sup-tickets run;
merging it is what happens at the end of every cycle.

- **suptickets**: ``Superposer.add`` (CIA, per-layer re-pruning): per layer ``ops.superpose_``
  merges the two supports, forms the block norms in the same pass, keeps the layer's number of
  blocks and writes them into the accumulator in place. State: one sparse copy.
- **dense**: the authors' code (``main_suptickets.py``): dense weights averaged as
  ``(t-1)/t * acc + w/t``, then magnitude pruning to the same count. "global sort" is their
  re-pruning, one ``torch.topk(k, sorted=True)`` over all |w| of the network; "per-layer topk" a
  faster version, ``torch.topk(sorted=False)`` per layer. Blocks larger than 1x1 score by the L1
  norm of each block. State: one dense copy of every weight (and the ticket in dense form).

Timed in alternation (medians); peak memory of each approach in a fresh process (the resident
memory one merge adds). "max |diff|" compares the two results (per-layer re-pruning): equal.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_prune_grow import resnet50_layers, shape2d  # noqa: E402

import suptickets as st  # noqa: E402

from _measure import interleaved_median_ms, markdown_table, peak_mb  # noqa: E402

DENSITIES = (0.1, 0.2)
BLOCKS = (1, 32)


def sparse_tickets(density, block, seed=0):
    """Two networks of SparseLinear layers (the layers' 2-D matrices): random values, ticket 2's
    topology is ticket 1's with half of each layer's blocks replaced."""
    torch.manual_seed(seed)
    first = nn.Sequential(*[st.SparseLinear(shape2d(s)[1], shape2d(s)[0], bias=False, density=density,
                                            block_size=(block, block)) for s in resnet50_layers()])
    second = nn.Sequential(*[st.SparseLinear(shape2d(s)[1], shape2d(s)[0], bias=False, density=density,
                                             block_size=(block, block)) for s in resnet50_layers()])
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for a, b in zip(first, second):
            lay = a.layout
            k = lay.nnz // 2
            drop = torch.randperm(lay.nnz, generator=g)[:k].sort().values
            inactive = (~lay.mask().flatten()).nonzero().squeeze(1)
            grow = inactive[torch.randperm(inactive.numel(), generator=g)[:k]].sort().values
            new, _ = lay.replace_blocks(drop, grow)
            b.set_layout(new, torch.randn(new.nnz, block, block, generator=g))
            a.values.copy_(torch.randn(a.values.shape, generator=g))
    return first, second


def dense_weights(model):
    return [m.weight2d().detach() for m in model]


def block_l1(w, block):
    R, C = w.shape
    return w.abs() if block == 1 else w.abs().reshape(R // block, block, C // block, block).sum((1, 3))


def expand(mask, block):
    return mask if block == 1 else mask.repeat_interleave(block, 0).repeat_interleave(block, 1)


class Dense:
    """The dense approach: an accumulator per layer, averaged and re-pruned in place."""

    def __init__(self, first, second, block, counts, global_sort):
        self.block, self.counts, self.global_sort = block, counts, global_sort
        self.first, self.ticket = dense_weights(first), dense_weights(second)
        self.acc = None

    def reset(self):
        self.acc = [w.clone() for w in self.first]

    def merge(self, t=2):
        b = self.block
        for acc, w in zip(self.acc, self.ticket):
            acc.mul_((t - 1) / t).add_(w, alpha=1 / t)
        scores = [block_l1(a, b) for a in self.acc]
        if self.global_sort:  # one threshold over the network (in weights per block)
            flat = torch.cat([s.flatten() / (b * b) for s in scores])
            threshold = torch.topk(flat, sum(self.counts), sorted=True).values[-1]
            masks = [s / (b * b) >= threshold for s in scores]
        else:
            masks = []
            for s, k in zip(scores, self.counts):
                m = torch.zeros(s.numel(), dtype=torch.bool)
                m[torch.topk(s.flatten(), k, sorted=False).indices] = True
                masks.append(m.view(s.shape))
        for acc, m in zip(self.acc, masks):
            acc.mul_(expand(m, b))


class Ours:
    def __init__(self, first, second):
        self.first, self.second = first, second
        self.sup = None

    def reset(self):
        self.sup = st.Superposer(mode="cia", reprune="layer")
        self.sup.add(self.first)

    def merge(self):
        self.sup.add(self.second)


def check(first, second, block):
    """The two approaches keep the same weights (per-layer re-pruning)."""
    ours = Ours(first, second)
    ours.reset()
    ours.merge()
    dense = Dense(first, second, block, [m.nnz for m in first], global_sort=False)
    dense.reset()
    dense.merge()
    result = ours.sup.result()  # a copy of ticket 1 with the superposed weights
    worst = max((m.weight2d() - a).abs().max().item() for m, a in zip(result, dense.acc))
    return worst


def _peak(kind, density, block, queue):
    torch.set_num_threads(2)
    first, second = sparse_tickets(density, block)
    if kind == "ours":
        runner = Ours(first, second)
    else:
        runner = Dense(first, second, block, [m.nnz for m in first], global_sort=False)
    runner.reset()
    queue.put(peak_mb(runner.merge))


def peak_in_fresh_process(kind, density, block):
    """Peak resident memory of one merge, in a fresh process whose allocator returns every large
    block to the system when it is freed (a fixed mmap threshold), so that memory freed while the
    tickets were built is not handed out again unseen."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    saved = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        proc = ctx.Process(target=_peak, args=(kind, density, block, queue))
        proc.start()
        proc.join()
    finally:
        if saved is None:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved
    return queue.get()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    print(f"# suptickets {st.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.machine()}, float32; 53 layers, 25.5 M weights; CIA merge of ticket 2 + re-pruning")
    rows = []
    for density in DENSITIES:
        for block in BLOCKS:
            first, second = sparse_tickets(density, block)
            ours = Ours(first, second)
            counts = [m.nnz for m in first]
            dense_sort = Dense(first, second, block, counts, global_sort=True)
            dense_topk = Dense(first, second, block, counts, global_sort=False)
            t_sort, t_topk, t_ours = interleaved_median_ms(
                [dense_sort.merge, dense_topk.merge, ours.merge], repeats,
                setups=[dense_sort.reset, dense_topk.reset, ours.reset])
            worst = check(first, second, block)
            state_ours = sum(m.values.nbytes + 3 * m.layout.rows.nbytes for m in first) / 2**20
            state_dense = sum(w.nbytes for w in dense_topk.first) / 2**20
            rows.append((density, f"{block}x{block}", f"{t_sort:.1f}", f"{t_topk:.1f}", f"{t_ours:.1f}",
                         f"{t_sort / t_ours:.1f}x", f"{t_topk / t_ours:.1f}x",
                         f"{peak_in_fresh_process('dense', density, block):.0f}",
                         f"{peak_in_fresh_process('ours', density, block):.0f}",
                         f"{state_dense:.0f} / {state_ours:.0f}", f"{worst:.1e}"))
            del first, second, ours, dense_sort, dense_topk
    print(markdown_table(("density", "block", "dense global sort ms", "dense per-layer topk ms", "suptickets ms",
                          "vs sort", "vs topk", "dense peak MB", "suptickets peak MB", "state MB dense / ours",
                          "max |diff|"), rows))


if __name__ == "__main__":
    main()
