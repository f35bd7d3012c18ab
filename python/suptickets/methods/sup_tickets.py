"""``SupTickets``: the Sup-tickets booster (Yin et al., UAI 2022; DESIGN.md, "Sup-tickets,
exactly"), run by ``SparseTraining(..., sup_tickets=SupTickets(...))``.

The last ``cycle_rate`` of the run, rounded down to whole cycles of ``cycle_steps``, is the
cyclic phase: ``M`` cycles from step ``P + 1`` to ``T`` (steps count from 1). Inside it the
learning rate follows Eq. 3 and the base method's own topology updates are off. After step
``P + k C`` (``k = 0 .. M-1``) one exploration changes the topology (prune
``explore_fraction`` of each layer by magnitude, regrow as many by the base method's growth
rule, grown blocks at zero); after steps ``P + k C`` (``k = 1 .. M``, and ``k = 0`` with
``include_base_ticket``) the live network is a ticket and is merged into the superposed one
(:class:`Superposer`). Training continues on the live network; ``ultimate_model()`` returns
the superposed one.
"""
from __future__ import annotations

import copy
import logging
import math

import torch

from .schedule import check_choice, check_steps
from .superposer import BN, MODES, REPRUNE, Superposer, check_beta, unwrap
from .topology import LayerUpdate, Topology

log = logging.getLogger("suptickets")

# Where the booster did not lose to its base method in this project's measurements, in optimizer
# steps: the cycle-length curve of the Fashion-MNIST studies (mlp3x1000, RigL at 90 %, the records
# under results/fashion-mnist and results/fashion-mnist-long), printed by
# `python benchmarks/bench_study.py --plan long --report` as "where the booster did not lose" and
# checked against the committed records by tests/test_study.py. Runs of 4,290 steps (10 epochs) lost
# 0.2-0.3 points with cycles of 143 and 286 steps (95 % intervals below zero); runs of 42,900 steps
# (100 epochs) did not lose with any cycle length measured, from 143 to 4,290 steps.
#: The shortest run, in optimizer steps, in which the booster did not lose to its base method.
SHORTEST_HELPFUL_RUN = 42900
#: The shortest cycle, in optimizer steps, measured without a loss in runs that long.
SHORTEST_HELPFUL_CYCLE = 143


def short_run_note(run_steps: int) -> str | None:
    """Why a run of ``run_steps`` is shorter than the measured regime where the booster helped
    (:data:`SHORTEST_HELPFUL_RUN`), or None."""
    if run_steps >= SHORTEST_HELPFUL_RUN:
        return None
    return (f"this run has {run_steps} steps, fewer than the {SHORTEST_HELPFUL_RUN} from which on Sup-tickets did not "
            "lose to its base method in this project's Fashion-MNIST study (shorter runs lost 0.2-0.3 points, "
            "whatever their cycle length)")


def short_cycle_note(cycle_steps: int) -> str | None:
    """Why cycles of ``cycle_steps`` are shorter than those measured without a loss
    (:data:`SHORTEST_HELPFUL_CYCLE`), or None."""
    if cycle_steps >= SHORTEST_HELPFUL_CYCLE:
        return None
    return (f"Sup-tickets cycles of {cycle_steps} steps are shorter than the {SHORTEST_HELPFUL_CYCLE} steps of the "
            "shortest cycles measured without a loss to the base method in this project's Fashion-MNIST study")


# Base methods with which the booster gained nothing measurable in a run long enough
# (results/fashion-mnist-long, lines f and g of `python benchmarks/bench_study.py --plan long --report`;
# tests/test_study.py checks the figures against the committed records): mlp3x1000, 90 %, 8x8
# blocks, 100 epochs, 5 seeds paired, by exploration fraction. With RigL the same configuration
# gained +0.24 [-0.09, +0.58] (explorations of 0.5). On GraNet, 0.5 cost the network 20 points at the
# first exploration and 0.2 nothing; the validation split prefers 0.2 (+0.11 against -0.03).
#: booster - base on the test set (points, 95 % t-interval), by the name ``--method`` gives the base
#: method, then by the exploration fraction (``--explore-fraction``) measured.
MEASURED_WITHOUT_GAIN = {"granet": {0.5: "-0.08 [-0.22, +0.06]", 0.2: "-0.01 [-0.29, +0.28]"}}


def base_method_note(method: str, explore_fraction: float = 0.5) -> str | None:
    """Why the booster on top of ``method`` (a name of ``suptickets train --method``) is not expected
    to help, from :data:`MEASURED_WITHOUT_GAIN`, with the advice on ``explore_fraction`` the
    measurements give, or None."""
    measured = MEASURED_WITHOUT_GAIN.get(method)
    if measured is None:
        return None
    figures = ", ".join(f"{delta} with --explore-fraction {fraction:g}" for fraction, delta in measured.items())
    note = (f"on top of {method} Sup-tickets gained nothing measurable in this project's 100-epoch Fashion-MNIST "
            f"study ({figures}; points at 5 seeds, where RigL gained +0.24): the tickets' superposition only makes "
            f"up the base method's own last 10 % of training")
    gentlest = min(measured)
    if explore_fraction > gentlest:
        note += (f"; its first exploration, which replaces established weights, cost the network 20 points at "
                 f"--explore-fraction 0.5 and nothing at {gentlest:g}")
    return note


def _positive(value, name: str, allow_zero: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not (value >= 0.0 if allow_zero else value > 0.0) or not math.isfinite(value):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}")
    return value


def cyclic_lr(i: int, cycle: int, low: float, high: float) -> float:
    """Eq. 3 at step ``i`` (from 0) of the cyclic phase: ``t = (i mod C + 1) / C``, rising
    linearly from ``low`` to ``high`` at ``t = 1/2`` and back to ``low`` at ``t = 1``."""
    t = (i % cycle + 1) / cycle
    if t <= 0.5:
        return (1 - 2 * t) * low + 2 * t * high
    return (2 - 2 * t) * high + (2 * t - 1) * low


class SupTickets:
    """Configuration and state of the booster.

    Args:
        cycle_rate: fraction of ``total_steps`` given to the cyclic phase, in (0, 1) (paper: 0.1).
        cycle_steps: optimizer steps per cycle ``C`` (paper: 8 epochs on CIFAR, 2 on ImageNet).
        num_cycles: instead of ``cycle_steps``, the number of cycles ``M``; then
            ``C = floor(cycle_rate * total_steps / M)``. Give exactly one of the two.
        lr_low: the learning rate at each cycle's ends (``alpha_1``); default: the learning rate
            of the last step before the phase (what the base schedule ends with), per group.
        lr_high: the peak learning rate at each cycle's middle (``alpha_2``), required.
        explore_fraction: fraction of each layer's blocks replaced by each exploration, in
            [0, 1) (paper: 0.5; 0 turns exploration off).
        superpose: "cia" (default), "caa" or "cima"; ``beta``: CIMA's decay in [0, 1).
        reprune: "layer" (default) or "global" magnitude re-pruning of the superposed network.
        bn: "average" (BatchNorm statistics averaged with the weights) or "recompute"
            (``ultimate_model(loader=...)`` runs one pass over training data).
        include_base_ticket: the network at the end of the base phase is ticket 0, so ``M``
            cycles superpose ``M + 1`` networks, as the authors' code does (default); False
            superposes only the ``M`` cycle ends (Algorithm 1 read literally).
        keep_tickets: also keep a copy of every ticket's state dict (CPU), for
            ``SparseTraining.ticket_ensemble()`` (paper Appendix E). Costs one model per ticket.
    """

    def __init__(self, cycle_rate: float = 0.1, *, cycle_steps: int | None = None, num_cycles: int | None = None,
                 lr_low: float | None = None, lr_high: float, explore_fraction: float = 0.5, superpose: str = "cia",
                 beta: float = 0.8, reprune: str = "layer", bn: str = "average", include_base_ticket: bool = True,
                 keep_tickets: bool = False):
        try:
            self.cycle_rate = float(cycle_rate)
        except (TypeError, ValueError):
            raise TypeError(f"cycle_rate must be a number in (0, 1), got {cycle_rate!r}") from None
        if not 0.0 < self.cycle_rate < 1.0:
            raise ValueError(f"cycle_rate must be in (0, 1), got {cycle_rate}")
        if (cycle_steps is None) == (num_cycles is None):
            raise ValueError("give exactly one of cycle_steps and num_cycles")
        self.cycle_steps = None if cycle_steps is None else check_steps(cycle_steps, "cycle_steps")
        self.num_cycles = None if num_cycles is None else check_steps(num_cycles, "num_cycles")
        self.lr_low = None if lr_low is None else _positive(lr_low, "lr_low", allow_zero=True)
        self.lr_high = _positive(lr_high, "lr_high")
        try:
            self.explore_fraction = float(explore_fraction)
        except (TypeError, ValueError):
            raise TypeError(f"explore_fraction must be a number in [0, 1), got {explore_fraction!r}") from None
        if not 0.0 <= self.explore_fraction < 1.0:
            raise ValueError(f"explore_fraction must be in [0, 1), got {explore_fraction}")
        self.superpose = check_choice(superpose, "superpose", MODES)
        self.beta = check_beta(beta)
        self.reprune = check_choice(reprune, "reprune", REPRUNE)
        self.bn = check_choice(bn, "bn", BN)
        self.include_base_ticket = bool(include_base_ticket)
        self.keep_tickets = bool(keep_tickets)
        self.total_steps = None
        self._owner = None  # the SparseTraining that runs this booster

    # ---- the schedule ------------------------------------------------------------------------

    def bind(self, total_steps: int) -> None:
        """Lays the cyclic phase over a run of ``total_steps`` optimizer steps."""
        T = check_steps(total_steps, "total_steps")
        budget = math.floor(self.cycle_rate * T + 1e-9)  # steps of the phase before rounding to cycles
        if self.cycle_steps is not None:
            C = self.cycle_steps
            if budget < C:
                raise ValueError(f"the cyclic phase, cycle_rate={self.cycle_rate} of total_steps={T} = {budget} steps, "
                                 f"is shorter than one cycle of cycle_steps={C}")
            M = budget // C
        else:
            M = self.num_cycles
            C = budget // M
            if C < 1:
                raise ValueError(f"the cyclic phase, cycle_rate={self.cycle_rate} of total_steps={T} = {budget} steps, "
                                 f"is shorter than num_cycles={M} cycles of one step")
        self.total_steps, self.cycle, self.cycles = T, C, M
        self.start = T - M * C  # the last step of the base phase (P)
        self.superposer = Superposer(self.superpose, self.reprune, self.beta, self.bn)
        self.resolved_lr_low: list[float] | None = None
        self.tickets: list[dict] = []
        self.collected: list[int] = []

    def in_phase(self, t: int) -> bool:
        """True for the steps of the cyclic phase (``P < t <= T``)."""
        return self.start < t <= self.total_steps

    def collects(self, t: int) -> bool:
        """True when the network after step ``t`` is a ticket."""
        k, r = divmod(t - self.start, self.cycle)
        return r == 0 and (1 if not self.include_base_ticket else 0) <= k <= self.cycles

    def explores(self, t: int) -> bool:
        """True when an exploration follows step ``t`` (the start of a cycle)."""
        k, r = divmod(t - self.start, self.cycle)
        return r == 0 and 0 <= k < self.cycles and self.explore_fraction > 0

    def collection_steps(self) -> list[int]:
        return [t for t in range(self.start, self.total_steps + 1) if self.collects(t)]

    def exploration_steps(self) -> list[int]:
        return [t for t in range(self.start, self.total_steps + 1) if self.explores(t)]

    def lr(self, t: int, low: float | None = None) -> float:
        """The learning rate of step ``t`` of the cyclic phase (Eq. 3), with ``low`` in place of
        ``lr_low`` when that is not set."""
        if not self.in_phase(t):
            raise ValueError(f"step {t} is outside the cyclic phase (steps {self.start + 1}..{self.total_steps})")
        low = self.lr_low if self.lr_low is not None else low
        if low is None:
            raise ValueError("lr_low is taken from the optimizer at the end of the base phase: not reached yet")
        return cyclic_lr(t - self.start - 1, self.cycle, low, self.lr_high)

    # ---- what SparseTraining calls -------------------------------------------------------------

    def check_method(self, method) -> None:
        """The base method must finish what changes the density before the cyclic phase."""
        prune_end = getattr(method, "prune_end", None)
        if prune_end is not None and prune_end > self.start:
            raise ValueError(f"{type(method).__name__} prunes until step prune_end={prune_end}, inside the cyclic "
                             f"phase (steps {self.start + 1}..{self.total_steps}): end pruning by step {self.start}")
        batches = getattr(method, "batches", None)
        if batches is not None and batches >= self.start:
            raise ValueError(f"{type(method).__name__} scores for batches={batches} steps, which reach the cyclic "
                             f"phase starting after step {self.start}")

    def set_lr(self, optimizer: torch.optim.Optimizer, t: int) -> None:
        """Gives every param group the Eq. 3 learning rate of step ``t`` (of the phase)."""
        lows = self.resolved_lr_low or [None] * len(optimizer.param_groups)
        for group, low in zip(optimizer.param_groups, lows):
            group["lr"] = self.lr(t, low)

    def needs_gradient(self, t: int, growth: str) -> bool:
        return growth == "gradient" and self.explores(t)

    def after_step(self, t: int, model: torch.nn.Module, optimizer, topology: Topology, growth: str
                   ) -> list[LayerUpdate]:
        """Ticket collection and exploration after optimizer step ``t``."""
        if t == self.start and self.lr_low is None:
            self.resolved_lr_low = [float(group["lr"]) for group in optimizer.param_groups]
        records = []
        if self.collects(t):
            self.superposer.add(model)
            self.collected.append(t)
            if self.keep_tickets:
                self.tickets.append({k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()})
            log.info("step %d: ticket %d superposed (%s, re-pruned per %s)", t, self.superposer.count,
                     self.superpose, self.reprune)
        if self.explores(t):
            records = [topology.prune_regrow(t, name, layer, int(self.explore_fraction * layer.nnz), growth,
                                             event="explore") for name, layer in topology.layers]
        if self.in_phase(t + 1):  # shown in the optimizer until the next step sets it again
            self.set_lr(optimizer, t + 1)
        return records

    def ultimate_model(self, model: torch.nn.Module, loader=None) -> torch.nn.Module:
        if self.superposer.count == 0:
            raise RuntimeError(f"no ticket yet: the first is collected after step "
                               f"{self.collection_steps()[0]} of {self.total_steps}")
        return self.superposer.result(into=copy.deepcopy(unwrap(model)), loader=loader)

    # ---- checkpoints --------------------------------------------------------------------------

    def _schedule(self) -> dict:
        return {"total_steps": self.total_steps, "start": self.start, "cycle": self.cycle, "cycles": self.cycles,
                "include_base_ticket": self.include_base_ticket}

    def state_dict(self) -> dict:
        return {"schedule": self._schedule(), "resolved_lr_low": self.resolved_lr_low,
                "superposer": self.superposer.state_dict(), "tickets": list(self.tickets),
                "collected": list(self.collected)}

    def load_state_dict(self, state: dict) -> None:
        if state["schedule"] != self._schedule():
            raise ValueError(f"the state is of a cyclic phase {state['schedule']}, this run has {self._schedule()}")
        self.resolved_lr_low = state["resolved_lr_low"]
        self.superposer.load_state_dict(state["superposer"])
        self.tickets = list(state["tickets"])
        self.collected = list(state["collected"])

    def __repr__(self) -> str:
        keys = ("cycle_rate", "cycle_steps", "num_cycles", "lr_low", "lr_high", "explore_fraction", "superpose",
                "beta", "reprune", "bn", "include_base_ticket")
        return "SupTickets(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"
