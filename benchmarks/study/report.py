"""The study's tables, a pure function of its records: per configuration, mean ± std over seeds
of validation and test accuracy, ECE and NLL; the paired difference booster − base (same seeds)
with its 95 % t-interval, on the test and on the validation split; training images/s and speedup
over dense; training FLOPs; where the records come from; the booster runs' ticket traces; and the cycle-length curve."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .plan import Spec
from .records import run_speed, spec_of

NAMES = {"dense": "dense", "rigl": "RigL", "set": "SET", "granet": "GraNet"}
NETWORKS = ("mlp3x1000", "cnn2")
# t(0.975, n - 1) for n - 1 degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` over seeds; one seed has no spread, and shows its value alone."""
    if not values:
        return "-"
    m = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def interval(diffs: list[float], scale: float = 100.0) -> tuple[float, float, float] | None:
    """Mean of paired differences and its 95 % t-interval ``(mean, low, high)``; None below 2 pairs."""
    n = len(diffs)
    if n < 2:
        return None
    m, s = statistics.fmean(diffs) * scale, statistics.stdev(diffs) * scale
    half = (_T975[n - 1] if n - 1 in _T975 else 1.96) * s / math.sqrt(n)
    return m, m - half, m + half


def paired(diffs: list[float], scale: float = 100.0) -> str:
    """Mean of the paired differences with its 95 % t-interval."""
    ci = interval(diffs, scale)
    return "-" if ci is None else f"{ci[0]:+.2f} [{ci[1]:+.2f}, {ci[2]:+.2f}]"


def label(row: tuple) -> str:
    net, method, sparsity, block, boost, variant, epochs, cycles = row
    length = f", {epochs} epochs" if epochs != 10 else ""
    if method == "dense":
        return "dense" + length
    text = f"{NAMES[method]}{' + Sup-tickets' if boost else ''}, {round(100 * sparsity)} %, {block}x{block}{length}"
    if boost and cycles is not None:
        text += f", M = {cycles}"
    return text + (f" ({variant})" if variant else "")


def group_rows(records: dict, network: str | None = None) -> dict[tuple, dict[int, dict]]:
    """Records by table row, then by seed."""
    rows: dict[tuple, dict[int, dict]] = {}
    for r in records.values():
        spec = spec_of(r)
        if network is None or spec.network == network:
            rows.setdefault(spec.row, {})[spec.seed] = r
    return rows


def _test(r: dict) -> float:
    return r["summary"]["test_accuracy"]


def _val(r: dict) -> float:
    return r["summary"]["validation"]["accuracy"]


def booster_deltas(rows: dict, row: tuple, split=_test) -> list[float]:
    """Booster − base accuracy of a booster row (test, or ``split=_val``), paired by seed."""
    base = rows.get(row[:4] + (False, "", row[6], None), {})
    runs = rows[row]
    return [split(runs[s]) - split(base[s]) for s in sorted(runs) if s in base]


def _speed(runs: list[dict]) -> float | None:
    speeds = [v for v in (run_speed(r) for r in runs) if v is not None]
    return statistics.median(speeds) if speeds else None


def report(records: dict, specs: list[Spec]) -> str:
    out = []
    planned: dict[tuple, set] = {}
    for spec in specs:
        planned.setdefault(spec.row, set()).add(spec.seed)
    for network in NETWORKS:
        rows = group_rows(records, network)
        if not rows:
            continue
        dense_speed = _speed([r for row, runs in rows.items() if row[1] == "dense" for r in runs.values()])
        out.append(f"\n### {network}\n")
        out.append("| configuration | seeds | val accuracy (%) | test accuracy (%) | ECE (%) | NLL "
                   "| booster − base (points, 95 % CI) | the same on validation | train img/s | speedup "
                   "| training FLOPs |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        order = list(dict.fromkeys(spec.row for spec in specs if spec.network == network))
        for row in order:
            runs = rows.get(row)
            if not runs:
                continue
            seeds = sorted(runs)
            summaries = [runs[s]["summary"] for s in seeds]
            diff = val_diff = "-"
            if row[4]:
                deltas = booster_deltas(rows, row)
                diff = paired(deltas) + (f" (n={len(deltas)})" if deltas else "")
                val_diff = paired(booster_deltas(rows, row, _val))
            done = f"{len(seeds)}" + (f" of {len(planned[row])}" if len(planned.get(row, ())) > len(seeds) else "")
            speed = _speed(list(runs.values()))
            ratio = f"{speed / dense_speed:.2f}×" if speed and dense_speed else "-"
            flops = statistics.fmean(s["flops_train"] for s in summaries)
            val, test = [s["validation"]["accuracy"] for s in summaries], [s["test_accuracy"] for s in summaries]
            ece, nll = [s["ece"] for s in summaries], [s["nll"] for s in summaries]
            out.append(f"| {label(row)} | {done} | {mean_std(val)} | {mean_std(test)} | {mean_std(ece)} "
                       f"| {mean_std(nll, 1.0, 3)} "
                       f"| {diff} | {val_diff} | {f'{speed:.0f}' if speed else '-'} | {ratio} | {flops:.3f} |")
        out.append(provenance_table(rows, order))
        out.append(trace_tables(rows, order))
    return "\n".join(out)


def provenance_table(rows: dict, order: list) -> str:
    """Per row: the code (first and last git revision, by finishing time) and the CPU its records
    come from, and the runs whose speed does not count (disturbed by other work on the machine)."""
    lines = ["", "| configuration | git revisions | CPU | runs disturbed (speed not counted) |", "|---|---|---|---|"]
    for row in order:
        runs = rows.get(row)
        if not runs:
            continue
        by_time = sorted(runs.values(), key=lambda r: r["finished"])
        revs = list(dict.fromkeys(r["git"][:7] + ("+" if r["git"].endswith("+changes") else "") for r in by_time))
        revisions = revs[0] if len(revs) == 1 else f"{revs[0]} … {revs[-1]} ({len(revs)})"
        cpus = ", ".join(sorted({r["cpu"] for r in by_time}))
        if any(e.get("cpu_time_s") is None for r in by_time for e in r["epochs"]):
            slow = "not measured (no CPU times)"
        else:
            slow = ", ".join(sorted(f"s{spec_of(r).seed}" for r in by_time if run_speed(r) is None)) or "-"
        lines.append(f"| {label(row)} | {revisions} | {cpus} | {slow} |")
    return "\n".join(lines)


def _event_name(event: dict, explored: int) -> str:
    return f"ticket {event['index']}" if event["event"] == "ticket" else f"after expl. {explored}"


def trace_tables(rows: dict, order: list) -> str:
    """The booster runs' networks (paper Appendix E), one table per number of cycles: each ticket,
    the live network right after each exploration, the ultimate ticket and the tickets' ensemble;
    validation and test accuracy, mean ± std over seeds."""
    groups: dict[tuple, list[str]] = {}
    for row in order:
        runs = rows.get(row)
        if not row[4] or not runs:
            continue
        traces = [r["summary"]["ticket_trace"] for r in runs.values()]
        events = traces[0]["events"]
        names, explored = [], 0
        for e in events:
            explored += e["event"] == "explored"
            names.append(_event_name(e, explored))
        for split in ("val", "test"):
            cells = [mean_std([t["events"][i][split]["accuracy"] for t in traces]) for i in range(len(events))]
            cells += [mean_std([t[k][split]["accuracy"] for t in traces]) for k in ("ultimate", "ensemble")]
            groups.setdefault(tuple(names), []).append(f"| {label(row)} | {split} | " + " | ".join(cells) + " |")
    out = []
    for names, lines in groups.items():
        columns = list(names) + ["ultimate", "ensemble"]
        out += ["", "| booster run | split | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
        out += lines
    return "\n".join(out)


# ---- the cycle-length curve ---------------------------------------------------------------------

@dataclass(frozen=True)
class _OfRow:
    """A result of one table row, named as the tables name it."""
    row: tuple

    @property
    def label(self) -> str:
        return label(self.row)


@dataclass(frozen=True)
class CurvePoint(_OfRow):
    """Booster − base (test points, paired by seed) of one row, at its cycle length."""
    cycle_steps: int
    epochs: int
    run_steps: int
    mean: float
    low: float
    high: float
    n: int


def cycle_steps_of(record: dict) -> int:
    """C of a booster run, from the steps its tickets were collected at."""
    tickets = record["summary"]["tickets"]
    return tickets[-1] - tickets[-2]


def run_steps_of(record: dict) -> int:
    """T of a booster run: its last ticket is collected at its last step."""
    return record["summary"]["tickets"][-1]


def curve(records: dict, network: str = "mlp3x1000", method: str = "rigl", sparsity: float = 0.9) -> list[CurvePoint]:
    """Every booster row of ``network``/``method``/``sparsity`` as a point of the cycle-length
    curve, by cycle length (the rows of one or several studies: pass their records merged)."""
    rows = group_rows(records, network)
    points = []
    for row, runs in rows.items():
        if not row[4] or row[1] != method or row[2] != sparsity or row[5] == "explore0.2":
            continue
        ci = interval(booster_deltas(rows, row))
        if ci is None:
            continue
        steps = {cycle_steps_of(r) for r in runs.values()}
        run = {run_steps_of(r) for r in runs.values()}
        points.append(CurvePoint(row, min(steps), row[6], min(run), *ci, len(booster_deltas(rows, row))))
    return sorted(points, key=lambda p: (p.cycle_steps, p.epochs))


def helpful_from(points: list[CurvePoint]) -> tuple[int, int] | None:
    """The shortest run and, in runs that long, the shortest cycle (both in steps) at which the
    booster did not lose: the measured point whose interval does not lie wholly below zero and
    that no point of a run at least as long with cycles at least as long contradicts (by lying
    below zero), with the fewest run steps, then the fewest cycle steps. None when every point lost."""
    lost = [p for p in points if p.high < 0]
    held = [p for p in points if p.high >= 0
            and not any(q.run_steps >= p.run_steps and q.cycle_steps >= p.cycle_steps for q in lost)]
    if not held:
        return None
    best = min(held, key=lambda p: (p.run_steps, p.cycle_steps))
    return best.run_steps, best.cycle_steps


def curve_table(points: list[CurvePoint]) -> str:
    lines = ["| steps per cycle | epochs | steps of the run | configuration | booster − base (points, 95 % CI) "
             "| seeds |", "|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p.cycle_steps} | {p.epochs} | {p.run_steps} | {p.label} "
                     f"| {p.mean:+.2f} [{p.low:+.2f}, {p.high:+.2f}] | {p.n} |")
    return "\n".join(lines)


# ---- the configuration a preset reproduces ----------------------------------------------------

@dataclass(frozen=True)
class Choice(_OfRow):
    """The row with the best mean validation accuracy among ``candidates``, over the seeds they
    all have, and each candidate's mean (points) over those seeds."""
    seeds: tuple
    validation: dict


def choose_on_validation(records: dict, network: str = "mlp3x1000", method: str = "rigl",
                         sparsity: float = 0.9, block: int = 8) -> Choice | None:
    """The best of the long schedules of ``network``/``method``/``sparsity``/``block`` (every
    epoch count and number of cycles, with and without the booster, no variants; rows of at least
    2 seeds) by validation accuracy of the final network, compared over the seeds every candidate
    has (None below 2 such seeds). Test accuracy plays no part."""
    rows = {row: runs for row, runs in group_rows(records, network).items()
            if row[1:4] == (method, sparsity, block) and row[5] == "" and row[6] > 10 and len(runs) >= 2}
    if not rows:
        return None
    seeds = tuple(sorted(set.intersection(*(set(runs) for runs in rows.values()))))
    if len(seeds) < 2:
        return None
    validation = {row: 100 * statistics.fmean(runs[s]["summary"]["validation"]["accuracy"] for s in seeds)
                  for row, runs in rows.items()}
    best = max(validation, key=lambda row: (validation[row], -row[6]))  # a tie: the shorter schedule
    return Choice(best, seeds, validation)


def choice_table(choice: Choice) -> str:
    lines = [f"| configuration | val accuracy (%), seeds {', '.join(map(str, choice.seeds))} |", "|---|---|"]
    for row, value in sorted(choice.validation.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {label(row)}{' (chosen)' if row == choice.row else ''} | {value:.2f} |")
    return "\n".join(lines)
