"""Finishing a run of ``suptickets train``: the output network (the ultimate ticket with the
booster), its evaluations, the ticket trace, FLOPs, ``summary.json``, ``model.pt``, the plots
and ``report.md``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..sparse import sparsity_table
from . import distributed, flops, strict_json
from .checkpoint import atomic_save, atomic_write_text
from .plots import write_plots
from .report import markdown, result_table

if TYPE_CHECKING:
    from .runner import Run


def evaluations(run: Run, model, outputs: str = "logits") -> dict:
    """Test metrics of ``model``, and validation metrics when the run's data hold a validation split."""
    result = {"test": run.evaluate(model, run.data.test_batches(512), outputs)}
    if getattr(run.data, "val_size", 0):
        result["val"] = run.evaluate(model, run.data.val_batches(512), outputs)
    return result


def finish(run: Run, train_time: float) -> dict:
    """Evaluates the output network and writes the run folder's final files (rank 0); the
    summary (empty on the other ranks)."""
    c, ctx, data, device = run.config, run.ctx, run.data, run.device
    model, sparse, boost = run.model, run.sparse, run.boost
    if ctx.distributed and sparse is not None and not distributed.layouts_agree(model):
        raise RuntimeError("the sparse layouts differ across processes after training")
    if not ctx.main:
        return {}
    final = run.evaluate(model, data.test_batches(512))
    output, network, final_network = model, "final network", None
    if boost is not None:
        loader = None
        if c.bn == "recompute":
            loader = [run.precision.inputs(x.to(device))
                      for x, _ in data.train_batches(c.epochs + 1, c.batch_size, c.seed)]
        output = sparse.ultimate_model(loader=loader)
        network = f"ultimate ticket ({len(boost.collected)} tickets superposed, {c.superpose})"
        final_network = final
        result = run.evaluate(output, data.test_batches(512))
    else:
        result = final
    trace = None
    if boost is not None and c.ticket_trace:
        trace = {"events": run.trace, "ultimate": evaluations(run, output),
                 "ensemble": evaluations(run, sparse.ticket_ensemble(), outputs="probs"),
                 "final": evaluations(run, model)}
    validation = run.evaluate(output, data.val_batches(512)) if getattr(data, "val_size", 0) else None
    input_size = (c.batch_size, data.in_channels, data.image_size, data.image_size)
    if sparse is not None:
        train_flops = flops.report(model, input_size, method=sparse)
        test_flops = flops.report(output, input_size)
    else:
        train_flops = test_flops = flops.report(output, input_size, total_steps=run.total_steps)
    table = sparsity_table(output)
    summary = {
        "network": network, "test_accuracy": result["accuracy"], "ece": result["ece"], "nll": result["nll"],
        "sparsity": 1.0 - table.density, "flops_train": train_flops.training_ratio,
        "flops_test": test_flops.inference_ratio, "final_network": final_network,
        "layers": [{"name": r.name, "type": r.kind, "shape": list(r.shape), "density": r.density,
                    "status": r.status} for r in table],
        "steps": run.total_steps, "epochs": c.epochs, "train_time_s": train_time, "device": str(device),
        "ranks": ctx.world, "tickets": list(boost.collected) if boost else [],
        "explorations": boost.exploration_steps() if boost else [],
        "validation": validation, "val_size": getattr(data, "val_size", 0), "ticket_trace": trace,
    }
    atomic_save(output.state_dict(), run.path("model.pt"))
    atomic_write_text(strict_json.dumps(summary, indent=2) + "\n", run.path("summary.json"))
    write_plots(run.run_dir, lr_trace=run.lr_trace, steps_per_epoch=run.steps_per_epoch, metrics=run.metrics,
                table=table, tickets=summary["tickets"], explorations=summary["explorations"])
    atomic_write_text(markdown(summary, c.as_dict(), str(table), str(train_flops)), run.path("report.md"))
    print(f"\n{result_table(summary)}\n\nper-layer sparsity of the output network:\n{table}\n\n"
          f"run folder: {run.run_dir} (report.md, summary.json, metrics.jsonl, plots, checkpoints)")
    return summary
