"""PNG plots of a run folder (matplotlib, no display needed):

- ``lr.png``: the learning rate of every optimizer step, tickets (circles) and explorations
  (triangles) of the Sup-tickets phase marked;
- ``curves.png``: training and test loss and accuracy per epoch;
- ``density.png``: the density of every Linear/Conv2d layer of the output network.
"""
from __future__ import annotations

import os


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_lr(path: str, lr_trace: list, steps_per_epoch: int, tickets=(), explorations=()) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    steps = [s for s, _ in lr_trace]
    lrs = [v for _, v in lr_trace]
    ax.plot([s / steps_per_epoch for s in steps], lrs, lw=1.2, color="tab:blue", label="learning rate")
    lookup = dict(lr_trace)
    for marks, style, label in ((tickets, "o", "ticket"), (explorations, "^", "exploration")):
        marks = [t for t in marks if t in lookup]
        if marks:
            ax.plot([t / steps_per_epoch for t in marks], [lookup[t] for t in marks], style, ms=6,
                    color="tab:green" if style == "o" else "tab:red", label=label, ls="none")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(path: str, metrics: list[dict]) -> None:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = [m["epoch"] for m in metrics]
    left.plot(epochs, [m["train_loss"] for m in metrics], label="train")
    tested = [m for m in metrics if m.get("test_nll") is not None]
    left.plot([m["epoch"] for m in tested], [m["test_nll"] for m in tested], label="test")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    right.plot(epochs, [100 * m["train_accuracy"] for m in metrics], label="train")
    right.plot([m["epoch"] for m in tested], [100 * m["test_accuracy"] for m in tested], label="test")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy (%)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_density(path: str, table) -> None:
    plt = _pyplot()
    names = [r.name or "<model>" for r in table]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(names) + 1.2))
    ax.barh(range(len(names)), [r.density for r in table],
            color=["tab:blue" if r.status == "sparse" else "tab:gray" for r in table])
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"density (overall {table.density:.3f}; grey: kept dense)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(run_dir: str, *, lr_trace, steps_per_epoch, metrics, table, tickets=(), explorations=()) -> list[str]:
    paths = [os.path.join(run_dir, n) for n in ("lr.png", "curves.png", "density.png")]
    plot_lr(paths[0], lr_trace, steps_per_epoch, tickets, explorations)
    plot_curves(paths[1], metrics)
    plot_density(paths[2], table)
    return paths
