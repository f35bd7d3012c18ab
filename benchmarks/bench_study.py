"""Accuracy and speed side by side: sparse training with and without Sup-tickets on Fashion-MNIST,
every run a ``suptickets train --preset fashion-mnist`` run of its own, kept as one JSON record.

    python benchmarks/bench_study.py                     # run what the 10-epoch study has not recorded
    python benchmarks/bench_study.py --plan long         # the long-schedule study (results/fashion-mnist-long)
    python benchmarks/bench_study.py [--plan long] --report   # the tables from the records
    python benchmarks/bench_study.py [--plan long] --list     # the plan, and what is recorded
    python benchmarks/bench_study.py --plot FILE.png     # the cycle-length curve of both studies

The plans are in ``study/plan.py`` (``plan``: 10 epochs, the preset as it is; ``long_plan``: 100
and 200 epochs, the cycle-length curve). A booster run and its base run share the seed and the
number of steps. Every run holds out the preset's 5,000 training images (stratified, the same
for all runs) as a validation split; choices between variants are read from it, never from the
test set.

Each run trains in one process of one thread (``--workers`` of them side by side) in
``results/<folder>/.work/<key>`` and, once finished, writes ``results/<folder>/<key>.json``
(configuration, seed, test and validation figures, the booster's ticket trace, per-epoch training
images/s and CPU time from the run's own ``metrics.jsonl``, FLOPs ratio, git revision, CPU)
atomically and deletes its folder. A recorded run is skipped; an interrupted one resumes from its
checkpoint (``suptickets train --resume``), so the study continues across sessions. Every record
is checked when read (``study/records.py``); a bad one is named in one line.

``--report``: per network, mean ± std over seeds of validation and test accuracy, ECE and NLL;
the paired difference booster − base (same seeds) with its 95 % t-interval (test, and validation);
training images/s (per run over its undisturbed epochs, those whose process had at least 95 % of a core; the median over
seeds) and the speedup over the same network's dense runs; training FLOPs relative to dense; the
revisions and CPU of each row's records and its disturbed runs; the booster runs' ticket traces
(paper Appendix E); for the long plan, the cycle-length curve's table.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from study.plan import NETWORKS, PLANS, Spec, command
from study.records import ROOT, RecordError, git_revision, load_records, record_of, write_json_atomic
from study.report import choice_table, choose_on_validation, curve, curve_table, helpful_from, report


def results_folder(dataset: str, plan: str) -> str:
    return os.path.join(ROOT, "results", dataset + ("-long" if plan == "long" else ""))


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
        proc = subprocess.run(command(spec, dataset, work), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read().strip().splitlines()[-3:]
        return f"{spec.key}: FAILED (exit {proc.returncode}): {' / '.join(tail)}"
    seconds = time.perf_counter() - began
    write_json_atomic(record_of(spec, work, seconds, revision), path)
    shutil.rmtree(work, ignore_errors=True)
    return f"{spec.key}: {seconds:.0f} s"


def header(records: dict, specs: list[Spec], plan: str) -> str:
    cpus = sorted({r["cpu"] for r in records.values()})
    hours = sum(r["wall_seconds"] for r in records.values()) / 3600
    what = ("10 epochs, batch 128" if plan == "short" else
            "100 or 200 epochs as each row says, batch 128, M cycles in the last 10 % (M = 3 unless the row says)")
    return (f"# Fashion-MNIST {'study' if plan == 'short' else 'long-schedule study'}: {len(records)} of {len(specs)} "
            f"runs recorded, {hours:.2f} process-hours of one thread each, {hours / 2:.2f} hours of two cores "
            f"({', '.join(cpus) or '-'}); preset fashion-mnist ({what}, validation 5,000 of the 60,000 training "
            "images); test accuracy of the output network (the ultimate ticket with the booster); speed: training "
            "images/s of the run (two runs side by side; median over seeds), speedup over the same network's "
            "dense runs")


def write_into(page: str, plan: str, text: str) -> None:
    """Replaces what stands between the page's report markers of ``plan`` with ``text`` (the
    header line as a text block, the tables as they are)."""
    start, end = f"<!-- bench_study.py --plan {plan} --report -->", "<!-- end of report -->"
    with open(page) as f:
        content = f.read()
    if start not in content or end not in content[content.index(start):]:
        sys.exit(f"bench_study: {page} has no '{start}' ... '{end}' region")
    head, rest = content.split(start, 1)
    tail = rest.split(end, 1)[1]
    first, _, tables = text.partition("\n")
    body = f"{start}\n\n```text\n{first.lstrip('# ')}\n```\n{tables}\n\n{end}"
    with open(page, "w") as f:
        f.write(head + body + tail)
    print(f"{page}: the {plan} report written")


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
    parser.add_argument("--plot", metavar="PNG", help="draw the cycle-length curve of both plans' records and stop")
    parser.add_argument("--write-into", metavar="PAGE", help="with --report: write the report between the page's "
                        "'<!-- bench_study.py --plan PLAN --report -->' and '<!-- end of report -->' lines")
    parser.add_argument("--results", default=None, help="folder of the records (default: results/<dataset>[-long])")
    parser.add_argument("--max-runs", type=int, default=None, help="run at most this many of the missing runs")
    args = parser.parse_args()
    if args.workers < 1 or (args.max_runs is not None and args.max_runs < 0):
        parser.error("--workers must be >= 1 and --max-runs >= 0")
    results = args.results or results_folder(args.dataset, args.plan)
    specs = PLANS[args.plan](tuple(args.networks))
    try:
        records = load_records(results, specs)
        if args.plot or (args.report and args.plan == "long"):
            both = {**load_records(results_folder(args.dataset, "short"), PLANS["short"]()),
                    **load_records(results_folder(args.dataset, "long"), PLANS["long"]())}
    except RecordError as exc:
        sys.exit(f"bench_study: {exc}")
    if args.plot:
        from study.plot import plot_curve
        points = curve(both)
        plot_curve(points, args.plot, "Fashion-MNIST, mlp3x1000, RigL 90 %: Sup-tickets − RigL alone (paired by seed)")
        print(f"{args.plot}: {len(points)} points")
        return
    if args.report:
        text = header(records, specs, args.plan) + "\n" + report(records, specs)
        if args.plan == "long":
            points = curve(both)
            shortest = helpful_from(points)
            text += ("\n\n### The cycle-length curve (mlp3x1000, RigL 90 %, both studies)\n\n" + curve_table(points)
                     + "\n\nwhere the booster did not lose (the shortest run, then the shortest cycle in runs that "
                     "long, whose interval does not lie below zero and which no run at least as long with cycles at "
                     "least as long contradicts): " + (f"runs of {shortest[0]} steps, cycles of {shortest[1]} steps"
                                                       if shortest is not None else "nowhere measured"))
            choice = choose_on_validation(records)
            if choice is not None:
                text += ("\n\n### The long schedule chosen on the validation split (mlp3x1000, RigL 90 %, 8x8)\n\n"
                         + choice_table(choice) + f"\n\nchosen: {choice.label}")
        if args.write_into:
            write_into(args.write_into, args.plan, text)
        else:
            print(text)
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


if __name__ == "__main__":
    main()
