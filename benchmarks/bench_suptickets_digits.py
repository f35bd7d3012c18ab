"""Sup-tickets on a real task: scikit-learn's handwritten digits, RigL and SET with and without
the booster, same total steps, several seeds.

    python benchmarks/bench_suptickets_digits.py                 # 95 % and 98 % sparsity, 5 seeds
    python benchmarks/bench_suptickets_digits.py --seeds 2 --epochs 100 --cycle 3   # a quick look

Data: the 1,797 8x8 digits shipped inside scikit-learn, a stratified 75/25 train/test split
(fixed), pixels scaled to [0, 1] and standardised with the training mean and std.
Model (``--model mlp``, default): 64-256-256-10 with BatchNorm + ReLU; ``--model cnn``: three
3x3 convolutions (16, 32, 64 channels, BatchNorm + ReLU, a 2x2 max-pool after the second)
and a linear classifier, about 6x the compute per step. Made sparse by ``st.sparsify`` (ERK
over every layer, unstructured ``(1, 1)`` blocks: the paper's setting).
Training: SGD (momentum 0.9, weight decay 5e-4, batch 32), learning rate 0.1, x0.1 at 50 % and
75 % of the base phase (of the whole run without the booster), the paper's CIFAR recipe in
epochs: 250 epochs, cycles of 8 epochs, so the cyclic phase is 24 epochs and M = 3. RigL: an
update every 100 steps, cosine drop fraction from 0.3, until 75 % of the run; SET: an update
per epoch, drop fraction 0.3. Sup-tickets: ``lr_low`` the base schedule's last learning rate
(0.001), ``lr_high`` 0.005, exploration 0.5, CIA, per-layer re-pruning, BatchNorm averaged,
the base network counted as ticket 0 (DESIGN.md): 4 tickets.

Reported on the test set, mean +- std over seeds: accuracy, expected calibration error (15
bins) and NLL of the final network (base method) or of the ultimate ticket (with Sup-tickets);
also the booster run's own last ticket (the live network at the end) and the ensemble of its
tickets (softmax average, paper Appendix E). Runs go to ``--workers`` processes of one thread.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import suptickets as st
from suptickets.train import evaluate
from suptickets.train.data import load_digits as digits_dataset


def load_digits():
    """The digits split of ``suptickets train`` (stratified 75/25, standardised)."""
    ds = digits_dataset()
    return ds.x_train, ds.y_train, ds.x_test, ds.y_test


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(),
        nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10),
    )


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def run(config: dict) -> dict:
    """One training run; returns the test metrics of the final (or ultimate) network."""
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = config["data"]
    seed, sparsity, method, boosted = config["seed"], config["sparsity"], config["method"], config["boosted"]
    epochs, batch = config["epochs"], config["batch"]
    steps_per_epoch = (len(y_train) + batch - 1) // batch
    total = epochs * steps_per_epoch
    torch.manual_seed(seed)
    model = st.sparsify({"cnn": cnn, "mlp": mlp}[config["model"]](), density=1 - sparsity, distribution="erk",
                        block_size=(1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    boost = None
    if boosted:
        boost = st.SupTickets(0.1, cycle_steps=config["cycle"] * steps_per_epoch, lr_high=0.005,
                              explore_fraction=config["explore"], keep_tickets=True)
        boost.bind(total)
    base_steps = boost.start if boost else total
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [base_steps // 2, base_steps * 3 // 4], 0.1)
    base = (st.RigL(update_every=100, drop_fraction=0.3) if method == "rigl"
            else st.SET(update_every=steps_per_epoch, drop_fraction=0.3))
    sparse = st.SparseTraining(model, optimizer, base, total_steps=total, sup_tickets=boost, seed=seed)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y_train), generator=g)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sparse.step()
            scheduler.step()
    out = {"final": evaluate(model, x_test, y_test)}
    if boosted:
        out["ultimate"] = evaluate(sparse.ultimate_model(), x_test, y_test)
        out["ensemble"] = evaluate(sparse.ticket_ensemble(), x_test, y_test, outputs="probs")
        out["tickets"] = len(boost.collected)
    out["sparsity"] = 1 - st.sparsity_table(model).density
    return out


def summary(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=250)
    parser.add_argument("--cycle", type=int, default=8, help="epochs per cycle")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--explore", type=float, default=0.5, help="explore_fraction of the booster")
    parser.add_argument("--methods", nargs="+", choices=("rigl", "set"), default=["rigl", "set"])
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.95, 0.98])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    data = load_digits()
    configs = [dict(data=data, seed=s, sparsity=sp, method=m, boosted=b, epochs=args.epochs, cycle=args.cycle,
                    batch=args.batch, model=args.model, explore=args.explore)
               for sp in args.sparsity for m in args.methods for b in (False, True) for s in range(args.seeds)]
    start = time.perf_counter()
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers) as pool:
        results = pool.map(run, configs)
    elapsed = time.perf_counter() - start

    print(f"# Sup-tickets on scikit-learn digits ({len(data[1])} train / {len(data[3])} test images), "
          f"{args.model}, {args.epochs} epochs of batch {args.batch}, cycles of {args.cycle} epochs, "
          f"exploration {args.explore}, {args.seeds} seeds, ERK, block (1, 1)")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {elapsed:.0f} s with "
          f"{args.workers} worker processes")
    print("| sparsity | method | network | test accuracy (%) | ECE (%) | NLL |")
    print("|---|---|---|---|---|---|")
    for sp in args.sparsity:
        for method in args.methods:
            name = {"rigl": "RigL", "set": "SET"}[method]
            rows = [(name, "final", [r["final"] for c, r in zip(configs, results)
                                      if (c["sparsity"], c["method"], c["boosted"]) == (sp, method, False)])]
            boosted = [r for c, r in zip(configs, results) if (c["sparsity"], c["method"], c["boosted"]) == (sp, method,
                                                                                                               True)]
            tickets = boosted[0]["tickets"]
            rows.append((f"{name} + Sup-tickets", "ultimate ticket", [r["ultimate"] for r in boosted]))
            rows.append((f"{name} + Sup-tickets", "last ticket (live network)", [r["final"] for r in boosted]))
            rows.append((f"{name} + Sup-tickets", f"ensemble of {tickets} tickets", [r["ensemble"] for r in boosted]))
            real = statistics.fmean(r["sparsity"] for c, r in zip(configs, results) if c["sparsity"] == sp)
            for label, network, metrics in rows:
                print(f"| {real:.3f} | {label} | {network} | {summary([m['accuracy'] for m in metrics], 100)} | "
                      f"{summary([m['ece'] for m in metrics], 100)} | {summary([m['nll'] for m in metrics], 1, 3)} |")


if __name__ == "__main__":
    main()
