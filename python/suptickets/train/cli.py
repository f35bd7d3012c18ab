"""``suptickets`` (and ``python -m suptickets``): the command line.

    suptickets train                              # digits, small CNN, RigL + Sup-tickets at 90 %
    suptickets train --preset cifar-paper --dataset cifar100 --data-dir ~/data --model vgg16 --method rigl
    suptickets train --config run.yaml --epochs 10
    suptickets train --resume runs/digits-cnn-rigl-sup-90
    torchrun --nproc_per_node 2 -m suptickets train --model mlp

Bad input (an unknown option value, a missing data folder, an unreadable checkpoint) prints
one line naming the option and what it accepts, and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .checkpoint import CheckpointError
from .config import DISTRIBUTIONS, METHODS, PRESETS, Config, ConfigError, read_config_file, resolve, validate
from .data import DATASETS, DataError
from .models import MODELS

EXIT_USAGE = 2
_RESUMABLE = {"quiet", "threads", "workers", "device"}  # what --resume may change


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise ConfigError(message)


def _flags(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", default=S, help=f"{' | '.join(DATASETS)} (default digits)")
    g.add_argument("--data-dir", default=S, help="folder holding cifar-10-batches-py/, cifar-100-python/ or "
                   "ImageNet's train/ and val/")
    g.add_argument("--model", default=S, help=f"{' | '.join(MODELS)}")
    g.add_argument("--workers", type=int, default=S, help="ImageNet loader processes (default 4)")
    g = p.add_argument_group("sparsity")
    g.add_argument("--method", default=S, help=f"{' | '.join(METHODS)} (default rigl)")
    g.add_argument("--sparsity", type=float, default=S, help="fraction of weights removed, in [0, 1) (default 0.9)")
    g.add_argument("--distribution", default=S, help=f"per-layer densities: {' | '.join(DISTRIBUTIONS)}")
    g.add_argument("--block-size", default=S, help="N or RxC (default 1: unstructured)")
    g.add_argument("--dense-first", action=argparse.BooleanOptionalAction, default=S,
                   help="keep the first layer dense")
    g.add_argument("--update-every", type=int, default=S, help="steps between topology updates (Delta T, 100)")
    g.add_argument("--drop-fraction", type=float, default=S, help="RigL/SET drop fraction, GraNet regrowth (0.3)")
    g.add_argument("--update-end", type=float, default=S, help="RigL/SET: last update at this fraction (0.75)")
    g.add_argument("--granet-initial-density", type=float, default=S, help="GraNet's starting density (0.5)")
    g.add_argument("--granet-prune-end", type=float, default=S, help="GraNet: pruning ends at this fraction (0.5)")
    g = p.add_argument_group("Sup-tickets")
    g.add_argument("--sup-tickets", action=argparse.BooleanOptionalAction, default=S,
                   help="boost the method with Sup-tickets (default on; --no-sup-tickets for the base method)")
    g.add_argument("--cycle-rate", type=float, default=S, help="fraction of the run for the cyclic phase (0.1)")
    g.add_argument("--cycle-epochs", type=int, default=S, help="epochs per cycle (paper: 8 CIFAR, 2 ImageNet)")
    g.add_argument("--lr-low", type=float, default=S, help="alpha_1 (default: the base schedule's last LR)")
    g.add_argument("--lr-high", type=float, default=S, help="alpha_2 (0.005)")
    g.add_argument("--explore-fraction", type=float, default=S, help="blocks replaced per exploration (0.5)")
    g.add_argument("--superpose", default=S, help="cia | caa | cima")
    g.add_argument("--reprune", default=S, help="layer | global")
    g.add_argument("--bn", default=S, help="average | recompute")
    g.add_argument("--base-ticket", action=argparse.BooleanOptionalAction, default=S,
                   help="count the base phase's network as ticket 0 (the authors' code; default on)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=S)
    g.add_argument("--batch-size", type=int, default=S, help="global batch (split over processes)")
    g.add_argument("--lr", type=float, default=S)
    g.add_argument("--momentum", type=float, default=S)
    g.add_argument("--weight-decay", type=float, default=S)
    g.add_argument("--lr-milestones", type=int, nargs="+", default=S,
                   help="epochs of the x0.1 drops (default: 1/2 and 3/4 of the base phase)")
    g.add_argument("--lr-gamma", type=float, default=S)
    g = p.add_argument_group("run")
    g.add_argument("--preset", default=S, help=f"{' | '.join(PRESETS)} (the paper's Tables 7 and 8)")
    g.add_argument("--config", default=None, help="YAML or JSON file of options (flags override it)")
    g.add_argument("--seed", type=int, default=S)
    g.add_argument("--device", default=S, help="auto | cpu | cuda | cuda:N")
    g.add_argument("--threads", type=int, default=S, help="CPU threads (torch.set_num_threads)")
    g.add_argument("--out", default=S, help="run folder (default runs/<dataset>-<model>-<method>...)")
    g.add_argument("--eval-every", type=int, default=S, help="test every N epochs (1)")
    g.add_argument("--keep-checkpoints", type=int, default=S, help="newest checkpoints kept (2)")
    g.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR from its newest checkpoint")
    g.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="suptickets", description="Block-sparse training with the Sup-tickets booster.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    train = sub.add_parser("train", help="train a sparse network and write a run folder",
                           description="Train a (block-)sparse network; writes config.json, metrics.jsonl, "
                           "summary.json, checkpoints, report.md and plots to the run folder.")
    _flags(train)
    return parser


def _train(args: argparse.Namespace) -> int:
    from .runner import Run
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume", "quiet")}
    if args.resume:
        extra = sorted(set(flags) - _RESUMABLE)
        if extra or args.config:
            raise ConfigError("--resume continues the run with its own config.json; drop "
                              + ", ".join("--" + k.replace("_", "-") for k in (extra or ["config"])))
        path = os.path.join(args.resume, "config.json")
        if not os.path.isfile(path):
            raise ConfigError(f"--resume {args.resume}: no run there (no config.json)")
        with open(path) as f:
            values = json.load(f)
        values.update(flags)
        values["block_size"] = tuple(values["block_size"])
        config = Config(**values)
        validate(config)
        run = Run(config, args.resume, resume=True, quiet=args.quiet)
    else:
        file_values = read_config_file(args.config) if args.config else {}
        config = resolve(file_values, flags)
        run = Run(config, quiet=args.quiet)
    run.train()
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        return _train(args)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"suptickets train: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
