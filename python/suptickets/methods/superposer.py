"""``Superposer``: superposes tickets (networks of one architecture) into one network at the
tickets' sparsity, the way Sup-tickets does (paper §3.2.2, Eq. 4; DESIGN.md).

    sup = st.Superposer(mode="cia", reprune="layer")
    for ticket in tickets:          # models, or their state dicts
        sup.add(ticket)
    model = sup.result()            # a ready model (eval mode)

Each sparse layer keeps a sparse accumulator (values, row-major blocks, per-block counts):
a ticket is merged on the union of the supports (``ops.superpose_``/``ops.superpose_union``)
and the result re-pruned by block magnitude to the ticket's number of blocks (per layer), or
to the tickets' total with one threshold across layers (``reprune="global"``). Every other
floating-point entry of the state dict (biases, BatchNorm affine parameters and running
statistics, dense layers) is averaged with the same weights; integer entries (BatchNorm's
``num_batches_tracked``) are the latest ticket's. Memory: one sparse copy of the network,
and while merging a layer at most both supports of that layer (of every layer, globally).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from .. import ops
from ..ops.merge_rule import MODES, merge_weights
from ..sparse import BlockSparseWeight
from .schedule import check_choice
from .topology import select_global

REPRUNE = ("layer", "global")
BN = ("average", "recompute")
_SPARSE_KEYS = ("values", "layout_rows", "layout_cols")


def check_beta(beta) -> float:
    try:
        beta = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a number in [0, 1), got {beta!r}") from None
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    return beta


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside ``torch.compile``, ``DataParallel`` and DDP wrappers."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while True:
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        elif isinstance(model, wrappers):
            model = model.module
        else:
            return model


class _Accumulator:
    """The superposed blocks of one sparse layer."""

    __slots__ = ("values", "rows", "cols", "counts")

    def __init__(self, values, rows, cols, counts):
        self.values, self.rows, self.cols, self.counts = values, rows, cols, counts

    def take(self, kept: torch.Tensor) -> "_Accumulator":
        return _Accumulator(self.values.index_select(0, kept.to(self.values.device)).contiguous(),
                            *(t.index_select(0, kept.to(t.device)) for t in (self.rows, self.cols, self.counts)))

    def as_dict(self) -> dict:
        return {"values": self.values, "rows": self.rows, "cols": self.cols, "counts": self.counts}


class Superposer:
    """Superposes tickets added one at a time; see the module docstring.

    Args:
        mode: "cia" (default; ticket ``t`` merged as ``((t-1) acc + ticket) / t``), "caa"
            (each block divided by how many tickets had it since it entered the superposed
            network) or "cima" (``beta * acc + (1 - beta) * ticket``).
        reprune: "layer" (each layer back to the latest ticket's number of blocks) or
            "global" (the latest ticket's total, blocks ranked by norm per weight across
            layers, at least one per layer).
        beta: CIMA's decay in [0, 1) (paper §4.2: 0.8).
        bn: "average" (running statistics averaged like the weights, paper §4.6) or
            "recompute" (one pass over data in train mode with cumulative statistics,
            Appendix C; ``result`` then needs a loader).
        score: "l1" or "l2", the block norm of re-pruning.
    """

    def __init__(self, mode: str = "cia", reprune: str = "layer", beta: float = 0.8, bn: str = "average",
                 score: str = "l1"):
        self.mode = check_choice(mode, "mode", MODES)
        self.reprune = check_choice(reprune, "reprune", REPRUNE)
        self.beta = check_beta(beta)
        self.bn = check_choice(bn, "bn", BN)
        self.score = check_choice(score, "score", ("l1", "l2"))
        self.count = 0
        self._keys: list[str] = []                     # the state dict's keys, in order
        self._sparse: dict[str, _Accumulator] = {}     # layer prefix -> accumulator
        self._dense: dict[str, torch.Tensor] = {}      # averaged entries
        self._latest: dict[str, torch.Tensor] = {}     # integer entries: the latest ticket's
        self._shapes: dict[str, tuple] = {}            # layer prefix -> 2-D weight shape, when known
        self._template: nn.Module | None = None

    # ---- adding tickets ----------------------------------------------------------------

    def add(self, ticket) -> None:
        """Merges a ticket: a model, a model's ``state_dict()``, or a ``SparseTraining``
        checkpoint (its ``"model"`` entry). Raises ``ValueError`` when it does not match the
        architecture of the first ticket."""
        state, shapes = self._read(ticket)
        sparse = self._sparse_prefixes(state)
        number = self.count + 1
        if self.count == 0:
            self._start(state, sparse, shapes)
        else:
            self._check_architecture(state, sparse, shapes, number)
            self._merge_sparse(state, sparse, number)
            self._merge_dense(state, number)
        self.count = number

    def _read(self, ticket) -> tuple[Mapping, dict]:
        if isinstance(ticket, nn.Module):
            module = unwrap(ticket)
            if self._template is None:
                self._template = module
            shapes = {f"{name}." if name else "": m.weight_shape2d for name, m in module.named_modules()
                      if isinstance(m, BlockSparseWeight)}
            return module.state_dict(), shapes
        if isinstance(ticket, Mapping):
            if "model" in ticket and "optimizer" in ticket and isinstance(ticket["model"], Mapping):
                ticket = ticket["model"]  # a SparseTraining checkpoint
            elif "training" in ticket and "config" in ticket:
                raise ValueError("a ticket must be a model, its state_dict() or a SparseTraining.state_dict(); got "
                                 "a whole `suptickets train` checkpoint: pass its [\"training\"] entry")
            loose = [k for k, v in ticket.items() if not isinstance(v, torch.Tensor)]
            if loose:
                raise ValueError(f"a ticket must be a model, its state_dict() or a SparseTraining.state_dict(); got a "
                                 f"mapping whose {loose[0]!r} entry is a {type(ticket[loose[0]]).__name__}, not a "
                                 "tensor")
            return ticket, {}
        raise TypeError(f"a ticket must be a model or a state dict, got {type(ticket).__name__}")

    @staticmethod
    def _sparse_prefixes(state: Mapping) -> list[str]:
        prefixes = [k[: -len("layout_rows")] for k in state if k.endswith("layout_rows")]
        for p in prefixes:
            for key in _SPARSE_KEYS:
                if p + key not in state:
                    raise ValueError(f"the ticket's sparse layer {p or 'model'!r} has no {p + key!r} entry")
        return prefixes

    def _start(self, state, sparse, shapes) -> None:
        self._keys = list(state)
        skip = {p + k for p in sparse for k in _SPARSE_KEYS}
        with torch.no_grad():
            for p in sparse:
                values = state[p + "values"].detach().clone().contiguous()
                rows = state[p + "layout_rows"].clone()
                self._sparse[p] = _Accumulator(values, rows, state[p + "layout_cols"].clone(),
                                               torch.ones(rows.numel(), dtype=torch.int32, device=rows.device))
            for key, tensor in state.items():
                if key in skip:
                    continue
                if not torch.is_tensor(tensor):  # a module's extra state: the latest ticket's
                    self._latest[key] = copy.deepcopy(tensor)
                    continue
                target = self._dense if tensor.is_floating_point() else self._latest
                target[key] = tensor.detach().clone()
        self._shapes = dict(shapes)

    def _check_architecture(self, state, sparse, shapes, number) -> None:
        def mismatch(what):
            return ValueError(f"ticket {number} does not match the architecture of the first ticket: {what}")

        if set(state) != set(self._keys):
            extra, missing = sorted(set(state) - set(self._keys)), sorted(set(self._keys) - set(state))
            raise mismatch(f"unexpected entries {extra[:5]}, missing entries {missing[:5]}")
        if sorted(sparse) != sorted(self._sparse):
            raise mismatch(f"sparse layers {sorted(sparse)} instead of {sorted(self._sparse)}")
        for key, acc in list(self._dense.items()) + list(self._latest.items()):
            if not torch.is_tensor(acc):
                continue
            given = state[key]
            if not torch.is_tensor(given) or tuple(given.shape) != tuple(acc.shape) or given.dtype != acc.dtype:
                found = f"{given.dtype} {tuple(given.shape)}" if torch.is_tensor(given) else type(given).__name__
                raise mismatch(f"{key} is {found}, expected {acc.dtype} {tuple(acc.shape)}")
        for p, acc in self._sparse.items():
            values = state[p + "values"]
            if values.dim() != 3 or values.shape[1:] != acc.values.shape[1:] or values.dtype != acc.values.dtype:
                raise mismatch(f"{p}values is {values.dtype} {tuple(values.shape)}, expected blocks of "
                               f"{tuple(acc.values.shape[1:])} in {acc.values.dtype}")
            known, given = self._shapes.get(p), shapes.get(p)
            if known is not None and given is not None and tuple(known) != tuple(given):
                raise mismatch(f"layer {p!r} has a {tuple(given)} weight, expected {tuple(known)}")
            if known is None and given is not None:
                self._shapes[p] = given

    def _merge_sparse(self, state, sparse, number) -> None:
        args = {p: (state[p + "values"].detach(), state[p + "layout_rows"], state[p + "layout_cols"]) for p in sparse}
        mode = dict(t=number, mode=self.mode, beta=self.beta, kind=self.score)
        if self.reprune == "layer":
            for p in sparse:
                acc, (values, rows, cols) = self._sparse[p], args[p]
                if acc.values.shape[0] == values.shape[0]:  # in place: the usual case
                    acc.rows, acc.cols, acc.counts = ops.superpose_(acc.values, acc.rows, acc.cols, acc.counts,
                                                                    values, rows, cols, **mode)
                else:
                    merged = _Accumulator(*ops.superpose_union(acc.values, acc.rows, acc.cols, acc.counts, values,
                                                               rows, cols, **mode)[:4])
                    scores = ops.block_scores(merged.values, self.score)
                    drop = ops.select_k(scores, scores.numel() - values.shape[0])
                    self._sparse[p] = merged.take(_complement(drop, scores.numel()))
            return
        merged, scores = {}, []
        for p in sparse:
            acc, (values, rows, cols) = self._sparse[p], args[p]
            *parts, score = ops.superpose_union(acc.values, acc.rows, acc.cols, acc.counts, values, rows, cols, **mode)
            merged[p] = _Accumulator(*parts)
            scores.append(score)
        areas = [int(args[p][0].shape[1] * args[p][0].shape[2]) for p in sparse]
        keep = sum(int(args[p][0].shape[0]) * a for p, a in zip(sparse, areas))
        for p, drop, score in zip(sparse, select_global(scores, areas, keep), scores):
            self._sparse[p] = merged[p].take(_complement(drop, score.numel()))

    def _merge_dense(self, state, number) -> None:
        a, b = merge_weights(self.mode, number, self.beta)
        with torch.no_grad():
            for key, acc in self._dense.items():
                acc.mul_(a).add_(state[key].detach().to(acc.device), alpha=b)
            for key in self._latest:
                value = state[key]
                self._latest[key] = value.detach().clone() if torch.is_tensor(value) else copy.deepcopy(value)

    # ---- the result -----------------------------------------------------------------------

    def model_state_dict(self) -> dict:
        """The superposed network as a state dict of the tickets' architecture."""
        self._need_tickets()
        out = {}
        for key in self._keys:
            for p, acc in self._sparse.items():
                if key == p + "values":
                    out[key] = acc.values
                elif key == p + "layout_rows":
                    out[key] = acc.rows
                elif key == p + "layout_cols":
                    out[key] = acc.cols
            if key not in out:
                out[key] = self._dense[key] if key in self._dense else self._latest[key]
        return out

    def result(self, into: nn.Module | None = None, loader=None) -> nn.Module:
        """The superposed network as a ready model in eval mode: ``into`` (a model of the
        tickets' architecture, loaded in place) or a copy of the first ticket added as a model.
        With ``bn="recompute"``, BatchNorm statistics are then recomputed over ``loader`` (one
        pass in train mode, cumulative average; batches are inputs or (input, ...) tuples)."""
        self._need_tickets()
        if into is None:
            if self._template is None:
                raise ValueError("the tickets were state dicts: pass into=<a model of their architecture>")
            into = copy.deepcopy(self._template)
        model = unwrap(into)
        model.load_state_dict(self.model_state_dict())
        if self.bn == "recompute":
            if loader is None:
                raise ValueError("bn='recompute' needs a loader of training data: result(loader=...)")
            recompute_batchnorm(model, loader)
        return model.eval()

    def _need_tickets(self) -> None:
        if self.count == 0:
            raise RuntimeError("no ticket has been added yet")

    # ---- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue superposing (not the model: see ``model_state_dict``)."""
        return {
            "config": {"mode": self.mode, "reprune": self.reprune, "beta": self.beta, "bn": self.bn,
                       "score": self.score},
            "count": self.count,
            "keys": list(self._keys),
            "sparse": {p: acc.as_dict() for p, acc in self._sparse.items()},
            "dense": dict(self._dense),
            "latest": dict(self._latest),
            "shapes": dict(self._shapes),
        }

    def load_state_dict(self, state: dict) -> None:
        config = {"mode": self.mode, "reprune": self.reprune, "beta": self.beta, "bn": self.bn, "score": self.score}
        if state["config"] != config:
            raise ValueError(f"the state is of a Superposer with {state['config']}, this one has {config}")
        self.count = int(state["count"])
        self._keys = list(state["keys"])
        self._sparse = {p: _Accumulator(d["values"].contiguous(), d["rows"], d["cols"], d["counts"])
                        for p, d in state["sparse"].items()}
        self._dense = {k: v.clone() for k, v in state["dense"].items()}
        self._latest = dict(state["latest"])
        self._shapes = dict(state["shapes"])


def _complement(drop: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[drop.cpu()] = False
    return keep.nonzero().squeeze(1)


def recompute_batchnorm(model: nn.Module, loader) -> None:
    """Resets the BatchNorm running statistics of ``model`` and recomputes them as the
    cumulative average over one pass of ``loader`` in train mode (as SWA's ``update_bn``)."""
    device = next((p.device for p in model.parameters()), None)
    with torch.no_grad():
        torch.optim.swa_utils.update_bn(loader, model, device=device)
