"""Whole training runs through ``suptickets train`` beside the training step alone, dense against
sparse, on this CPU: what a user pays per image, and how much of it the step explains.

    python benchmarks/bench_run.py      # cnn2 and mlp3x1000, RigL 90 % and 95 % (1, 1), 3 epochs, 1 thread
    python benchmarks/bench_run.py --models cnn2 --sparsities 0.95 --epochs 2

A run is ``suptickets train --preset fashion-mnist --model M --epochs E --threads T`` (``--method dense``, or
``--sparsity S --block-size B --no-sup-tickets``: RigL), in a fresh process with everything the runner does
per step: the data pipeline, metrics and bookkeeping, the topology updates at the preset's delta T. Its
speed is the training images/s of the epochs after the first (the first holds the process's start-up),
median over those epochs. Each model's dense run goes first and again last, and the dense speed is the
mean of the two, so a machine whose speed drifts during the benchmark shows it. The step is
``bench_train_step.py``'s on a Fashion-MNIST batch (forward, backward, SGD, RigL's update amortised),
dense and sparse in alternation, in this process. Needs the Fashion-MNIST dataset installed (the runs
train on it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train_step import BATCH, example_batch, timed_steps  # noqa: E402

import suptickets as st  # noqa: E402

from _measure import markdown_table  # noqa: E402


def run_images_per_s(model: str, sparsity: float | None, block: int, epochs: int, threads: int) -> float:
    """Median training images/s over epochs 2.. of one ``suptickets train`` run (dense: ``sparsity`` None)."""
    with tempfile.TemporaryDirectory(prefix="suptickets-bench-run-") as out:
        method = ["--method", "dense"] if sparsity is None else \
            ["--sparsity", str(sparsity), "--block-size", str(block), "--no-sup-tickets"]
        cmd = [sys.executable, "-m", "suptickets", "train", "--preset", "fashion-mnist", "--model", model,
               "--epochs", str(epochs), "--threads", str(threads), "--quiet", "--out", out, *method]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"bench_run: `{' '.join(cmd[1:])}` failed: {done.stderr.strip().splitlines()[-1:]}")
        with open(os.path.join(out, "metrics.jsonl")) as f:
            epochs_seen = [json.loads(line) for line in f if line.strip()]
    speeds = [e["images_per_s"] for e in epochs_seen if e.get("epoch", 0) >= 2 and "images_per_s" in e]
    return statistics.median(speeds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn2,mlp3x1000", help="comma-separated: cnn2,mlp3x1000")
    parser.add_argument("--sparsities", default="0.9,0.95", help="comma-separated, e.g. 0.9,0.95")
    parser.add_argument("--blocks", default="1", help="block sides (1: unstructured)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each run, at least 2 (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="threads of the runs and the step (default 1)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per step measurement (median)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs: at least 2 (the first epoch's speed is not counted)")
    models = args.models.split(",")
    for model in models:
        if model not in ("cnn2", "mlp3x1000"):
            parser.error(f"--models: {model!r} is not one of cnn2, mlp3x1000 (the Fashion-MNIST networks)")
        if example_batch(model)[2] != "Fashion-MNIST images":
            raise SystemExit("bench_run: the Fashion-MNIST dataset is not installed (the runs train on it)")
    sparsities = [float(s) for s in args.sparsities.split(",")]
    blocks = [int(b) for b in args.blocks.split(",")]
    torch.set_num_threads(args.threads)
    print(f"# suptickets {st.__version__}, torch {torch.__version__}, {args.threads} threads, CPU kernels: "
          f"{st.ops.simd_level()}; runs: suptickets train --preset fashion-mnist, {args.epochs} epochs, RigL, "
          f"images/s of epochs 2-{args.epochs} (median); step: batch {BATCH}, Fashion-MNIST images")
    header = ("model", "sparsity", "block", "dense run img/s", "sparse run img/s", "run speedup",
              "dense step img/s", "sparse step img/s", "step speedup")
    rows = []
    for model in models:
        first = run_images_per_s(model, None, 1, args.epochs, args.threads)
        sparse_runs = {(s, b): run_images_per_s(model, s, b, args.epochs, args.threads)
                       for s in sparsities for b in blocks}
        dense_run = (first + run_images_per_s(model, None, 1, args.epochs, args.threads)) / 2
        for (sparsity, block), sparse_run in sparse_runs.items():
            (dense_ms, sparse_ms), _ = timed_steps(model, 1 - sparsity, block, args.repeats)
            rows.append((model, f"{sparsity:.2f}", f"{block}x{block}", f"{dense_run:.0f}", f"{sparse_run:.0f}",
                         f"{sparse_run / dense_run:.2f}x", f"{BATCH / dense_ms * 1e3:.0f}",
                         f"{BATCH / sparse_ms * 1e3:.0f}", f"{dense_ms / sparse_ms:.2f}x"))
            print(f"  {model} {sparsity} {block}x{block}: run {sparse_run / dense_run:.2f}x, "
                  f"step {dense_ms / sparse_ms:.2f}x", file=sys.stderr, flush=True)
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
