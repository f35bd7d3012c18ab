"""Accuracy and speed side by side: sparse training with and without Sup-tickets on Fashion-MNIST,
every run a ``suptickets train --preset fashion-mnist`` run of its own, kept as one JSON record.

    python benchmarks/bench_study.py --dataset fashion-mnist            # run what is not recorded yet
    python benchmarks/bench_study.py --dataset fashion-mnist --report   # the tables from the records
    python benchmarks/bench_study.py --dataset fashion-mnist --list     # the plan, and what is recorded

The plan, per network (``mlp3x1000``: 784-1000-1000-1000-10 with BatchNorm; ``cnn2``: two
convolutions and a hidden linear layer, see ``suptickets.train.models``): dense (3 seeds); RigL
and SET, each without and with the booster, at 90 % and 95 % sparsity, unstructured ``(1, 1)``
(5 seeds); RigL without and with the booster at 90 % with 8x8 and 32x32 blocks (3 seeds;
32x32 fits no layer of the MLP, whose widths 784 and 1000 share no factor above 8); and on the
MLP, two variants of the booster at 90 % RigL (5 seeds, the same base runs): exploration 0.2
instead of 0.5, and cycles twice as long (``--cycle-rate 0.2``). A booster run and its base run
share the seed and the number of steps. Every run holds out the preset's 5,000 training images
(stratified, the same for all runs) as a validation split; choices between variants are read
from it, never from the test set.

Each run trains in one process of one thread (``--workers`` of them side by side) in
``results/<dataset>/.work/<key>`` and, once finished, writes ``results/<dataset>/<key>.json``
(configuration, seed, test and validation figures, the booster's ticket trace, training
images/s from the run's own ``metrics.jsonl``, FLOPs ratio, git revision, CPU) atomically and
deletes its folder. A recorded run is skipped; an interrupted one resumes from its checkpoint
(``suptickets train --resume``), so the study continues across sessions.

``--report``: per network, mean ± std over seeds of validation and test accuracy, ECE and NLL;
the paired difference booster − base (same seeds) with its 95 % t-interval; training images/s
(the median over seeds, robust to one run slowed by other work on the machine) and the speedup
over the same network's dense runs; training FLOPs relative to dense. Then, for the booster
runs, validation and test accuracy of each ticket, of the live network right after each
exploration, of the ultimate ticket and of the tickets' ensemble (paper Appendix E).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETWORKS = ("mlp3x1000", "cnn2")
NAMES = {"dense": "dense", "rigl": "RigL", "set": "SET", "granet": "GraNet"}
# variants of the booster (extra flags of `suptickets train`), compared on the validation split
VARIANTS = {"": [], "explore0.2": ["--explore-fraction", "0.2"], "long-cycles": ["--cycle-rate", "0.2"]}
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


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
    epochs: int = 10                 # the preset's 10 unless the plan says otherwise
    cycles: int | None = None        # booster runs: M cycles in the last 10 % (None: the preset's 3)

    @property
    def key(self) -> str:
        if self.method == "dense":
            name = f"{self.network}-dense"
        else:
            name = (f"{self.network}-{self.method}{'-sup' if self.boost else ''}-{round(100 * self.sparsity)}"
                    f"-b{self.block}")
        if self.epochs != 10:
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
        """The row of the base runs a booster row is paired with (same network, method, sparsity,
        block and number of steps)."""
        return (self.network, self.method, self.sparsity, self.block, False, "", self.epochs, None)


def plan(networks=NETWORKS) -> list[Spec]:
    """Every run of the study, in the order they are run (the headline rows first)."""
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
       steps each), 3 seeds.
    c. 200 epochs (2,860 steps per cycle, the paper's CIFAR length), base and booster, 5 seeds.
    d. ``mlp3x1000``, RigL 95 % unstructured, 100 epochs, base and booster, 5 seeds.
    e. ``cnn2``, RigL 95 % unstructured, 100 epochs, base and booster, 5 seeds; dense 3 seeds.
    f. ``mlp3x1000``, GraNet 90 %, 8x8 blocks, 100 epochs, base and booster, 5 seeds.
    """
    def pairs(net, method, sparsity, block, epochs, seeds=range(5)):
        return [Spec(net, method, sparsity, block, boost, s, epochs=epochs, cycles=3 if boost else None)
                for s in seeds for boost in (False, True)]

    lines: list[Spec] = []
    if "mlp3x1000" in networks:
        lines += pairs("mlp3x1000", "rigl", 0.9, 8, 100)
        lines += [Spec("mlp3x1000", "dense", 0.0, 1, False, s, epochs=100) for s in range(3)]
        lines += [Spec("mlp3x1000", "rigl", 0.9, 8, True, s, epochs=100, cycles=m) for s in range(3)
                  for m in (1, 2, 5, 10)]
        lines += pairs("mlp3x1000", "rigl", 0.9, 8, 200)
        lines += pairs("mlp3x1000", "rigl", 0.95, 1, 100)
    if "cnn2" in networks:
        lines += pairs("cnn2", "rigl", 0.95, 1, 100)
        lines += [Spec("cnn2", "dense", 0.0, 1, False, s, epochs=100) for s in range(3)]
    if "mlp3x1000" in networks:
        lines += pairs("mlp3x1000", "granet", 0.9, 8, 100)
    return lines


PLANS = {"short": plan, "long": long_plan}


def command(spec: Spec, dataset: str, work: str) -> list[str]:
    train = [sys.executable, "-m", "suptickets", "train"]
    if os.path.isfile(os.path.join(work, "config.json")):
        return train + ["--resume", work, "--quiet", "--threads", "1"]
    args = ["--preset", dataset, "--model", spec.network, "--method", spec.method, "--seed", str(spec.seed),
            "--threads", "1", "--quiet", "--out", work, "--keep-checkpoints", "1"]
    if spec.epochs != 10:
        args += ["--epochs", str(spec.epochs)]
    if spec.method != "dense":
        args += ["--sparsity", str(spec.sparsity), "--block-size", str(spec.block),
                 "--sup-tickets" if spec.boost else "--no-sup-tickets"]
        if spec.boost:
            args += ["--ticket-trace"]
            if spec.cycles is not None:
                args += ["--cycles", str(spec.cycles)]
    return train + args + list(spec.extra)


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_json_atomic(value: dict, path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def record_of(spec: Spec, work: str, seconds: float, revision: str) -> dict:
    """The record of a finished run, from its folder."""
    with open(os.path.join(work, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(work, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(work, "metrics.jsonl")) as f:
        epochs = [json.loads(line) for line in f if line.strip()]
    images = sum(e["images_per_s"] * e["epoch_time_s"] for e in epochs)
    train_seconds = sum(e["epoch_time_s"] for e in epochs)
    cpu_seconds = sum(e.get("cpu_time_s", math.nan) for e in epochs)
    keep = ("test_accuracy", "ece", "nll", "sparsity", "flops_train", "flops_test", "final_network", "validation",
            "val_size", "ticket_trace", "tickets", "explorations", "steps", "epochs", "network")
    return {"key": spec.key, "spec": {k: v for k, v in asdict(spec).items() if k != "extra"},
            "extra_flags": list(spec.extra), "config": config, "summary": {k: summary.get(k) for k in keep},
            "epochs": [{k: e.get(k) for k in ("epoch", "train_loss", "val_accuracy", "test_accuracy",
                                               "images_per_s", "epoch_time_s", "cpu_time_s")} for e in epochs],
            "images_per_s": images / train_seconds, "train_seconds": train_seconds, "wall_seconds": seconds,
            # the run's share of a core while it trained: 1 alone on its core, below it when disturbed
            "cpu_share": cpu_seconds / train_seconds,
            "git": revision, "cpu": cpu_name(), "torch": _torch_version(), "python": platform.python_version(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _torch_version() -> str:
    import torch
    return torch.__version__


def run_one(spec: Spec, dataset: str, results: str) -> str:
    path = os.path.join(results, spec.key + ".json")
    if os.path.isfile(path):
        return f"{spec.key}: recorded"
    work = os.path.join(results, ".work", spec.key)
    os.makedirs(work, exist_ok=True)
    began, revision = time.perf_counter(), git_revision()  # the code the run starts with
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = os.path.join(work, "train.log")
    with open(log, "a") as out:
        proc = subprocess.Popen(command(spec, dataset, work), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # the run's own CPU time: below its wall time when disturbed
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read().strip().splitlines()[-3:]
        return f"{spec.key}: FAILED (exit {proc.returncode}): {' / '.join(tail)}"
    seconds = time.perf_counter() - began
    record = record_of(spec, work, seconds, revision)
    record["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    write_json_atomic(record, path)
    shutil.rmtree(work, ignore_errors=True)
    return f"{spec.key}: {seconds:.0f} s (CPU {record['cpu_seconds'] / seconds:.2f} of wall)"


def load_records(results: str) -> dict:
    records = {}
    if os.path.isdir(results):
        for name in sorted(os.listdir(results)):
            if name.endswith(".json") and not name.startswith("."):
                with open(os.path.join(results, name)) as f:
                    r = json.load(f)
                records[r["key"]] = r
    return records


# ---- the report ----------------------------------------------------------------------------------

def mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    if not values:
        return "-"
    m = statistics.fmean(values) * scale
    s = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def paired(diffs: list[float], scale: float = 100.0) -> str:
    """Mean of the paired differences with its 95 % t-interval."""
    n = len(diffs)
    if n < 2:
        return "-"
    m, s = statistics.fmean(diffs) * scale, statistics.stdev(diffs) * scale
    half = _T975[n - 1] * s / math.sqrt(n) if n - 1 in _T975 else 1.96 * s / math.sqrt(n)
    return f"{m:+.2f} [{m - half:+.2f}, {m + half:+.2f}]"


def _label(row: tuple) -> str:
    net, method, sparsity, block, boost, variant, epochs, cycles = row
    length = f", {epochs} epochs" if epochs != 10 else ""
    if method == "dense":
        return "dense" + length
    text = f"{NAMES[method]}{' + Sup-tickets' if boost else ''}, {round(100 * sparsity)} %, {block}x{block}{length}"
    if boost and cycles is not None:
        text += f", M = {cycles}"
    return text + (f" ({variant})" if variant else "")


def _rows(records: dict, network: str) -> dict:
    rows: dict[tuple, dict[int, dict]] = {}
    for r in records.values():
        s = r["spec"]
        if s["network"] != network:
            continue
        row = (s["network"], s["method"], s["sparsity"], s["block"], s["boost"], s["variant"], s.get("epochs", 10),
               s.get("cycles"))
        rows.setdefault(row, {})[s["seed"]] = r
    return rows


def report(records: dict, specs: list[Spec]) -> str:
    out = []
    planned: dict[tuple, set] = {}
    for spec in specs:
        planned.setdefault(spec.row, set()).add(spec.seed)
    for network in NETWORKS:
        rows = _rows(records, network)
        if not rows:
            continue
        dense = [r for row, runs in rows.items() if row[1] == "dense" for r in runs.values()]
        dense_speed = statistics.median(r["images_per_s"] for r in dense) if dense else None
        out.append(f"\n### {network}\n")
        out.append("| configuration | seeds | val accuracy (%) | test accuracy (%) | ECE (%) | NLL "
                   "| booster − base (points, 95 % CI) | train img/s | speedup | training FLOPs |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        order = [spec.row for spec in specs if spec.network == network]
        for row in dict.fromkeys(order):
            runs = rows.get(row)
            if not runs:
                continue
            seeds = sorted(runs)
            acc = [runs[s]["summary"]["test_accuracy"] for s in seeds]
            val = [runs[s]["summary"]["validation"]["accuracy"] for s in seeds if runs[s]["summary"].get("validation")]
            ece = [runs[s]["summary"]["ece"] for s in seeds]
            nll = [runs[s]["summary"]["nll"] for s in seeds]
            speed = statistics.median(runs[s]["images_per_s"] for s in seeds)  # robust to a disturbed run
            diff = "-"
            if row[4]:
                base = rows.get(row[:4] + (False, "", row[6], None), {})
                common = [s for s in seeds if s in base]
                diff = paired([runs[s]["summary"]["test_accuracy"] - base[s]["summary"]["test_accuracy"]
                               for s in common])
                if common:
                    diff += f" (n={len(common)})"
            done = f"{len(seeds)}" + (f" of {len(planned[row])}" if len(planned.get(row, ())) > len(seeds) else "")
            flops = statistics.fmean(runs[s]["summary"]["flops_train"] for s in seeds)
            ratio = f"{speed / dense_speed:.2f}×" if dense_speed else "-"
            out.append(f"| {_label(row)} | {done} | {mean_std(val)} | {mean_std(acc)} | {mean_std(ece)} "
                       f"| {mean_std(nll, 1.0, 3)} "
                       f"| {diff} | {speed:.0f} | {ratio} | {flops:.3f} |")
        out.append(trace_table(rows, order))
    return "\n".join(out)


def trace_table(rows: dict, order: list) -> str:
    """The booster runs' networks (paper Appendix E): each ticket, the live network right after
    each exploration, the ultimate ticket and the tickets' ensemble; validation and test accuracy."""
    lines = ["", "| booster run | split | ticket 0 | after expl. 1 | ticket 1 | after expl. 2 | ticket 2 "
             "| after expl. 3 | ticket 3 | ultimate | ensemble |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    any_row = False
    for row in dict.fromkeys(order):
        runs = rows.get(row)
        if not row[4] or not runs:
            continue
        traces = [r["summary"]["ticket_trace"] for r in runs.values() if r["summary"].get("ticket_trace")]
        if not traces:
            continue
        any_row = True
        for split in ("val", "test"):
            cells = []
            n_events = min(len(t["events"]) for t in traces)
            for i in range(n_events):
                cells.append(mean_std([t["events"][i][split]["accuracy"] for t in traces]))
            cells += [mean_std([t[k][split]["accuracy"] for t in traces]) for k in ("ultimate", "ensemble")]
            lines.append(f"| {_label(row)} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if any_row else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("fashion-mnist",), default="fashion-mnist")
    parser.add_argument("--plan", choices=tuple(PLANS), default="short",
                        help="short: the 10-epoch study (results/<dataset>); long: the long-schedule study "
                             "(results/<dataset>-long)")
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--workers", type=int, default=2, help="runs side by side, one thread each")
    parser.add_argument("--report", action="store_true", help="print the tables from the records and stop")
    parser.add_argument("--list", action="store_true", help="print the plan and what is recorded, and stop")
    parser.add_argument("--results", default=None, help="folder of the records (default: results/<dataset>)")
    parser.add_argument("--max-runs", type=int, default=None, help="run at most this many of the missing runs")
    args = parser.parse_args()
    folder = args.dataset + ("-long" if args.plan == "long" else "")
    results = args.results or os.path.join(ROOT, "results", folder)
    specs = PLANS[args.plan](tuple(args.networks))
    records = load_records(results)
    if args.report:
        print(header(records, specs))
        print(report(records, specs))
        return
    missing = [s for s in specs if s.key not in records]
    if args.list:
        for s in specs:
            print(f"{'recorded' if s.key in records else 'missing '}  {s.key}")
        print(f"{len(specs) - len(missing)} of {len(specs)} runs recorded")
        return
    if args.max_runs is not None:
        missing = missing[:args.max_runs]
    os.makedirs(results, exist_ok=True)
    print(f"{len(missing)} runs to do, {args.workers} at a time", flush=True)
    with ThreadPoolExecutor(args.workers) as pool:
        for line in pool.map(lambda s: run_one(s, args.dataset, results), missing):
            print(line, flush=True)


def header(records: dict, specs: list[Spec]) -> str:
    recorded = [r for r in records.values()]
    cpus = sorted({r["cpu"] for r in recorded})
    hours = sum(r["wall_seconds"] for r in recorded) / 3600
    return (f"# Fashion-MNIST study: {len(recorded)} of {len(specs)} runs recorded, {hours:.2f} process-hours of one "
            f"thread each, {hours / 2:.2f} hours of two cores ({', '.join(cpus) or '-'}); preset fashion-mnist "
            "(10 epochs, batch 128, validation 5,000 "
            "of the 60,000 training images); test accuracy of the output network (the ultimate ticket with the "
            "booster); speed: training images/s of the run (two runs side by side; median over seeds), speedup "
            "over the same network's dense runs")


if __name__ == "__main__":
    main()
