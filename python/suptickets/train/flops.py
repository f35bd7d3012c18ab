"""Training and inference FLOPs normalised to the same model dense, counted as RigL's paper
counts them (Evci et al., 2020, Sec. 4 and Appendix H), so the ratios compare with Table 3
of the Sup-tickets paper.

    rep = st.flops.report(model, (1, 3, 32, 32), method=sparse)   # sparse: a SparseTraining
    rep.inference_ratio, rep.training_ratio; print(rep)

What is counted: the multiply-adds (2 FLOPs each) of every ``Linear``/``Conv2d`` layer,
sparse or dense, for one input of ``input_size`` (its first dimension is the batch);
other layers (BatchNorm, activations, pooling) are left out, as in RigL's count.

- A layer's forward costs ``density * f_dense``; a training step costs ``3 f_S`` (the
  backward is twice the forward: one product for the input gradient, one for the weight's).
- A step whose update reads the dense gradient (RigL and GraNet every ``update_every``
  steps, a Sup-tickets exploration with gradient growth) costs ``2 f_S + f_D``: the
  weight-gradient product is dense on that step.
- SNIP's scoring steps run the dense network: ``3 f_D``.
- GraNet's density changes during the run: each step is counted at that step's density.
- Sup-tickets adds its ticket merges: one pass over the union of two supports (at most
  twice the active weights), 5 FLOPs per weight (running average, block norm).

Densities over time come from a ``SparseTraining`` (its record of every topology change)
or, for a ``Method`` that has not run, from its schedule with ``model``'s current layer
densities as the end state.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

import torch
from torch import nn

from ..methods import GraNet, Method, SparseTraining, SupTickets
from ..sparse import BlockSparseWeight

MERGE_FLOPS_PER_WEIGHT = 5


@dataclass
class LayerFlops:
    name: str
    kind: str
    dense_forward: float   # FLOPs of the dense layer's forward for one input of input_size
    density: float         # at the end of the run (the model given)
    inference: float       # density * dense_forward
    training: float        # the layer's training FLOPs over the run
    training_dense: float  # 3 * dense_forward * total_steps


@dataclass
class FlopsReport:
    layers: list
    inference_ratio: float
    training_ratio: float
    dense_forward: float       # FLOPs of the dense model's forward for one input of input_size
    total_steps: int | None

    def as_dict(self) -> dict:
        return {"inference_ratio": self.inference_ratio, "training_ratio": self.training_ratio,
                "dense_forward": self.dense_forward, "total_steps": self.total_steps,
                "layers": [vars(r) for r in self.layers]}

    def __str__(self) -> str:
        header = ("layer", "type", "dense fwd FLOPs", "density", "inference", "training")
        rows = [(r.name, r.kind, f"{r.dense_forward:.3g}", f"{r.density:.4f}",
                 f"{r.inference / r.dense_forward:.4f}" if r.dense_forward else "-",
                 f"{r.training / r.training_dense:.4f}" if r.training_dense else "-") for r in self.layers]
        rows.append(("total", "", f"{self.dense_forward:.3g}", "", f"{self.inference_ratio:.4f}",
                     f"{self.training_ratio:.4f}" if self.total_steps else "-"))
        widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def dense_forward_flops(model: nn.Module, input_size) -> list[tuple[str, str, float, float, int]]:
    """``(name, kind, dense forward FLOPs, density, blocks of the grid)`` of every Linear/Conv2d
    layer, measured with one forward pass of zeros of ``input_size`` in eval mode."""
    rows: dict[str, tuple] = {}
    hooks = []

    def hook(name):
        def record(module, args, out):
            if isinstance(module, BlockSparseWeight):
                k, kind, d = module.weight_shape2d[1], type(module).__name__.replace("Sparse", ""), module.density
                grid = module.nnz / module.density
            elif isinstance(module, nn.Conv2d):
                k, kind, d, grid = module.weight[0].numel(), "Conv2d", 1.0, 1
            else:
                k, kind, d, grid = module.in_features, "Linear", 1.0, 1
            rows[name] = (name, kind, 2.0 * out.numel() * k, d, round(grid))
        return record

    for name, m in model.named_modules():
        if isinstance(m, (BlockSparseWeight, nn.Linear, nn.Conv2d)):
            hooks.append(m.register_forward_hook(hook(name)))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_size), device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    if not rows:
        raise ValueError("the model has no Linear or Conv2d layer to count")
    return [rows[n] for n, _ in model.named_modules() if n in rows]


def _density_timeline(training: SparseTraining, layers, total: int) -> dict[str, list[tuple[int, float]]]:
    """Per layer, ``(from_step, density)`` pieces: the density in force during steps >= from_step."""
    final = {name: d for name, _, _, d, _ in layers}
    grids = {name: g for name, _, _, _, g in layers}
    records: dict[str, list] = {}
    for r in training.history:
        records.setdefault(r.layer, []).append(r)
    timeline = {}
    for name in final:
        recs = records.get(name, [])
        if not recs:
            timeline[name] = [(1, final[name])]
            continue
        first = recs[0]
        start = (first.nnz - first.grown + first.pruned) / grids[name]
        pieces = [(1, start)] + [(r.step + 1, r.density) for r in recs]
        timeline[name] = pieces
    return timeline


def report(model: nn.Module, input_size, *, method=None, total_steps: int | None = None,
           sup_tickets: SupTickets | None = None) -> FlopsReport:
    """Inference and training FLOPs of ``model`` normalised to the same model dense.

    Args:
        model: the (sparse) model; its layer densities are the run's end state.
        input_size: the shape of one input batch, e.g. ``(128, 3, 32, 32)``.
        method: a ``SparseTraining`` (densities over time from its record, its method's and
            booster's schedules), a ``Method`` (its schedule), or None (static sparsity).
        total_steps: steps of the run; taken from a ``SparseTraining``/bound method if omitted
            (a ``Method`` or booster bound to another length is bound to this one).
        sup_tickets: a booster, when ``method`` is a ``Method`` (a ``SparseTraining`` has its own).
    """
    layers = dense_forward_flops(model, input_size)
    training = method if isinstance(method, SparseTraining) else None
    base = training.method if training is not None else method
    if base is not None and not isinstance(base, Method):
        raise TypeError(f"method must be a SparseTraining, a suptickets Method or None, got {method!r}")
    boost = training.sup_tickets if training is not None else sup_tickets
    if training is not None and total_steps is not None and int(total_steps) != training.total_steps:
        raise ValueError(f"total_steps={total_steps} differs from the SparseTraining's {training.total_steps}: "
                         "leave it out")
    if total_steps is None:
        total_steps = training.total_steps if training is not None else getattr(base, "total_steps", None)
    if total_steps is not None:
        total_steps = int(total_steps)
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if base is not None and getattr(base, "total_steps", None) != total_steps:
            base.bind(total_steps)
        if boost is not None and boost.total_steps != total_steps:
            boost.bind(total_steps)

    dense_total = sum(f for _, _, f, _, _ in layers)
    inference = sum(f * d for _, _, f, d, _ in layers)
    if total_steps is None:  # inference only
        rows = [LayerFlops(n, k, f, d, f * d, 0.0, 0.0) for n, k, f, d, _ in layers]
        return FlopsReport(rows, inference / dense_total, float("nan"), dense_total, None)

    dense_grad_steps = _dense_gradient_steps(base, boost, total_steps)
    scoring_steps = [t for t in range(1, total_steps + 1) if base is not None and base.scores_instead(t)]
    if training is not None:
        timeline = _density_timeline(training, layers, total_steps)
    else:
        timeline = _scheduled_timeline(base, layers, total_steps, scoring_steps)
    rows = []
    for name, kind, f, d, _ in layers:
        spent = 0.0
        pieces = timeline[name] + [(total_steps + 1, None)]
        for (begin, density), (end, _) in zip(pieces, pieces[1:]):
            begin, end = max(begin, 1), min(end, total_steps + 1)
            if end <= begin:
                continue
            n_grad = bisect_left(dense_grad_steps, end) - bisect_left(dense_grad_steps, begin)
            n_score = bisect_left(scoring_steps, end) - bisect_left(scoring_steps, begin)
            n_plain = end - begin - n_grad - n_score
            spent += n_plain * 3 * density * f + n_grad * (2 * density + 1) * f + n_score * 3 * f
        rows.append(LayerFlops(name, kind, f, d, f * d, spent, 3 * f * total_steps))
    merges = 0.0
    if boost is not None:
        active = _active_weights(model)
        merges = max(0, len(boost.collection_steps()) - 1) * MERGE_FLOPS_PER_WEIGHT * 2 * active
    training_total = sum(r.training for r in rows) + merges
    return FlopsReport(rows, inference / dense_total, training_total / (3 * dense_total * total_steps), dense_total,
                       total_steps)


def _active_weights(model: nn.Module) -> int:
    return sum(m.nnz * m.block_size[0] * m.block_size[1] for m in model.modules() if isinstance(m, BlockSparseWeight))


def _dense_gradient_steps(base, boost, total: int) -> list[int]:
    steps = []
    for t in range(1, total + 1):
        in_phase = boost is not None and boost.in_phase(t)
        if base is not None and not in_phase and base.needs_gradient(t):
            steps.append(t)
        elif boost is not None and base is not None and boost.needs_gradient(t, base.growth):
            steps.append(t)
    return steps


def _scheduled_timeline(base, layers, total: int, scoring_steps) -> dict[str, list[tuple[int, float]]]:
    """Densities from the method's schedule: constant (Static, SET, RigL), dense during SNIP's
    scoring, GraNet's global density ``density_at(t)`` spread over layers in proportion to
    their end densities (capped at 1)."""
    pieces: list[tuple[int, float]] = [(1, 1.0)]
    if isinstance(base, GraNet):
        end, pieces = base.density_at(total), []
        for t in [1] + [u + 1 for u in range(1, total) if base.is_update(u)]:
            value = base.density_at(t - 1) / end
            if not pieces or value != pieces[-1][1]:
                pieces.append((t, value))
    return {name: [(t, min(1.0, d * g)) for t, g in pieces] if d < 1.0 else [(1, d)] for name, _, _, d, _ in layers}
