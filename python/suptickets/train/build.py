"""Building a run of ``suptickets train`` from its :class:`Config`: the device, the run folder's
name and checks, the sparse model, the optimizer and learning-rate schedule, the method (from
``methods.METHODS``) and the booster. Nothing here trains."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from .. import methods
from ..sparse import sparsify, sparsity_table
from . import distributed
from .config import Config, ConfigError
from .models import build_model
from .precision import Precision


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here (use --device cpu)")
    return device


def check_writable(run_dir: str) -> None:
    """``ConfigError`` before any work when the run folder (or the folder it would be made in)
    cannot be written."""
    existing = os.path.abspath(run_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {run_dir}: cannot create the run folder ({existing} is not writable)")


def default_run_dir(c: Config) -> str:
    name = f"{c.dataset}-{c.model}-{c.method}{'-sup' if c.sup_tickets else ''}-{round(100 * c.sparsity)}"
    base = os.path.join("runs", name)
    path, i = base, 2
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    return path


def default_milestones(base_epochs: float) -> list[int]:
    """The x0.1 drops at 1/2 and 3/4 of the base phase, in whole epochs (the paper's CIFAR
    schedule: a base phase of 226 epochs gives 113 and 169, Table 7)."""
    return [max(1, math.floor(base_epochs / 2)), max(1, math.floor(base_epochs * 3 / 4))]


def build_sparse_model(c: Config, dataset) -> torch.nn.Module:
    model = build_model(c.model, in_channels=dataset.in_channels, image_size=dataset.image_size,
                        num_classes=dataset.num_classes)
    if c.method == "dense":
        return model
    density = methods.METHODS[c.method].starting_density(c)
    model = sparsify(model, density=density, distribution=c.distribution, block_size=c.block_size,
                     dense_first=c.dense_first)
    if not any(r.status == "sparse" for r in sparsity_table(model)):
        raise ConfigError(f"--block-size {c.block_size[0]}x{c.block_size[1]} fits no layer of {c.model} (or ERK kept "
                          "every layer dense): choose a block size that divides the layers' channels, e.g. 1 or 16")
    return model


def build_method(c: Config, total: int, say=print) -> methods.Method:
    """The method ``--method`` names, from its options, for a run of ``total`` steps."""
    try:
        return methods.METHODS[c.method].from_options(c, total, say)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def build_booster(c: Config, total_steps: int, steps_per_epoch: int) -> methods.SupTickets | None:
    """The Sup-tickets booster of the run (None without it), bound to its length."""
    if not c.sup_tickets:
        return None
    try:
        length = ({"num_cycles": c.cycles} if c.cycles is not None
                  else {"cycle_steps": c.cycle_epochs * steps_per_epoch})
        boost = methods.SupTickets(c.cycle_rate, **length, lr_low=c.lr_low, lr_high=c.lr_high,
                                   explore_fraction=c.explore_fraction, superpose=c.superpose, reprune=c.reprune,
                                   bn=c.bn, include_base_ticket=c.base_ticket, keep_tickets=c.ticket_trace)
        boost.bind(total_steps)
    except (ValueError, TypeError) as exc:
        length = f"--cycles {c.cycles}" if c.cycles is not None else f"--cycle-epochs {c.cycle_epochs}"
        raise ConfigError(f"{exc} (--sup-tickets: --cycle-rate {c.cycle_rate}, {length}, --epochs {c.epochs})"
                          ) from None
    return boost


@dataclass
class Training:
    """What a run trains with: the model on its device, its optimizer and schedule, the
    booster and the sparse-training controller (None for a dense run)."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    milestones: list[int]
    boost: methods.SupTickets | None
    sparse: methods.SparseTraining | None


def build_training(c: Config, data, device: torch.device, ctx: distributed.Context, total_steps: int,
                   steps_per_epoch: int, precision: Precision, say=print) -> Training:
    """The model in the run's precision (rank 0's weights on every process), SGD, the step schedule
    of the milestones (1/2 and 3/4 of the base phase unless given), the booster and the method."""
    model = precision.model(build_sparse_model(c, data).to(device))
    if ctx.distributed:
        distributed.broadcast_state(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    boost = build_booster(c, total_steps, steps_per_epoch)
    base_steps = boost.start if boost is not None else total_steps
    milestones = [m * steps_per_epoch for m in (c.lr_milestones or default_milestones(base_steps / steps_per_epoch))]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, c.lr_gamma)
    sparse = None
    if c.method != "dense":
        method = build_method(c, total_steps, say)
        try:
            sparse = methods.SparseTraining(model, optimizer, method, total_steps, sup_tickets=boost, seed=c.seed)
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc)) from None
    return Training(model, optimizer, scheduler, milestones, boost, sparse)
