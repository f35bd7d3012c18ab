"""The runs of the study: one :class:`Spec` per ``suptickets train --preset fashion-mnist`` run,
in the order they are run, and the command line of each."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

NETWORKS = ("mlp3x1000", "cnn2")
METHODS = ("dense", "rigl", "set", "granet")
# variants of the booster (extra flags of `suptickets train`), compared on the validation split
VARIANTS = {"": [], "explore0.2": ["--explore-fraction", "0.2"], "long-cycles": ["--cycle-rate", "0.2"]}
PRESET_EPOCHS, PRESET_CYCLES = 10, 3  # the fashion-mnist preset's


@dataclass(frozen=True)
class Spec:
    """One run of the study."""
    network: str
    method: str
    sparsity: float
    block: int
    boost: bool
    seed: int
    variant: str = ""
    extra: list = field(default_factory=list, compare=False, hash=False)
    epochs: int = PRESET_EPOCHS
    cycles: int | None = None        # booster runs: M cycles in the last 10 % (None: the preset's 3)

    @property
    def key(self) -> str:
        if self.method == "dense":
            name = f"{self.network}-dense"
        else:
            name = (f"{self.network}-{self.method}{'-sup' if self.boost else ''}-{round(100 * self.sparsity)}"
                    f"-b{self.block}")
        if self.epochs != PRESET_EPOCHS:
            name += f"-e{self.epochs}"
        if self.boost and self.cycles is not None:
            name += f"-m{self.cycles}"
        return name + (f"-{self.variant}" if self.variant else "") + f"-s{self.seed}"

    @property
    def row(self) -> tuple:
        """The table row the run belongs to (all but the seed)."""
        return (self.network, self.method, self.sparsity, self.block, self.boost, self.variant, self.epochs,
                self.cycles)

    @property
    def base_row(self) -> tuple:
        """The row of the base runs a booster row is paired with: the same network, method,
        sparsity, block and number of steps, without the booster."""
        return (self.network, self.method, self.sparsity, self.block, False, "", self.epochs, None)

    @property
    def cycle_count(self) -> int:
        """M, the number of cycles of a booster run."""
        return self.cycles if self.cycles is not None else PRESET_CYCLES

    def cycle_steps(self, steps_per_epoch: int, cycle_rate: float = 0.1) -> int:
        """C, the steps of each cycle: the last ``cycle_rate`` of the run shared by M cycles."""
        if self.variant == "long-cycles":
            cycle_rate = 0.2
        return int(cycle_rate * self.epochs * steps_per_epoch) // self.cycle_count


def plan(networks=NETWORKS) -> list[Spec]:
    """The 10-epoch study (the preset as it is), in the order it is run (the headline rows first).

    Per network (``mlp3x1000``: 784-1000-1000-1000-10 with BatchNorm; ``cnn2``: two convolutions
    and a hidden linear layer, see ``suptickets.train.models``): dense (3 seeds); RigL and SET,
    each without and with the booster, at 90 % and 95 % sparsity, unstructured ``(1, 1)`` (5
    seeds); RigL without and with the booster at 90 % with 8x8 and 32x32 blocks (3 seeds; 32x32
    fits no layer of the MLP, whose widths 784 and 1000 share no factor above 8); and on the MLP,
    two variants of the booster at 90 % RigL (5 seeds, the same base runs): exploration 0.2
    instead of 0.5, and cycles twice as long (``--cycle-rate 0.2``).
    """
    specs: list[Spec] = []
    for net in networks:
        specs += [Spec(net, "dense", 0.0, 1, False, s) for s in range(3)]
        unstructured = [Spec(net, method, sp, 1, b, s) for s in range(5) for sp in (0.9, 0.95)
                        for method in ("rigl", "set") for b in (False, True)]
        blocks = (8,) if net == "mlp3x1000" else (8, 32)
        # every row at 3 seeds before the unstructured rows get their 4th and 5th
        specs += unstructured[:24]
        specs += [Spec(net, "rigl", 0.9, blk, b, s) for blk in blocks for s in range(3) for b in (False, True)]
        specs += unstructured[24:]
        if net == "mlp3x1000":
            specs += [Spec(net, "rigl", 0.9, 1, True, s, v, VARIANTS[v]) for v in ("explore0.2", "long-cycles")
                      for s in range(5)]
    return specs


def long_plan(networks=NETWORKS) -> list[Spec]:
    """The long-schedule study (the paper's regime: cycles of thousands of steps), line by line in
    the order they are run; a booster run and its base run share the seed and the number of steps.

    a. ``mlp3x1000``, RigL 90 %, 8x8 blocks, 100 epochs, 3 cycles in the last 10 % (1,430 steps
       each): base and booster, 5 seeds; dense at 100 epochs, 3 seeds.
    b. the cycle-length curve: the same with M = 1, 2, 5, 10 cycles (4,290 / 2,145 / 858 / 429
       steps each), 3 seeds; then M = 15, 30 (286 / 143 steps, the short study's cycle lengths
       within the long schedule), 3 seeds.
    c. 200 epochs (2,860 steps per cycle, the paper's CIFAR length), base and booster, 5 seeds.
    d. ``mlp3x1000``, RigL 95 % unstructured, 100 epochs, base and booster, 5 seeds.
    e. ``cnn2``, RigL 95 % unstructured, 100 epochs, base and booster, 5 seeds; dense 3 seeds.
    f. ``mlp3x1000``, GraNet 90 %, 8x8 blocks, 100 epochs, base and booster, 5 seeds.
    g. line f's booster with explorations of 0.2 instead of 0.5 (``explore0.2``), 5 seeds, paired
       with line f's base runs: at 0.5 the first exploration costs GraNet's network about 20 points,
       as its regrowth has decayed to about 1 % of a layer by then.
    """
    def pairs(net, method, sparsity, block, epochs, seeds=range(5)):
        return [Spec(net, method, sparsity, block, boost, s, epochs=epochs, cycles=PRESET_CYCLES if boost else None)
                for s in seeds for boost in (False, True)]

    lines: list[Spec] = []
    if "mlp3x1000" in networks:
        lines += pairs("mlp3x1000", "rigl", 0.9, 8, 100)
        lines += [Spec("mlp3x1000", "dense", 0.0, 1, False, s, epochs=100) for s in range(3)]
        lines += [Spec("mlp3x1000", "rigl", 0.9, 8, True, s, epochs=100, cycles=m) for s in range(3)
                  for m in (1, 2, 5, 10)]
        lines += [Spec("mlp3x1000", "rigl", 0.9, 8, True, s, epochs=100, cycles=m) for s in range(3)
                  for m in (15, 30)]
        lines += pairs("mlp3x1000", "rigl", 0.9, 8, 200)
        lines += pairs("mlp3x1000", "rigl", 0.95, 1, 100)
    if "cnn2" in networks:
        lines += pairs("cnn2", "rigl", 0.95, 1, 100)
        lines += [Spec("cnn2", "dense", 0.0, 1, False, s, epochs=100) for s in range(3)]
    if "mlp3x1000" in networks:
        lines += pairs("mlp3x1000", "granet", 0.9, 8, 100)
        lines += [Spec("mlp3x1000", "granet", 0.9, 8, True, s, "explore0.2", VARIANTS["explore0.2"], epochs=100,
                       cycles=PRESET_CYCLES) for s in range(5)]
    return lines


PLANS = {"short": plan, "long": long_plan}


def command(spec: Spec, dataset: str, work: str) -> list[str]:
    """The ``suptickets train`` command of a run, or of its resume when ``work`` holds one."""
    train = [sys.executable, "-m", "suptickets", "train"]
    if os.path.isfile(os.path.join(work, "config.json")):
        return train + ["--resume", work, "--quiet", "--threads", "1"]
    args = ["--preset", dataset, "--model", spec.network, "--method", spec.method, "--seed", str(spec.seed),
            "--threads", "1", "--quiet", "--out", work, "--keep-checkpoints", "1"]
    if spec.epochs != PRESET_EPOCHS:
        args += ["--epochs", str(spec.epochs)]
    if spec.method != "dense":
        args += ["--sparsity", str(spec.sparsity), "--block-size", str(spec.block),
                 "--sup-tickets" if spec.boost else "--no-sup-tickets"]
        if spec.boost:
            args += ["--ticket-trace"]
            if spec.cycles is not None:
                args += ["--cycles", str(spec.cycles)]
    return train + args + list(spec.extra)
