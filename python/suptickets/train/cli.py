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
import errno
import json
import os
import sys

from .. import __version__
from . import distributed
from .checkpoint import CheckpointError
from .config import (
    DATASET_PRESET,
    DISTRIBUTIONS,
    FIELDS,
    METHODS,
    PRESETS,
    Config,
    ConfigError,
    normalise,
    origins,
    read_config_file,
    resolve,
    validate,
)
from .data import DATASETS, DataError
from .models import MODELS
from .runner import DivergenceError, Run

EXIT_USAGE = 2    # bad input: an option, a data file, a checkpoint, a folder
EXIT_FAILURE = 1  # the run itself failed: diverged, or a process did not answer
# options a config.json of an older version lacks (their defaults apply)
_ADDED_LATER = {"dist_timeout", "val_size", "drop_schedule", "cycles", "ticket_trace", "precision"}
_RESUMABLE = {"quiet", "threads", "workers", "device", "dist_timeout"}  # what --resume may change


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise ConfigError(message)


def _choices(names) -> str:
    return " | ".join(names)


# (group, [(option, type, help)]): every option is a field of Config, whose default the help
# shows; type "bool" gives --x/--no-x, "ints" a list of integers.
OPTIONS = [
    ("data and model", [
        ("dataset", str, _choices(DATASETS)),
        ("data-dir", str, "folder holding cifar-10-batches-py/, cifar-100-python/, ImageNet's train/ and val/, or "
                          "Fashion-MNIST's four IDX files (unset for fashion-mnist: its Debian package's folder)"),
        ("val-size", int, "training samples held out as a validation split (evaluated every epoch)"),
        ("model", str, _choices(MODELS)),
        ("workers", int, "ImageNet loader processes"),
    ]),
    ("sparsity", [
        ("method", str, _choices(METHODS)),
        ("sparsity", float, "fraction of weights removed, in [0, 1)"),
        ("distribution", str, "per-layer densities: " + _choices(DISTRIBUTIONS)),
        ("block-size", str, "N or RxC (1: unstructured)"),
        ("dense-first", "bool", "keep the first layer dense"),
        ("update-every", int, "steps between topology updates (Delta T)"),
        ("drop-fraction", float, "RigL/SET drop fraction, GraNet regrowth fraction"),
        ("drop-schedule", str, "RigL/SET: constant | cosine (unset: RigL cosine, SET constant)"),
        ("update-end", float, "RigL/SET: no update after this fraction of the run"),
        ("granet-initial-density", float, "GraNet's starting density"),
        ("granet-prune-end", float, "GraNet: gradual pruning ends at this fraction of the run"),
    ]),
    ("Sup-tickets", [
        ("sup-tickets", "bool", "boost the method with Sup-tickets (--no-sup-tickets: the base method alone)"),
        ("cycle-rate", float, "fraction of the run for the cyclic phase"),
        ("cycle-epochs", int, "epochs per cycle (paper: 8 on CIFAR, 2 on ImageNet)"),
        ("cycles", int, "number of cycles M filling the cyclic phase, in place of --cycle-epochs"),
        ("lr-low", float, "alpha_1 (unset: the base schedule's last learning rate)"),
        ("lr-high", float, "alpha_2"),
        ("explore-fraction", float, "fraction of blocks replaced per exploration"),
        ("superpose", str, "cia | caa | cima"),
        ("reprune", str, "layer | global"),
        ("bn", str, "average | recompute"),
        ("base-ticket", "bool", "count the base phase's network as ticket 0 (the authors' code)"),
        ("ticket-trace", "bool", "evaluate each ticket, the network after each exploration and the tickets' "
                                 "ensemble (summary.json: ticket_trace)"),
    ]),
    ("optimisation", [
        ("epochs", int, ""),
        ("batch-size", int, "global batch (split over processes)"),
        ("lr", float, ""),
        ("momentum", float, ""),
        ("weight-decay", float, ""),
        ("lr-milestones", "ints", "epochs of the learning-rate drops (unset: 1/2 and 3/4 of the base phase)"),
        ("lr-gamma", float, "factor of each drop"),
    ]),
    ("run", [
        ("preset", str, _choices(PRESETS) + " (the paper's Tables 7 and 8; unset: the dataset's)"),
        ("seed", int, ""),
        ("device", str, "auto | cpu | cuda | cuda:N"),
        ("precision", str, "fp32 | bf16-mixed (autocast, float32 master weights) | bf16 (the whole model in "
                           "bfloat16)"),
        ("threads", int, "CPU threads (torch.set_num_threads; unset: torch's default)"),
        ("out", str, "run folder (unset: runs/<dataset>-<model>-<method>[-sup]-<sparsity %>)"),
        ("eval-every", int, "test every N epochs"),
        ("keep-checkpoints", int, "newest checkpoints kept"),
        ("dist-timeout", float, "seconds a torchrun process waits for the others before the job stops"),
    ]),
]


def _shown(value) -> str:
    if isinstance(value, (tuple, list)):
        return ("x" if isinstance(value, tuple) else " ").join(map(str, value))
    return str(value)


def _flags(p: argparse.ArgumentParser, preset: str | None) -> None:
    """The options, each with the value a run takes when it is not given: the preset's (the
    dataset's own, or the one named on the command line) where the preset sets it, else the
    built-in default."""
    defaults, preset_values = Config(), PRESETS.get(preset, {}) if preset else {}
    for title, options in OPTIONS:
        g = p.add_argument_group(title)
        for name, kind, text in options:
            field = name.replace("-", "_")
            if field in preset_values:
                shown = f"{_shown(preset_values[field])}, from preset {preset}"
            else:
                default = getattr(defaults, field)
                shown = None if default is None else _shown(default)
            if shown is not None:
                text = f"{text} (default: {shown})" if text else f"default: {shown}"
            kw = {"default": argparse.SUPPRESS, "help": text.replace("%", "%%") or None}
            if kind == "bool":
                kw["action"] = argparse.BooleanOptionalAction
            elif kind == "ints":
                kw.update(type=int, nargs="+")
            else:
                kw["type"] = kind
            g.add_argument("--" + name, **kw)
        if title == "run":
            g.add_argument("--config", default=None, help="YAML or JSON file of options (flags override it)")
            g.add_argument("--resume", default=None, metavar="DIR",
                           help="continue the run in DIR from its newest checkpoint")
            g.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def _preset_named(argv) -> str | None:
    """The preset a command line will use: ``--preset``, else its ``--dataset``'s, else the default dataset's."""
    scan = argparse.ArgumentParser(add_help=False)
    scan.add_argument("--preset")
    scan.add_argument("--dataset", default=Config.dataset)
    known, _ = scan.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    if known.preset in PRESETS:
        return known.preset
    return DATASET_PRESET.get(known.dataset)


def build_parser(argv=()) -> argparse.ArgumentParser:
    parser = _Parser(prog="suptickets", description="Block-sparse training with the Sup-tickets booster.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    preset = _preset_named(list(argv))
    train = sub.add_parser("train", help="train a sparse network and write a run folder",
                           description="Train a (block-)sparse network; writes config.json, metrics.jsonl, "
                           "summary.json, checkpoints, report.md and plots to the run folder. The defaults "
                           f"shown are those of preset {preset} (--preset or --dataset choose another).")
    _flags(train, preset)
    return parser


def read_run_config(run_dir: str) -> dict:
    """The options of the run in ``run_dir`` (its ``config.json``), checked to be a whole
    suptickets configuration: ``ConfigError`` naming the file otherwise."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"--resume {run_dir}: no run there (no config.json)")
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--resume {run_dir}: cannot read {path} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--resume {run_dir}: {path} is damaged (line {exc.lineno}, column {exc.colno}: "
                          f"{exc.msg})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--resume {run_dir}: {path} holds a {type(values).__name__}, not a suptickets "
                          "configuration")
    missing, unknown = sorted(FIELDS - set(values) - _ADDED_LATER), sorted(set(values) - FIELDS)
    if missing or unknown:
        def names(keys):
            return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        what = "; ".join(filter(None, [f"lacks {names(missing)}" if missing else "",
                                       f"has unknown {names(unknown)}" if unknown else ""]))
        raise ConfigError(f"--resume {run_dir}: {path} is not a suptickets configuration ({what})")
    return values


def _train(args: argparse.Namespace) -> int:
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume", "quiet")}
    if args.resume:
        extra = sorted(set(flags) - _RESUMABLE)
        if extra or args.config:
            raise ConfigError("--resume continues the run with its own config.json; drop "
                              + ", ".join("--" + k.replace("_", "-") for k in (extra or ["config"])))
        values = read_run_config(args.resume)
        recorded, asked = values.get("threads"), flags.get("threads")
        if recorded is None:
            raise ConfigError(f"--resume {args.resume}: its config.json records no thread count (an older version "
                              "wrote it), and the result depends on it: add \"threads\": N, the count it was trained "
                              "with, to that file to resume it")
        if asked is not None and asked != recorded:
            raise ConfigError(f"--threads {asked}: the run in {args.resume} was trained with --threads {recorded}, "
                              "and the result depends on the thread count; resume with --threads "
                              f"{recorded} (or without --threads)")
        values.update(flags)
        config = Config(**normalise(values))
        validate(config)
        Run(config, args.resume, resume=True, quiet=args.quiet).train()
        return 0
    file_values = read_config_file(args.config) if args.config else {}
    where = origins(file_values, flags, args.config)
    try:
        config = resolve(file_values, flags)
        Run(config, quiet=args.quiet).train()
    except (ConfigError, DataError) as exc:
        source = where.get(exc.option or "", "")
        if not source.startswith("preset"):
            raise
        value = {**PRESETS[source.split()[1]]}[exc.option]
        flag = "--" + exc.option.replace("_", "-")
        raise type(exc)(f"{exc} ({flag} {_shown(value)} comes from {source}: give {flag} to override it)",
                        exc.option) from None
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        return _train(args)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"suptickets train: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DivergenceError, distributed.PeerTimeout) as exc:
        print(f"suptickets train: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # a write outside the checkpoint path (plots, report): one line, the folder named
        where = os.path.dirname(os.path.abspath(exc.filename)) if exc.filename else "the run folder"
        reason = f"no space left on {where}" if exc.errno == errno.ENOSPC else f"{exc.strerror or exc} ({where})"
        print(f"suptickets train: error: {reason}", file=sys.stderr)
        return EXIT_USAGE
