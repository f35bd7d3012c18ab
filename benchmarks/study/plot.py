"""The cycle-length curve as a PNG: booster − base with its 95 % interval against steps per
cycle (log axis), the 10-epoch study's points apart from the 100- and 200-epoch ones."""
from __future__ import annotations

from .report import CurvePoint

_STYLE = {10: ("o", "tab:gray", "10 epochs"), 100: ("s", "tab:blue", "100 epochs"),
          200: ("D", "tab:orange", "200 epochs")}


def plot_curve(points: list[CurvePoint], path: str, title: str, paper_steps: tuple = (1564, 3128)) -> None:
    """Draw ``points`` into ``path``; ``paper_steps`` shades the paper's best cycle lengths (4-8
    CIFAR epochs of batch 128, Table 5)."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.axvspan(*paper_steps, color="tab:green", alpha=0.08, label="paper's best lengths (CIFAR-100, Table 5)")
    seen = set()
    for p in points:
        marker, color, name = _STYLE.get(p.epochs, ("^", "tab:red", f"{p.epochs} epochs"))
        unstructured = p.row[3] == 1
        legend = f"{name}{', 1x1' if unstructured else f', {p.row[3]}x{p.row[3]}'}"
        ax.errorbar(p.cycle_steps, p.mean, yerr=[[p.mean - p.low], [p.high - p.mean]], fmt=marker, color=color,
                    mfc="white" if unstructured else color, capsize=3, ms=6,
                    label=None if legend in seen else legend)
        seen.add(legend)
    ax.set_xscale("log")
    ticks = sorted({p.cycle_steps for p in points})  # the measured lengths, written out
    ax.set_xticks(ticks, [str(t) for t in ticks], rotation=45, fontsize=8)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("steps per cycle (C)")
    ax.set_ylabel("booster − base, test points")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
