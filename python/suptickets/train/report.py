"""The final console table and ``report.md`` of a run."""
from __future__ import annotations


def result_table(summary: dict) -> str:
    """The headline numbers, one per line."""
    lines = [
        f"network        {summary['network']}",
        f"test accuracy  {100 * summary['test_accuracy']:.2f} %",
        f"ECE            {100 * summary['ece']:.2f} %",
        f"NLL            {summary['nll']:.4f}",
        f"sparsity       {summary['sparsity']:.4f} (of the Linear/Conv2d weights)",
        f"FLOPs train    {summary['flops_train']:.4f} x dense",
        f"FLOPs test     {summary['flops_test']:.4f} x dense",
    ]
    if summary.get("train_time_s") is not None:
        lines.append(f"training time  {summary['train_time_s']:.0f} s for {summary['steps']} steps")
    if summary.get("final_network"):
        f = summary["final_network"]
        lines.append(f"last network   {100 * f['accuracy']:.2f} % accuracy, ECE {100 * f['ece']:.2f} %, "
                     f"NLL {f['nll']:.4f} (the live network at the end, before superposition)")
    return "\n".join(lines)


def markdown(summary: dict, config: dict, layer_table: str, flops_table: str) -> str:
    rows = [("test accuracy", f"{100 * summary['test_accuracy']:.2f} %"),
            ("ECE (15 bins)", f"{100 * summary['ece']:.2f} %"),
            ("NLL", f"{summary['nll']:.4f}"), ("sparsity", f"{summary['sparsity']:.4f}"),
            ("training FLOPs", f"{summary['flops_train']:.4f} x dense"),
            ("inference FLOPs", f"{summary['flops_test']:.4f} x dense")]
    if summary.get("final_network"):
        f = summary["final_network"]
        rows.append(("last network (no superposition)",
                     f"{100 * f['accuracy']:.2f} %, ECE {100 * f['ece']:.2f} %, NLL {f['nll']:.4f}"))
    setting = (f"{config['dataset']}, {config['model']}, {config['method']} at sparsity {config['sparsity']}"
               f"{' + Sup-tickets' if config['sup_tickets'] else ''}, {config['distribution']} distribution, "
               f"block {config['block_size'][0]}x{config['block_size'][1]}, {config['epochs']} epochs of batch "
               f"{config['batch_size']}, seed {config['seed']}")
    ranks = summary.get("ranks", 1)
    processes = f" x {ranks} processes" if ranks > 1 else ""
    out = [f"# suptickets run: {setting}", "",
           f"Output network: **{summary['network']}**. {summary['steps']} optimizer steps in "
           f"{summary['train_time_s']:.0f} s on {summary['device']}{processes}.",
           "", "| metric | value |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows], ""]
    if summary.get("tickets"):
        out += [f"Tickets collected after steps {summary['tickets']}; explorations after steps "
                f"{summary.get('explorations', [])}.", ""]
    out += ["## Learning rate", "", "![learning rate](lr.png)", "", "## Training and test curves", "",
            "![curves](curves.png)", "", "## Per-layer density (output network)", "", "![density](density.png)", "",
            "```", layer_table, "```", "", "## FLOPs (normalised to the same model dense)", "", "```", flops_table,
            "```", "", "Configuration: `config.json`; per-epoch metrics: `metrics.jsonl`.", ""]
    return "\n".join(out)
