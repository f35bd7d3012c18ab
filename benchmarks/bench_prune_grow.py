"""One topology update of a ResNet-50-sized set of layers: suptickets against the mask approach.

    python benchmarks/bench_prune_grow.py            # densities 0.1, 0.2; blocks 1x1, 16x16, 32x32
    python benchmarks/bench_prune_grow.py --quick    # fewer repeats, no training-step measurement

The layers are ResNet-50's 52 convolutions after the stem and its classifier (given 1024
outputs instead of 1000 so that every block size fits): 25.5 M weights, each seen as its
2-D matrix ``[out, kh*kw*in]``. One RigL update drops 30 % of each layer's active blocks
by magnitude and grows as many by the gradient score, then moves values and momentum.

- **suptickets**: ``Topology.prune_regrow`` on each layer: ``block_scores`` of the values,
  ``prune_grow`` (one-pass selection), the new layout (``replace_blocks``) and the re-pack of
  values and SGD momentum (``gather_slots``). The gradient score grid is given (timed on its own
  below: the fused kernel on a real batch's inputs and output gradients).
- **mask**: what public dynamic-sparse-training code does (a dense weight times a mask), in two
  versions. "full topk" follows rigl-torch (``RigLScheduler._rigl_step``): per layer,
  ``torch.topk`` over all n |w| scores (a full sort) to rank the drop, again over the lifted
  |g| scores to rank the growth, masks by scatter, weights by ``torch.where``. "partial topk"
  is a faster rewrite: ``torch.topk`` of only the kept and the grown counts, ``sorted=False``.
  Both then multiply the weight and the momentum by the mask densely; their dense gradient
  comes free with dense training. Blocks larger than 1x1 score by summing |w| (|g|) per block.

The second table puts the update in a training step, at RigL's Delta T = 100: the fused
gradient score (from X and dY of batch ``--batch`` at 224 px; every block of every layer)
against the dense weight gradient (aten's convolution backward, what dense training computes
each step), and the forward+backward of the 53 layers (sparse kernels vs dense conv; BN,
ReLU and the optimizer are left out), so ``share = (update + score) / (100 x step)``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suptickets as st  # noqa: E402
from suptickets.methods import Topology  # noqa: E402

from _measure import interleaved_median_ms, markdown_table  # noqa: E402

DENSITIES = (0.1, 0.2)
BLOCKS = (1, 16, 32)
DROP_FRACTION = 0.3
DELTA_T = 100


def resnet50_layers():
    """(in, out, kernel, stride, input size) of ResNet-50's convs after the stem (v1.5: the
    3x3 conv strides), then the classifier as a 1x1 conv on a 1x1 map with 1024 outputs."""
    layers, cin, size = [], 64, 56
    for mid, blocks, out, stride in ((64, 3, 256, 1), (128, 4, 512, 2), (256, 6, 1024, 2), (512, 3, 2048, 2)):
        for i in range(blocks):
            s = stride if i == 0 else 1
            layers.append((cin, mid, 1, 1, size))
            layers.append((mid, mid, 3, s, size))
            size_out = size // s
            layers.append((mid, out, 1, 1, size_out))
            if i == 0:
                layers.append((cin, out, 1, s, size))
            cin, size = out, size_out
    layers.append((2048, 1024, 1, 1, 1))
    return layers


def shape2d(spec):
    cin, cout, k, _, _ = spec
    return cout, k * k * cin


# ---- suptickets --------------------------------------------------------------------------


class Ours:
    """Sparse layers (their 2-D matrices), SGD momentum state, given gradient-score grids."""

    def __init__(self, specs, density, block):
        layers = []
        for spec in specs:
            R, C = shape2d(spec)
            layers.append(st.SparseLinear(C, R, bias=False, density=density, block_size=(block, block)))
        self.model = nn.Sequential(*layers)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        for p in self.model.parameters():
            p.grad = torch.randn_like(p)
        self.optimizer.step()  # momentum buffers exist, as in training
        self.topology = Topology(self.model, self.optimizer, torch.Generator().manual_seed(0))
        self.grow_scores = [torch.rand(m.layout.grid) for m in layers]
        self.step = 0

    def update(self):
        self.step += 1
        for i, (name, layer) in enumerate(self.topology.layers):
            self.topology.prune_regrow(self.step, name, layer, int(DROP_FRACTION * layer.nnz), "gradient",
                                       grow_scores=self.grow_scores[i])

    def state_mb(self):
        total = 0
        for _, m in self.topology.layers:
            total += 2 * m.values.nbytes + sum(t.nbytes for t in (m.layout.rows, m.layout.cols, m.layout.row_ptr,
                                                                    m.layout.col_ptr, m.layout.col_perm))
        return total / 2**20


# ---- the mask approach -------------------------------------------------------------------


class Mask:
    """Dense weight, boolean mask, dense gradient and momentum per layer; block scores by
    summing |w| (|g|) over each block, selections by ``torch.topk``."""

    def __init__(self, specs, density, block):
        self.block = block
        self.layers = []
        for spec in specs:
            R, C = shape2d(spec)
            grid = (R // block, C // block)
            mask = torch.zeros(grid[0] * grid[1], dtype=torch.bool)
            mask[torch.randperm(mask.numel())[:max(1, round(density * mask.numel()))]] = True
            emask = self.expand(mask.view(grid))
            self.layers.append({"w": torch.randn(R, C) * emask, "g": torch.randn(R, C), "m": torch.randn(R, C) * emask,
                                "mask": mask.view(grid)})

    def expand(self, grid_mask):
        b = self.block
        return grid_mask if b == 1 else grid_mask.repeat_interleave(b, 0).repeat_interleave(b, 1)

    def block_sum(self, t):
        b = self.block
        R, C = t.shape
        return t if b == 1 else t.reshape(R // b, b, C // b, b).sum((1, 3))

    def update(self):
        for L in self.layers:
            mask = L["mask"].flatten()
            n = int(mask.sum())
            k = int(DROP_FRACTION * n)
            drop_score = torch.where(mask, self.block_sum(L["w"].abs()).flatten(), -1.0)
            keep = torch.topk(drop_score, n - k, sorted=False).indices
            kept = torch.zeros_like(mask)
            kept[keep] = True
            grow_score = torch.where(kept, -1.0, self.block_sum(L["g"].abs()).flatten())
            grow = torch.topk(grow_score, k, sorted=False).indices
            ekept = self.expand(kept.view(L["mask"].shape))
            L["w"].mul_(ekept)  # dropped weights to zero; grown ones start at zero
            L["m"].mul_(ekept)
            kept[grow] = True
            L["mask"] = kept.view(L["mask"].shape)

    def update_full_sort(self):
        """The same update as public RigL code for PyTorch writes it (rigl-torch's
        ``RigLScheduler._rigl_step``): ``torch.topk`` over all n scores (a full sort) for the
        drop and again for the grow ranking, masks built by scatter, ``torch.where`` for weights."""
        for L in self.layers:
            mask = L["mask"].flatten()
            n_total = mask.numel()
            n_ones = int(mask.sum())
            n_prune = int(DROP_FRACTION * n_ones)
            n_keep = n_ones - n_prune
            score_drop = torch.where(mask, self.block_sum(L["w"].abs()).flatten(), -1.0)
            _, order = torch.topk(score_drop, n_total)
            rank = torch.arange(n_total)
            mask1 = (rank < n_keep).long().scatter(0, order, (rank < n_keep).long())
            score_grow = self.block_sum(L["g"].abs()).flatten()
            lifted = torch.where(mask1 == 1, score_grow.min() - 1, score_grow)
            _, order = torch.topk(lifted, n_total)
            mask2 = (rank < n_prune).long().scatter(0, order, (rank < n_prune).long())
            new = self.expand(((mask2 == 1) & ~mask).view(L["mask"].shape))
            L["w"].copy_(torch.where(new, 0.0, L["w"]))
            combined = (mask1 + mask2).bool().view(L["mask"].shape)
            emask = self.expand(combined)
            L["m"].mul_(emask)
            L["w"].mul_(emask)
            L["mask"] = combined

    def state_mb(self):
        return sum(L["w"].nbytes + L["m"].nbytes + L["g"].nbytes + L["mask"].nbytes for L in self.layers) / 2**20


# ---- the update in a training step -------------------------------------------------------


def conv_tensors(spec, batch):
    cin, cout, k, s, size = spec
    x = torch.randn(batch, cin, size, size).to(memory_format=torch.channels_last)
    out = (size + 2 * (k // 2) - k) // s + 1
    dy = torch.randn(batch, cout, out, out).to(memory_format=torch.channels_last)
    return x, dy


def gradient_score_ms(specs, block, batch, repeats):
    """(fused score over all layers, dense weight gradient over all layers), ms."""
    tensors = [conv_tensors(spec, batch) for spec in specs]
    weights = [torch.randn(spec[1], spec[0], spec[2], spec[2]).to(memory_format=torch.channels_last)
               for spec in specs]

    def fused():
        for spec, (x, dy) in zip(specs, tensors):
            st.ops.conv2d_grad_scores(x, dy, (block, block), kernel_size=spec[2], stride=spec[3], padding=spec[2] // 2)

    def dense():
        for spec, (x, dy), w in zip(specs, tensors, weights):
            torch.ops.aten.convolution_backward(dy, x, w, None, [spec[3]] * 2, [spec[2] // 2] * 2, [1, 1], False,
                                                [0, 0], 1, [False, True, False])

    return interleaved_median_ms([fused, dense], repeats)


def step_ms(specs, density, block, batch, repeats):
    """Forward+backward of the layers, (sparse, dense) ms."""
    tensors = [conv_tensors(spec, batch) for spec in specs]
    dense = [nn.Conv2d(cin, cout, k, s, k // 2, bias=False).to(memory_format=torch.channels_last)
             for cin, cout, k, s, _ in specs]
    sparse = [st.SparseConv2d.from_dense(d, density=density, block_size=(block, block)) for d in dense]

    def run(layers):
        def go():
            for layer, (x, dy) in zip(layers, tensors):
                layer(x.requires_grad_()).backward(dy)
                layer.zero_grad(set_to_none=True)
                x.grad = None
        return go

    return interleaved_median_ms([run(sparse), run(dense)], repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats; skip the training-step table")
    parser.add_argument("--repeats", type=int, default=None, help="timed updates per measurement (median)")
    parser.add_argument("--batch", type=int, default=8, help="batch of the gradient-score and step measurements")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    torch.manual_seed(0)
    specs = resnet50_layers()
    weights = sum(shape2d(s)[0] * shape2d(s)[1] for s in specs)
    print(f"# suptickets {st.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, float32; {len(specs)} layers, {weights / 1e6:.1f} M weights; "
          f"drop fraction {DROP_FRACTION}")
    rows, updates = [], {}
    for density in DENSITIES:
        for block in BLOCKS:
            ours, mask, full = Ours(specs, density, block), Mask(specs, density, block), Mask(specs, density, block)
            t_full, t_mask, t_ours = interleaved_median_ms([full.update_full_sort, mask.update, ours.update], repeats)
            updates[(density, block)] = (t_ours, t_mask)
            rows.append((f"{density}", f"{block}x{block}", f"{t_full:.1f}", f"{t_mask:.1f}", f"{t_ours:.1f}",
                         f"{t_full / t_ours:.2f}x", f"{t_mask / t_ours:.2f}x", f"{mask.state_mb():.0f}",
                         f"{ours.state_mb():.0f}"))
            print(f"  density {density}, block {block}: {t_full:.1f} / {t_mask:.1f} -> {t_ours:.1f} ms",
                  file=sys.stderr,
                  flush=True)
            del ours, mask, full
    print("\nOne topology update (scores + selection + new layout + re-pack of values and momentum)")
    print(markdown_table(("density", "block", "mask, full topk ms", "mask, partial topk ms", "suptickets ms",
                          "vs full topk", "vs partial topk", "mask state MB", "suptickets state MB"), rows))
    if args.quick:
        return
    rows = []
    scores = {block: gradient_score_ms(specs, block, args.batch, max(2, repeats // 2)) for block in BLOCKS}
    for density in DENSITIES:
        for block in BLOCKS:
            t_ours, t_mask = updates[(density, block)]
            fused, dense_dw = scores[block]
            sparse_step, dense_step = step_ms(specs, density, block, args.batch, max(2, repeats // 2))
            share_ours = (t_ours + fused) / (DELTA_T * sparse_step)
            share_mask = t_mask / (DELTA_T * dense_step)
            rows.append((f"{density}", f"{block}x{block}", f"{fused:.0f}", f"{dense_dw:.0f}", f"{sparse_step:.0f}",
                         f"{dense_step:.0f}", f"{100 * share_ours:.2f}%", f"{100 * share_mask:.2f}%"))
            print(f"  step density {density}, block {block} done", file=sys.stderr, flush=True)
    print(f"\nThe update in a training step (batch {args.batch}, 224 px; Delta T = {DELTA_T}; share = (update + "
          "gradient score) / (Delta T x step); the mask approach's gradient is its dense backward's)")
    print(markdown_table(("density", "block", "fused grad score ms", "dense dW ms", "sparse step ms", "dense step ms",
                          "share suptickets", "share mask"), rows))


if __name__ == "__main__":
    main()
