"""Running one training run of ``suptickets train``: data and what ``build`` makes from the
:class:`Config`, epoch by epoch with a checkpoint after each, resume, divergence; ``finish``
writes the rest of the run folder:

    config.json     the resolved configuration
    metrics.jsonl   one JSON line per epoch (loss, accuracies, test ECE/NLL, LR, density, speed)
    summary.json    the output network's test accuracy, ECE, NLL, sparsity, FLOPs ratios, ...
    checkpoints/    epoch-NNNN.pt (the newest ``keep_checkpoints``), written atomically
    model.pt        the output network's state dict (the ultimate ticket with Sup-tickets)
    report.md       tables and plots: lr.png, curves.png, density.png

Resuming from the newest checkpoint gives, on CPU, the same final weights as the run
without interruption: batches and augmentation are drawn from ``(seed, epoch)``, the rest
of the state (model, optimizer, scheduler, method, booster, generators) is in the checkpoint.
"""
from __future__ import annotations

import math
import os
import sys
import time

import torch
import torch.nn.functional as F

from .. import methods
from ..ops import cost
from . import build, distributed, strict_json
from .checkpoint import (
    CheckpointError,
    append_text,
    atomic_write_text,
    list_checkpoints,
    load_latest,
    remove_temporaries,
    save_checkpoint,
    unsealed_checkpoints,
)
from .config import Config, ConfigError
from .data import load_dataset
from .finish import evaluations, finish
from .metrics import evaluate_batches
from .precision import Precision

_LR_TRACE_POINTS = 20_000
# options a resume may change (they do not change the result)
_RESUMABLE_FIELDS = ("threads", "workers", "device", "dist_timeout", "out")


class DivergenceError(RuntimeError):
    """Training stopped: the loss (or a sparse layer's weights) is not finite."""


def clock(seconds: float) -> str:
    """``h:mm:ss`` (hours not wrapped at a day)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Run:
    """A configured run; :meth:`train` runs it (from its newest checkpoint with ``resume``)."""

    def __init__(self, config: Config, run_dir: str | None = None, *, resume: bool = False, quiet: bool = False):
        self.config = c = config
        self.quiet = quiet
        if c.threads:
            torch.set_num_threads(c.threads)
        else:  # recorded, so that a resume runs with the same number (results depend on it)
            c.threads = torch.get_num_threads()
        self.device = build.resolve_device(c.device)
        self.ctx = distributed.setup(self.device, c.dist_timeout)
        if self.ctx.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.ctx.local_rank)
            torch.cuda.set_device(self.device)
        self.run_dir = run_dir or c.out or build.default_run_dir(c)
        if os.path.exists(self.run_dir) and not os.path.isdir(self.run_dir):
            raise ConfigError(f"--out {self.run_dir} is a file, not a folder: choose another --out")
        if self.ctx.main:
            build.check_writable(self.run_dir)
        if not resume and (list_checkpoints(self.run_dir) or unsealed_checkpoints(self.run_dir)):
            raise ConfigError(f"--out {self.run_dir} already holds a run: --resume {self.run_dir} to continue it, or "
                              "choose another --out")
        torch.manual_seed(c.seed)
        self.data = load_dataset(c.dataset, c.data_dir, c.workers, c.val_size)
        self.steps_per_epoch = self.data.steps_per_epoch(c.batch_size)
        if self.steps_per_epoch < 1:
            raise ConfigError(f"--batch-size {c.batch_size} is larger than the training set ({self.data.train_size})")
        if c.batch_size < self.ctx.world:
            raise ConfigError(f"--batch-size {c.batch_size} is smaller than the {self.ctx.world} processes")
        self.total_steps = c.epochs * self.steps_per_epoch
        self.precision = Precision(c.precision, self.device)
        parts = build.build_training(c, self.data, self.device, self.ctx, self.total_steps, self.steps_per_epoch,
                                     self.precision, self._say)
        self.model, self.optimizer, self.scheduler = parts.model, parts.optimizer, parts.scheduler
        if self.ctx.distributed:
            distributed.keep_batches(self.model)
        self.milestones, self.boost, self.sparse = parts.milestones, parts.boost, parts.sparse
        self.epoch = 0
        self.lr_trace: list[tuple[int, float]] = []
        self.lr_every = max(1, self.total_steps // _LR_TRACE_POINTS)
        self.metrics: list[dict] = []
        self.trace: list[dict] = []  # --ticket-trace: evaluations of the tickets and explored networks
        self._trace_seconds = self._trace_cpu = 0.0
        self._walls: list[float] = []  # seconds per epoch of this process, for the ETA
        self.optimizer.register_step_pre_hook(self._record_lr)
        self._step = 0
        if resume:
            self._resume()

    def _record_lr(self, optimizer, args, kwargs):
        step = self._step + 1
        if step % self.lr_every == 0 or step == 1:
            self.lr_trace.append((step, float(optimizer.param_groups[0]["lr"])))

    # ---- files -------------------------------------------------------------------------------

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def _write_start(self) -> None:
        try:
            os.makedirs(self.run_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out {self.run_dir}: cannot create the run folder ({exc.strerror})") from None
        atomic_write_text(strict_json.dumps(self.config.as_dict(), indent=2) + "\n", self.path("config.json"))
        atomic_write_text("", self.path("metrics.jsonl"))

    def _state(self) -> dict:
        training = self.sparse.state_dict() if self.sparse is not None else {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        return {"training": training, "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
                "step": self._step, "lr_trace": self.lr_trace, "metrics": self.metrics, "trace": self.trace,
                "rng": torch.get_rng_state(), "config": self.config.as_dict(),
                "cost_model": cost.state()}  # the path of every product: a resume takes the same

    def _resume(self) -> None:
        unsealed = unsealed_checkpoints(self.run_dir)
        if unsealed and not list_checkpoints(self.run_dir):
            name = os.path.basename(unsealed[-1])
            raise CheckpointError(f"{unsealed[-1]} has no SHA-256 seal (a suptickets older than the seals wrote it), "
                                  f"so it cannot be verified: if you trust it, `sha256sum {name} > {name}.sha256` "
                                  "in its folder seals it; or delete it to start the run again")
        if not list_checkpoints(self.run_dir):  # stopped before its first checkpoint: start it again
            self._say(f"{self.run_dir} has no checkpoint yet: the run starts from its beginning")
            return
        state, path = load_latest(self.run_dir, map_location=self.device)
        self._say(f"resuming from {path} (SHA-256 verified)")
        mine, theirs = self.config.as_dict(), state.get("config")
        if not isinstance(theirs, dict):
            raise CheckpointError(f"{path} is not a checkpoint of a suptickets train run (no configuration)")
        defaults = Config().as_dict()  # options an older checkpoint lacks had their defaults
        differ = sorted(k for k in mine if k not in _RESUMABLE_FIELDS and theirs.get(k, defaults[k]) != mine[k])
        if differ:
            raise CheckpointError(f"{path} was written by a run with other options than {self.path('config.json')} "
                                  f"({', '.join(differ[:6])}): it belongs to another run")
        try:
            if self.sparse is not None:
                self.sparse.load_state_dict(state["training"])
            else:
                self.model.load_state_dict(state["training"]["model"])
                self.optimizer.load_state_dict(state["training"]["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.epoch, self._step = int(state["epoch"]), int(state["step"])
            self.lr_trace = [tuple(x) for x in state["lr_trace"]]
            self.metrics = list(state["metrics"])
            self.trace = list(state.get("trace", []))
            torch.set_rng_state(state["rng"].cpu())
            if state.get("cost_model"):
                cost.load_state(state["cost_model"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__  # whole, on one line
            raise CheckpointError(f"{path} does not fit this run ({reason})") from None

    # ---- training ----------------------------------------------------------------------------

    def train(self) -> dict:
        c, ctx = self.config, self.ctx
        if ctx.main:
            removed = remove_temporaries(self.run_dir)
            if removed:
                self._say(f"removed {len(removed)} temporary file(s) of an interrupted write: {', '.join(removed)}")
            if self.epoch == 0:
                self._write_start()
            else:  # metrics.jsonl as of the checkpoint
                atomic_write_text("".join(strict_json.dumps(m) + "\n" for m in self.metrics),
                                  self.path("metrics.jsonl"))
            self._say(f"run folder {self.run_dir}: {c.dataset} ({self.data.train_size} training images), {c.model}, "
                      f"{c.method}{' + Sup-tickets' if self.boost else ''}, sparsity {c.sparsity}, "
                      f"{self.total_steps} steps on {self.device}"
                      f"{f' x {ctx.world} processes' if ctx.distributed else ''}")
            if self.boost is not None:
                self._say(f"Sup-tickets: base phase to step {self.boost.start}, {self.boost.cycles} cycle"
                          f"{'s' if self.boost.cycles != 1 else ''} of {self.boost.cycle} steps, tickets after "
                          f"steps {self.boost.collection_steps()}")
                run_note = methods.short_run_note(self.total_steps)
                note = run_note or methods.short_cycle_note(self.boost.cycle)
                if note is not None:  # said even with --quiet: it is about the result
                    how = ("lengthen the run with more --epochs" if run_note else
                           f"lengthen them with more --epochs (the cycles fill the last --cycle-rate {c.cycle_rate:g} "
                           "of the run), fewer --cycles or more --cycle-epochs")
                    print(f"suptickets train: note: {note}: {how}", file=sys.stderr)
                base_note = methods.base_method_note(c.method, c.explore_fraction)
                if base_note is not None:
                    print(f"suptickets train: note: {base_note}; --method rigl is the measured alternative",
                          file=sys.stderr)
        start = time.perf_counter()
        while self.epoch < c.epochs:
            try:
                self._train_epoch()
            except RuntimeError as exc:  # a collective whose peer stalled or died: one line, naming it
                if ctx.distributed and distributed.is_peer_failure(exc):
                    raise distributed.peer_timeout(ctx, self._step + 1, exc) from None
                raise
        train_time = time.perf_counter() - start
        summary = finish(self, train_time)
        distributed.teardown(ctx)
        return summary

    def _train_epoch(self) -> None:
        c, ctx = self.config, self.ctx
        epoch = self.epoch + 1
        self.model.train()
        bar = None
        if ctx.main and not self.quiet:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.steps_per_epoch * c.batch_size, unit="img", unit_scale=True, leave=False,
                       desc=f"epoch {epoch}/{c.epochs}", file=sys.stderr, dynamic_ncols=True)
        began, cpu_began = time.perf_counter(), time.process_time()
        self._trace_seconds = self._trace_cpu = 0.0  # --ticket-trace evaluations, not counted as training time
        loss_sum, correct, seen = 0.0, 0.0, 0.0
        for x, y in self.data.train_batches(epoch, c.batch_size, c.seed, ctx.rank, ctx.world):
            out, loss = self._train_step(epoch, x, y)
            loss_sum += float(loss.detach())
            correct += float((out.detach().argmax(1) == y.to(out.device)).sum())
            seen += y.numel()
            if bar is not None:
                bar.update(c.batch_size)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2g}",
                                refresh=False)
        if bar is not None:
            bar.close()
        if ctx.distributed:
            loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, correct, seen], self.device)
        elapsed = time.perf_counter() - began - self._trace_seconds
        cpu = time.process_time() - cpu_began - self._trace_cpu  # below elapsed x threads when others share the cores
        self.epoch = epoch
        row = {"epoch": epoch, "step": self._step, "lr": self.lr_trace[-1][1] if self.lr_trace else c.lr,
               "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
               "density": self.sparse.density if self.sparse is not None else 1.0,
               "epoch_time_s": elapsed, "cpu_time_s": cpu, "images_per_s": seen / elapsed}
        if ctx.main:
            if epoch % c.eval_every == 0 or epoch == c.epochs:
                test = self.evaluate(self.model, self.data.test_batches(512))
                row.update(test_accuracy=test["accuracy"], test_nll=test["nll"], test_ece=test["ece"])
                if getattr(self.data, "val_size", 0):
                    val = self.evaluate(self.model, self.data.val_batches(512))
                    row.update(val_accuracy=val["accuracy"], val_nll=val["nll"], val_ece=val["ece"])
            self.metrics.append(row)
            append_text(strict_json.dumps(row) + "\n", self.path("metrics.jsonl"))
            save_checkpoint(self._state(), self.run_dir, epoch, c.keep_checkpoints)
            test_txt = f", test acc {100 * row['test_accuracy']:.2f} %" if "test_accuracy" in row else ""
            self._walls.append(time.perf_counter() - began)  # training, test and checkpoint
            eta = clock(sum(self._walls) / len(self._walls) * (c.epochs - epoch))
            self._say(f"epoch {epoch}/{c.epochs}: loss {row['train_loss']:.4f}, train acc "
                      f"{100 * row['train_accuracy']:.2f} %{test_txt}, lr {row['lr']:.3g}, sparse-layer density "
                      f"{row['density']:.4f}, {row['images_per_s']:.0f} img/s, ETA {eta}")
        if ctx.distributed:
            torch.distributed.barrier()

    def _train_step(self, epoch: int, x, y):
        """One optimizer step on the batch ``(x, y)``; stops (``DivergenceError``) before applying
        a step whose loss, or whose sparse layers' weights or gradients, are not finite."""
        c, ctx = self.config, self.ctx
        x, y = self.precision.inputs(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)
        with self.precision.autocast():
            out = self.model(x)
            loss = F.cross_entropy(out.float(), y, reduction="sum")
        loss_value = float(loss.detach())
        if ctx.distributed:  # every rank sees the global loss and stops at the same step
            loss_value = distributed.all_reduce_sum([loss_value], self.device)[0]
        if not math.isfinite(loss_value):
            raise self._diverged(epoch, f"the training loss is {loss_value}")
        self.optimizer.zero_grad(set_to_none=True)
        (loss / c.batch_size).backward()  # this rank's share of the global batch's mean loss
        if ctx.distributed:
            distributed.all_reduce_gradients(self.model)
        if self.sparse is not None:
            try:
                self.sparse.step()
            except ValueError as exc:  # non-finite weights or scores before a topology update
                raise self._diverged(epoch, str(exc)) from None
        else:
            self.optimizer.step()
        self.scheduler.step()
        self._step += 1
        if self.boost is not None and c.ticket_trace and ctx.main:
            self._trace_step(self._step)
        return out, loss

    def evaluate(self, model, batches, outputs: str = "logits") -> dict:
        """Accuracy, ECE and NLL of ``model`` over ``batches``, in the run's precision."""
        return evaluate_batches(model, batches, self.device, outputs, self.precision)

    def _trace_step(self, t: int) -> None:
        """--ticket-trace: after step ``t``, the ticket just collected (from its saved state) and
        the live network right after an exploration, each on the validation and test sets."""
        boost, began, cpu_began = self.boost, time.perf_counter(), time.process_time()
        if boost.collects(t):
            ticket = self.sparse.ticket_ensemble().members[-1]
            self.trace.append({"step": t, "event": "ticket", "index": len(boost.collected) - 1,
                               **evaluations(self, ticket)})
        if boost.explores(t):
            self.trace.append({"step": t, "event": "explored", **evaluations(self, self.model)})
        self._trace_seconds += time.perf_counter() - began
        self._trace_cpu += time.process_time() - cpu_began

    def _diverged(self, epoch: int, what: str) -> DivergenceError:
        found = list_checkpoints(self.run_dir)
        last = f"the last good checkpoint is {found[-1][1]}" if found else "no checkpoint was written yet"
        return DivergenceError(f"training diverged at epoch {epoch}, step {self._step + 1}: {what}; {last} "
                               "(a resume would diverge the same way: lower --lr and start a new run)")

    def _say(self, text: str) -> None:
        if not self.quiet and self.ctx.main:
            from tqdm.auto import tqdm
            tqdm.write(text, file=sys.stderr)
