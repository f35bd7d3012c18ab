"""The configuration of a training run: defaults < preset < config file < command-line flags.

The dataset picks a default preset (``digits`` -> ``digits``, CIFAR -> ``cifar-paper``,
ImageNet -> ``imagenet-paper``, Fashion-MNIST -> ``fashion-mnist``), so ``--dataset cifar100``
alone trains with the paper's CIFAR recipe; ``--preset`` chooses one explicitly. The paper
presets take the paper's tables where it gives a value and the authors' published command
lines (luuyin/Sup-tickets, README) where it is silent; each field says which. Every field is checked by
:func:`validate`, which raises :class:`ConfigError` naming the option and what it accepts.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass

from .. import methods as _methods
from ..ops.geometry import pair
from .data import DATASETS
from .models import MODELS
from .precision import PRECISIONS

METHODS = ("dense", *_methods.METHODS)
DISTRIBUTIONS = ("erk", "er", "uniform")


class ConfigError(ValueError):
    """A configuration value out of its accepted range (the message names the option;
    ``option`` is its field name where one option is at fault)."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


@dataclass
class Config:
    # data and model
    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "cnn"
    workers: int = 4
    val_size: int = 0                # training samples held out as a validation split
    # sparsity
    method: str = "rigl"
    sparsity: float = 0.9
    distribution: str = "erk"
    block_size: tuple = (1, 1)
    dense_first: bool = False
    update_every: int = 100          # RigL/SET/GraNet: steps between topology updates (Delta T)
    drop_fraction: float = 0.3       # RigL/SET: alpha; GraNet: the regrowth fraction
    drop_schedule: str | None = None  # RigL/SET: constant | cosine (unset: the method's own, RigL cosine, SET constant)
    update_end: float = 0.75         # RigL/SET: no update after this fraction of the run
    granet_initial_density: float = 0.5
    granet_prune_end: float = 0.5    # GraNet: gradual pruning ends at this fraction of the run
    # Sup-tickets
    sup_tickets: bool = True
    cycle_rate: float = 0.1
    cycle_epochs: int = 4
    cycles: int | None = None        # M cycles filling the cyclic phase, in place of --cycle-epochs
    lr_low: float | None = None      # default: the base schedule's last learning rate
    lr_high: float = 0.005
    explore_fraction: float = 0.5
    superpose: str = "cia"
    reprune: str = "layer"
    bn: str = "average"
    base_ticket: bool = True
    ticket_trace: bool = False       # evaluate every ticket, the network after each exploration, the ensemble
    # optimisation
    epochs: int = 120
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: list | None = None    # epochs; default: 1/2 and 3/4 of the base phase
    lr_gamma: float = 0.1
    # run
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    out: str | None = None
    eval_every: int = 1
    keep_checkpoints: int = 2
    dist_timeout: float = 600.0      # seconds a process waits for the others before the job stops
    precision: str = "fp32"          # fp32 | bf16-mixed | bf16 (train/precision.py)
    preset: str | None = None

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["block_size"] = list(self.block_size)
        return d


# luuyin/Sup-tickets README, CIFAR command line: --update-frequency 1000 --prune-rate 0.5 --decay-schedule
# constant --large-death-rate 0.5 --update_bn, global magnitude re-pruning of the superposed network
# (its main_sup.py), and the base phase's network counted as ticket 0
_AUTHORS_TOPOLOGY = dict(drop_fraction=0.5, drop_schedule="constant", explore_fraction=0.5, reprune="global",
                         bn="recompute", base_ticket=True)

PRESETS = {
    # the embedded default: runs in minutes on two CPU cores
    "digits": dict(dataset="digits", model="cnn", epochs=120, batch_size=32, lr=0.1, momentum=0.9, weight_decay=5e-4,
                   cycle_epochs=4, lr_high=0.005, update_every=100),
    # Table 7 of the paper (Yin et al., 2022): 250 epochs, batch 128, LR 0.1 /10 at 113 and 169
    # (1/2 and 3/4 of the 226 base epochs: the default milestones),
    # cycles of 8 epochs in the last 10 %, alpha_1 0.001, alpha_2 0.005, SGD momentum 0.9, WD 5e-4, ERK.
    # Not in the paper: the authors' CIFAR command line (_AUTHORS_TOPOLOGY) with an update every 1000
    # steps (--update-frequency 1000, about 2.5 epochs of batch 128) until the cyclic phase (update_end
    # 0.9: their code stops the base method's updates there)
    "cifar-paper": dict(dataset="cifar10", model="vgg16", epochs=250, batch_size=128, lr=0.1, momentum=0.9,
                        weight_decay=5e-4, cycle_epochs=8, cycle_rate=0.1, lr_low=0.001,
                        lr_high=0.005, distribution="erk", update_every=1000, update_end=0.9, **_AUTHORS_TOPOLOGY),
    # Table 8: 100 epochs, batch 64, LR 0.1 /10 at 30, 60, 85, cycles of 2 epochs in the last 8
    # (4 tickets: cycle_rate 0.08, see DESIGN.md), alpha_1 0.0001, alpha_2 0.0005, WD 1e-4, ERK.
    # Not in the paper: the same topology recipe with an update every 4000 steps (the authors'
    # ImageNet command line) until the cyclic phase (update_end 0.92)
    "imagenet-paper": dict(dataset="imagenet", model="resnet50", epochs=100, batch_size=64, lr=0.1, momentum=0.9,
                           weight_decay=1e-4, lr_milestones=[30, 60, 85], cycle_epochs=2, cycle_rate=0.08,
                           lr_low=0.0001, lr_high=0.0005, distribution="erk", update_every=4000, update_end=0.92,
                           **_AUTHORS_TOPOLOGY),
    # cifar-paper scaled to Fashion-MNIST (55,000 training images after a validation split of 5,000,
    # 429 steps of batch 128 per epoch) and to a study of many runs on two CPU cores: 10 epochs, LR /10
    # at 1/2 and 3/4 of the base phase, 3 cycles filling the last 10 % (a third of an epoch each, as
    # the paper's CIFAR cycles are a third of its 24-epoch phase), an update every 1000 steps (2.3
    # epochs, as the authors' 1000 steps are 2.6 CIFAR epochs) until the cyclic phase
    "fashion-mnist": dict(dataset="fashion-mnist", model="mlp3x1000", epochs=10, batch_size=128, lr=0.1, momentum=0.9,
                          weight_decay=5e-4, cycles=3, cycle_rate=0.1, lr_low=0.001, lr_high=0.005, distribution="erk",
                          update_every=1000, update_end=0.9, val_size=5000, **_AUTHORS_TOPOLOGY),
}
# fashion-mnist at the length where the booster helps: the configuration of the long study
# (results/fashion-mnist-long, docs/results.md) with the best validation accuracy over the seeds
# all its candidates share (benchmarks/study/report.py, choose_on_validation; a test keeps the two
# equal). The candidates lie within about 0.2 points of each other, so read it as "a long schedule
# with the booster", not as a tuned number of cycles.
PRESETS["fashion-mnist-long"] = dict(PRESETS["fashion-mnist"], epochs=100, method="rigl", sparsity=0.9,
                                     block_size=(8, 8), sup_tickets=True, cycles=5)
DATASET_PRESET = {"digits": "digits", "cifar10": "cifar-paper", "cifar100": "cifar-paper",
                   "imagenet": "imagenet-paper", "fashion-mnist": "fashion-mnist"}

FIELDS = {f.name for f in dataclasses.fields(Config)}


def parse_block_size(value) -> tuple:
    """``32``, ``"32"``, ``"16x32"``, ``[16, 32]`` -> ``(br, bc)`` (``ops.geometry.pair`` once the
    text is split)."""
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            value = [int(p.strip()) for p in parts] * (2 if len(parts) == 1 else 1)
        except ValueError:
            raise ConfigError(f"--block-size must be N or RxC with positive integers, got {value!r}") from None
    try:
        return pair(value, "--block-size", minimum=1)
    except (TypeError, ValueError):
        raise ConfigError(f"--block-size must be N or RxC with positive integers, got {value!r}") from None


def read_config_file(path: str) -> dict:
    """A JSON or YAML mapping of option names (dashes or underscores) to values."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no file {path}")
    with open(path) as f:
        text = f.read()
    kind = "YAML" if path.endswith((".yaml", ".yml")) else "JSON"
    try:
        if kind == "YAML":
            import yaml
            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config {path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except Exception as exc:  # yaml.YAMLError: problem and position, on one line
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"--config {path}{where}: not valid {kind}: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path} must hold a mapping of option names to values")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigError(f"--config {path}: unknown option(s) {', '.join(unknown)}")
    return values


def _preset_of(chosen: dict) -> str | None:
    preset = chosen.get("preset")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}; got {preset!r}", "preset")
    return preset if preset is not None else DATASET_PRESET.get(chosen.get("dataset", Config.dataset))


def origins(file_values: dict, flag_values: dict, config_file: str | None = None) -> dict[str, str]:
    """Where each option's value comes from: "the command line", "--config FILE", "preset NAME"
    (explicit, or the dataset's) or "default"."""
    chosen = {**file_values, **flag_values}
    preset = _preset_of(chosen)
    preset_values = PRESETS[preset] if preset else {}
    return {f: "the command line" if f in flag_values else f"--config {config_file or 'file'}" if f in file_values
            else f"preset {preset}" if f in preset_values else "default" for f in FIELDS}


# the booster's options: given by the user to a run without the booster, they would do nothing
BOOSTER_FIELDS = ("cycle_rate", "cycle_epochs", "cycles", "lr_low", "lr_high", "explore_fraction", "superpose",
                  "reprune", "bn", "base_ticket", "ticket_trace")
# methods without a scheduled drop fraction (all but RigL and SET)
_NO_DROP_SCHEDULE = ("dense", *(name for name, cls in _methods.METHODS.items() if not cls.takes_drop_schedule))


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _field_of(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def resolve(file_values: dict, flag_values: dict) -> Config:
    """Defaults, then the preset (explicit, or the dataset's), then the file, then the flags.
    Options the user gave (in the file or as flags) that contradict each other or would do
    nothing in this run are refused, naming them."""
    chosen = {**file_values, **flag_values}
    preset = _preset_of(chosen)
    values = {**(PRESETS[preset] if preset else {}), **chosen}
    if "dataset" not in chosen and preset and chosen.get("preset"):
        values["dataset"] = PRESETS[preset]["dataset"]
    values["preset"] = chosen.get("preset")
    if "cycles" in chosen and "cycle_epochs" in chosen and chosen["cycles"] is not None:
        raise ConfigError("--cycles and --cycle-epochs both set the cycle length: give one of them", "cycles")
    if "cycle_epochs" in chosen and "cycles" not in chosen:
        values["cycles"] = None  # the user's cycle length in epochs, not a preset's number of cycles
    config = Config(**normalise(values))
    booster = [_flag(f) for f in BOOSTER_FIELDS if f in chosen]
    if "sup_tickets" in chosen and _boolean(chosen["sup_tickets"], "--sup-tickets") and config.method == "dense":
        booster.insert(0, "--sup-tickets")
    if booster and (config.method == "dense" or not config.sup_tickets):
        why = "--method dense" if config.method == "dense" else "--no-sup-tickets"
        raise ConfigError(f"{', '.join(booster)} set{'s' if len(booster) == 1 else ''} the Sup-tickets booster, "
                          f"which {why} turns off: drop {'it' if len(booster) == 1 else 'them'}, or train with the "
                          "booster")
    if "drop_schedule" in chosen and chosen["drop_schedule"] is not None and config.method in _NO_DROP_SCHEDULE:
        raise ConfigError(f"--drop-schedule is the drop fraction's schedule of RigL and SET; --method "
                          f"{config.method} has none: drop it", "drop_schedule")
    validate(config)
    return config


def normalise(values: dict) -> dict:
    """The values of a :class:`Config` in their canonical form: booleans from YAML's spellings,
    the block size as a pair, a dense run with sparsity 0 and no booster, milestones sorted."""
    values = dict(values)
    for field in BOOL_FIELDS:
        if field in values:
            values[field] = _boolean(values[field], _flag(field))
    if "block_size" in values:
        values["block_size"] = parse_block_size(values["block_size"])
    if values.get("method") == "dense":
        values.update(sparsity=0.0, sup_tickets=False)  # the booster needs sparse layers; a dense run is the baseline
    milestones = values.get("lr_milestones")
    if isinstance(milestones, (list, tuple)) and all(isinstance(m, (int, float)) for m in milestones):
        values["lr_milestones"] = sorted(milestones)
    return values


_BOOL_WORDS = {"true": True, "yes": True, "on": True, "y": True, "false": False, "no": False, "off": False, "n": False}
BOOL_FIELDS = ("dense_first", "sup_tickets", "base_ticket", "ticket_trace")
_STR_FIELDS = ("dataset", "data_dir", "model", "method", "distribution", "drop_schedule", "superpose", "reprune", "bn",
               "device", "out", "preset", "precision")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def _boolean(value, name: str) -> bool:
    """A real boolean, or one of YAML's spellings of one (``true``/``yes``/``on`` ..., any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise ConfigError(f"{name} must be true or false, got {value!r}", _field_of(name))


def _in(value, name, choices):
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}", _field_of(name))


def _number(value, name, low, high, *, low_open=False, high_open=False, integer=False):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}", _field_of(name))
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}", _field_of(name))
    bad = (value <= low if low_open else value < low) or (high is not None and (value >= high if high_open
                                                                                   else value > high))
    if bad or value != value:
        lo, hi = ("(" if low_open else "[") + str(low), ("inf)" if high is None else str(high) + (")" if high_open
                                                                                                  else "]"))
        raise ConfigError(f"{name} must be in {lo}, {hi}; got {value}", _field_of(name))


def validate(c: Config) -> None:
    """Checks every field of ``c`` (normalised, see :func:`normalise`), changing nothing;
    :class:`ConfigError` names the first option out of its range."""
    for field in BOOL_FIELDS:
        if not isinstance(getattr(c, field), bool):
            raise ConfigError(f"{_flag(field)} must be true or false, got {getattr(c, field)!r}", field)
    for field in _STR_FIELDS:
        value = getattr(c, field)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{_flag(field)} must be a string, got {value!r}", field)
    _in(c.dataset, "--dataset", DATASETS)
    _in(c.model, "--model", MODELS)
    _in(c.method, "--method", METHODS)
    _in(c.distribution, "--distribution", DISTRIBUTIONS)
    _in(c.superpose, "--superpose", ("cia", "caa", "cima"))
    _in(c.reprune, "--reprune", ("layer", "global"))
    _in(c.bn, "--bn", ("average", "recompute"))
    _in(c.precision, "--precision", PRECISIONS)
    if c.drop_schedule is not None:
        _in(c.drop_schedule, "--drop-schedule", ("constant", "cosine"))
    _number(c.sparsity, "--sparsity", 0, 1, high_open=True)
    if c.method != "dense" and c.sparsity == 0:
        raise ConfigError(f"--sparsity 0 leaves nothing to prune for --method {c.method}: use --method dense, "
                          "or a sparsity in (0, 1)")
    _number(c.epochs, "--epochs", 1, None, integer=True)
    _number(c.batch_size, "--batch-size", 1, None, integer=True)
    _number(c.lr, "--lr", 0, None, low_open=True)
    _number(c.momentum, "--momentum", 0, 1, high_open=True)
    _number(c.weight_decay, "--weight-decay", 0, None)
    _number(c.lr_gamma, "--lr-gamma", 0, 1, low_open=True)
    _number(c.update_every, "--update-every", 1, None, integer=True)
    _number(c.drop_fraction, "--drop-fraction", 0, 1, low_open=True, high_open=True)
    _number(c.update_end, "--update-end", 0, 1, low_open=True)
    _number(c.granet_initial_density, "--granet-initial-density", 0, 1, low_open=True)
    _number(c.granet_prune_end, "--granet-prune-end", 0, 1, low_open=True, high_open=True)
    _number(c.cycle_rate, "--cycle-rate", 0, 1, low_open=True, high_open=True)
    _number(c.cycle_epochs, "--cycle-epochs", 1, None, integer=True)
    if c.cycles is not None:
        _number(c.cycles, "--cycles", 1, None, integer=True)
    _number(c.val_size, "--val-size", 0, None, integer=True)
    _number(c.lr_high, "--lr-high", 0, None, low_open=True)
    if c.lr_low is not None:
        _number(c.lr_low, "--lr-low", 0, None)
    _number(c.explore_fraction, "--explore-fraction", 0, 1, high_open=True)
    _number(c.seed, "--seed", 0, None, integer=True)
    _number(c.workers, "--workers", 0, None, integer=True)
    _number(c.eval_every, "--eval-every", 1, None, integer=True)
    _number(c.keep_checkpoints, "--keep-checkpoints", 1, None, integer=True)
    _number(c.dist_timeout, "--dist-timeout", 0, None, low_open=True)
    if c.threads is not None:
        _number(c.threads, "--threads", 1, None, integer=True)
    if not _DEVICE.match(c.device):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N (N a number); got {c.device!r}")
    if c.lr_milestones is not None:
        if not isinstance(c.lr_milestones, (list, tuple)) or not all(
                isinstance(m, int) and not isinstance(m, bool) and 0 < m <= c.epochs for m in c.lr_milestones):
            raise ConfigError(f"--lr-milestones must be epochs in [1, --epochs={c.epochs}]; got {c.lr_milestones!r}",
                              "lr_milestones")
    if c.dataset not in ("digits", "fashion-mnist") and not c.data_dir:
        raise ConfigError(f"--dataset {c.dataset} needs --data-dir (the folder that holds the dataset)")
    if c.data_dir and not os.path.isdir(c.data_dir):
        raise ConfigError(f"--data-dir {c.data_dir} is not a folder")
