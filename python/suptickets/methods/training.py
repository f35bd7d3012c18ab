"""``SparseTraining``: runs a sparse-training method alongside the user's optimizer.

    sparse = st.SparseTraining(model, optimizer, method=st.RigL(), total_steps=T)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y); optimizer.zero_grad(); loss.backward()
        sparse.step()                    # optimizer step + topology maintenance
"""
from __future__ import annotations

import copy

import torch

from ..sparse import sparsity_table
from ..sparse.repack import swap_parameter
from .base import Method
from .ensemble import TicketEnsemble
from .schedule import check_choice, check_steps
from .sup_tickets import SupTickets
from .superposer import unwrap
from .topology import LayerUpdate, Topology

_STATE_VERSION = 1


class SparseTraining:
    """Optimizer steps plus the topology updates of ``method`` on the sparse layers of ``model``.

    Args:
        model: a model with ``SparseLinear``/``SparseConv2d`` layers (see ``st.sparsify``).
        optimizer: any ``torch.optim`` optimizer over the model's parameters. Its state for
            a layer's ``values`` (momentum, Adam moments) is re-packed with each topology
            change; grown blocks start with zero weights and zero state.
        method: ``Static()``, ``SNIP()``, ``SET(...)``, ``RigL(...)`` or ``GraNet(...)``.
        total_steps: optimizer steps of the whole run (``step()`` calls); schedules refer to it.
        sup_tickets: a ``SupTickets(...)`` booster: the last part of the run becomes its cyclic
            phase (learning rate of Eq. 3, explorations, tickets superposed), and
            ``ultimate_model()`` returns the superposed network.
        seed: seed of the generator for random growth and fresh initialisation (default:
            drawn from torch's global RNG, so ``torch.manual_seed`` fixes it).
        score: "l1" or "l2": the block norm used for magnitude and gradient scores.

    ``step()`` is the only call in the loop. ``state_dict()`` holds everything a resume
    needs (model, optimizer, layouts, method state, generator, step count, history):
    ``load_state_dict`` of it continues exactly as the uninterrupted run would on CPU.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, method: Method, total_steps: int,
                 *, sup_tickets=None, seed: int | None = None, score: str = "l1"):
        if not isinstance(method, Method):
            raise TypeError(f"method must be a suptickets method (Static, SNIP, SET, RigL, GraNet), got {method!r}")
        if sup_tickets is not None and not isinstance(sup_tickets, SupTickets):
            raise TypeError(f"sup_tickets must be a SupTickets(...) booster or None, got {sup_tickets!r}")
        check_choice(score, "score", ("l1", "l2"))
        self.model = model
        self.optimizer = optimizer
        self.method = method
        self.total_steps = check_steps(total_steps, "total_steps")
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.generator = torch.Generator().manual_seed(int(seed))
        self.topology = Topology(model, optimizer, self.generator, score)
        method.bind(self.total_steps)
        self.sup_tickets = sup_tickets
        if sup_tickets is not None:
            owner = getattr(sup_tickets, "_owner", None)
            if owner is not None and owner is not self:
                raise ValueError("this SupTickets booster already runs another SparseTraining (binding it again "
                                 "would reset that run's schedule): give each run its own SupTickets(...)")
            sup_tickets._owner = self
            sup_tickets.bind(self.total_steps)
            sup_tickets.check_method(method)
        self.step_count = 0
        self.history: list[LayerUpdate] = list(method.setup(self.topology))
        self._arm()

    # ---- the training loop ---------------------------------------------------------

    def step(self, closure=None):
        """One optimizer step (``optimizer.step(closure)``), then the method's topology update
        when this step calls for one. Returns what ``optimizer.step`` returned.

        Raises ``RuntimeError`` past ``total_steps``, and ``ValueError`` naming the layer and the
        step, before the optimizer step is applied, when a topology update is due and a sparse
        layer's weights or gradients are not finite (a diverged run)."""
        t = self.step_count + 1
        if t > self.total_steps:
            raise RuntimeError(f"SparseTraining.step(): the run has total_steps={self.total_steps}, and step {t} "
                               "was called (schedules end there: make a new SparseTraining for a longer run)")
        boost = self.sup_tickets
        cyclic = boost is not None and boost.in_phase(t)
        if (not cyclic and self.method.is_update(t)) or (boost is not None and boost.explores(t)):
            self._check_finite(t)
        if cyclic:
            boost.set_lr(self.optimizer, t)
        if not cyclic and self.method.scores_instead(t):
            self.method.score(t, self.topology)
            result = None
        else:
            result = self.optimizer.step() if closure is None else self.optimizer.step(closure)
        if not cyclic:  # the base method's own updates are off in the cyclic phase
            self.history += self.method.update(t, self.topology)
        if boost is not None:
            self.history += boost.after_step(t, self.model, self.optimizer, self.topology, self.method.growth)
        self.step_count = t
        self._arm()
        return result

    def _check_finite(self, t: int) -> None:
        for name, layer in self.topology.layers:
            for what, tensor in (("weights", layer.values), ("gradients", layer.values.grad)):
                if tensor is not None and not bool(torch.isfinite(tensor).all()):
                    raise ValueError(f"step {t}: layer {name!r} has non-finite {what} (NaN or inf) before its "
                                     "topology update; the optimizer step was not applied (training diverged: "
                                     "lower the learning rate)")

    def _arm(self) -> None:
        """Layers keep inputs and output gradients only during steps whose update reads them."""
        t, boost = self.step_count + 1, self.sup_tickets
        needs = self.method.needs_gradient(t) if boost is None or not boost.in_phase(t) else False
        if boost is not None:
            needs = needs or boost.needs_gradient(t, self.method.growth)
        self.topology.capture_gradients(needs)

    # ---- Sup-tickets ---------------------------------------------------------------------

    def ultimate_model(self, loader=None) -> torch.nn.Module:
        """The superposed network of the tickets collected so far ("ultimate ticket"): a new
        model at the tickets' sparsity, in eval mode, BatchNorm statistics averaged (or, with
        ``bn="recompute"``, recomputed over ``loader``). The live model is not changed."""
        return self._boost().ultimate_model(self.model, loader)

    def ticket_ensemble(self) -> TicketEnsemble:
        """The tickets as an ensemble averaging their softmax outputs (paper Appendix E);
        needs ``SupTickets(keep_tickets=True)``."""
        boost = self._boost()
        if not boost.keep_tickets:
            raise RuntimeError("ticket_ensemble needs SupTickets(keep_tickets=True)")
        if not boost.tickets:
            raise RuntimeError("no ticket has been collected yet")
        members = []
        for state in boost.tickets:
            member = copy.deepcopy(unwrap(self.model))
            member.load_state_dict(state)
            members.append(member.eval())
        return TicketEnsemble(members)

    def _boost(self) -> SupTickets:
        if self.sup_tickets is None:
            raise RuntimeError("this run has no Sup-tickets booster: pass sup_tickets=SupTickets(...)")
        return self.sup_tickets

    # ---- reporting -------------------------------------------------------------------

    def densities(self):
        """Per-layer table (``SparsityTable``: name, shape, block, density, nnz) of the model now."""
        return sparsity_table(self.model)

    @property
    def density(self) -> float:
        """Active fraction of the sparse layers' weights."""
        return self.topology.density()

    # ---- checkpoints -----------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "version": _STATE_VERSION,
            "method": type(self.method).__name__,
            "step": self.step_count,
            "total_steps": self.total_steps,
            "generator": self.generator.get_state(),
            "method_state": self.method.state_dict(),
            "history": [r.as_dict() for r in self.history],
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sup_tickets": None if self.sup_tickets is None else self.sup_tickets.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores a ``state_dict()``: model (layouts and values, whatever their ``nnz``),
        optimizer, method state, generator and step count."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unsupported SparseTraining state version {state.get('version')!r}")
        if state["method"] != type(self.method).__name__:
            raise ValueError(f"the state is of a {state['method']} run, this run uses {type(self.method).__name__}")
        if state["total_steps"] != self.total_steps:
            raise ValueError(f"the state is of a run of {state['total_steps']} steps, this one has {self.total_steps}")
        if (state.get("sup_tickets") is None) != (self.sup_tickets is None):
            raise ValueError("the state and this run differ in using the Sup-tickets booster")
        before = [(layer, layer.values) for _, layer in self.topology.layers]
        self.model.load_state_dict(state["model"])
        for layer, old in before:  # a layer whose nnz differs got a new parameter
            if layer.values is not old:
                swap_parameter(self.optimizer, old, layer.values)
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())  # a checkpoint may be mapped to the GPU
        self.method.load_state_dict(state["method_state"])
        self.history = [LayerUpdate(**r) for r in state["history"]]
        if self.sup_tickets is not None:
            self.sup_tickets.load_state_dict(state["sup_tickets"])
        self.step_count = int(state["step"])
        self._arm()
