"""One JSON record per finished run: writing it atomically, and reading it back checked.

A record is trusted only as far as it is consistent: :func:`load_records` checks every file
against the schema below (keys, types, finite numbers in range, the spec its key encodes, the
configuration the run actually used, the summary's fields) and refuses, in one line naming the
file, a record that is truncated, foreign, not finite, inconsistent or a second record for a
key already read.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import asdict

from .plan import METHODS, NETWORKS, VARIANTS, Spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNDISTURBED = 0.95  # an epoch whose process had at least this share of a core ran undisturbed


class RecordError(ValueError):
    """A record that is not a finished run of the plan (the message names the file)."""


# ---- writing ---------------------------------------------------------------------------------

def git_revision(root: str = ROOT) -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU a run measured its speed on: the model name and, where ``/proc/cpuinfo`` gives them,
    its family and model numbers and widest vector ISA, e.g. ``AMD EPYC (family 25 model 1, AVX2)``:
    machines can share a model name while their cores differ in speed."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" not in fields or "model" not in fields:
        return name
    flags = set(fields.get("flags", "").split())
    isa = next((label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags), "no AVX2")
    return f"{name} (family {fields['cpu family']} model {fields['model']}, {isa})"


def write_json_atomic(value: dict, path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=1, sort_keys=True, allow_nan=False)
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
    import torch
    with open(os.path.join(work, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(work, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(work, "metrics.jsonl")) as f:
        epochs = [json.loads(line) for line in f if line.strip()]
    images = sum(e["images_per_s"] * e["epoch_time_s"] for e in epochs)
    train_seconds = sum(e["epoch_time_s"] for e in epochs)
    keep = ("test_accuracy", "ece", "nll", "sparsity", "flops_train", "flops_test", "final_network", "validation",
            "val_size", "ticket_trace", "tickets", "explorations", "steps", "epochs", "network")
    return {"key": spec.key, "spec": {k: v for k, v in asdict(spec).items() if k != "extra"},
            "extra_flags": list(spec.extra), "config": config, "summary": {k: summary.get(k) for k in keep},
            "epochs": [{k: e.get(k) for k in ("epoch", "train_loss", "val_accuracy", "test_accuracy",
                                               "images_per_s", "epoch_time_s", "cpu_time_s")} for e in epochs],
            "images_per_s": images / train_seconds, "train_seconds": train_seconds, "wall_seconds": seconds,
            "git": revision, "cpu": cpu_name(), "torch": torch.__version__, "python": platform.python_version(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# ---- reading, checked -------------------------------------------------------------------------

def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _number(value, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be in [{low}, {high}], got {value}")
    return float(value)


def _field(mapping, key: str, kind, what: str):
    if not isinstance(mapping, dict) or key not in mapping:
        raise ValueError(f"{what} has no {key!r}")
    value = mapping[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"{what}.{key} must be {name}, got {type(value).__name__}")
    return value


def _evaluation(value, what: str) -> None:
    _field(value, "accuracy", (int, float), what)
    _number(value["accuracy"], f"{what}.accuracy", 0.0, 1.0)


def spec_of(record: dict) -> Spec:
    """The :class:`Spec` a record's ``spec`` describes (types checked)."""
    s = _field(record, "spec", dict, "record")
    network = _field(s, "network", str, "spec")
    method = _field(s, "method", str, "spec")
    if network not in NETWORKS or method not in METHODS:
        raise ValueError(f"spec names network {network!r} and method {method!r}: not a run of this study")
    variant = s.get("variant", "")
    if variant not in VARIANTS:
        raise ValueError(f"spec.variant {variant!r} is not one of {', '.join(map(repr, VARIANTS))}")
    cycles = s.get("cycles")
    if cycles is not None and (isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1):
        raise ValueError(f"spec.cycles must be a positive integer or null, got {cycles!r}")
    epochs = s.get("epochs", 10)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"spec.epochs must be a positive integer, got {epochs!r}")
    return Spec(network, method, _number(_field(s, "sparsity", (int, float), "spec"), "spec.sparsity", 0.0, 1.0),
                _field(s, "block", int, "spec"), _field(s, "boost", bool, "spec"), _field(s, "seed", int, "spec"),
                variant, list(VARIANTS[variant]), epochs, cycles)


def check_record(record, name: str) -> Spec:
    """The record's spec, once the record is found consistent; ``ValueError`` saying what is not."""
    if not isinstance(record, dict):
        raise ValueError(f"a record is a JSON object, got {type(record).__name__}")
    spec = spec_of(record)
    key = _field(record, "key", str, "record")
    if key != spec.key:
        raise ValueError(f"its key {key!r} is not the key of its spec ({spec.key!r})")
    if name != key + ".json":
        raise ValueError(f"it holds run {key!r}, which belongs in {key}.json")
    config = _field(record, "config", dict, "record")
    want = {"model": spec.network, "method": spec.method, "seed": spec.seed, "epochs": spec.epochs}
    if spec.method != "dense":
        want.update(sparsity=spec.sparsity, block_size=[spec.block, spec.block], sup_tickets=spec.boost)
        if spec.boost:
            want.update(cycles=spec.cycle_count, ticket_trace=True)
    for option, value in want.items():
        if config.get(option) != value:
            raise ValueError(f"its run used {option} = {config.get(option)!r}, its spec says {value!r}")
    summary = _field(record, "summary", dict, "record")
    _number(_field(summary, "test_accuracy", (int, float), "summary"), "summary.test_accuracy", 0.0, 1.0)
    _number(_field(summary, "ece", (int, float), "summary"), "summary.ece", 0.0, 1.0)
    _number(_field(summary, "nll", (int, float), "summary"), "summary.nll", 0.0)
    _number(_field(summary, "flops_train", (int, float), "summary"), "summary.flops_train", 0.0)
    _evaluation(_field(summary, "validation", dict, "summary"), "summary.validation")
    trace = summary.get("ticket_trace")
    if spec.boost:
        if not isinstance(trace, dict):
            raise ValueError("a booster run's summary has no ticket_trace")
        events = _field(trace, "events", list, "summary.ticket_trace")
        want_events = 2 * spec.cycle_count + 1 if config.get("base_ticket", True) else 2 * spec.cycle_count
        if len(events) != want_events:
            raise ValueError(f"its ticket trace has {len(events)} events, {spec.cycle_count} cycles make "
                             f"{want_events}")
        for i, event in enumerate(events):
            for split in ("val", "test"):
                _evaluation(_field(event, split, dict, f"ticket_trace.events[{i}]"),
                            f"ticket_trace.events[{i}].{split}")
        for k in ("ultimate", "ensemble"):
            for split in ("val", "test"):
                _evaluation(_field(_field(trace, k, dict, "ticket_trace"), split, dict, f"ticket_trace.{k}"),
                            f"ticket_trace.{k}.{split}")
    elif trace is not None:
        raise ValueError("a run without the booster has a ticket_trace")
    epochs = _field(record, "epochs", list, "record")
    if len(epochs) != spec.epochs:
        raise ValueError(f"it has {len(epochs)} epochs of metrics, its run trains {spec.epochs}")
    for i, e in enumerate(epochs):
        _number(_field(e, "images_per_s", (int, float), f"epochs[{i}]"), f"epochs[{i}].images_per_s", 1e-9)
        _number(_field(e, "epoch_time_s", (int, float), f"epochs[{i}]"), f"epochs[{i}].epoch_time_s", 1e-9)
        if e.get("cpu_time_s") is not None:
            _number(e["cpu_time_s"], f"epochs[{i}].cpu_time_s", 0.0)
    _number(_field(record, "images_per_s", (int, float), "record"), "images_per_s", 1e-9)
    _number(_field(record, "wall_seconds", (int, float), "record"), "wall_seconds", 0.0)
    for k in ("git", "cpu", "finished"):
        _field(record, k, str, "record")
    return spec


def load_records(results: str, specs: list[Spec] | None = None) -> dict:
    """Every record under ``results`` by key, each checked (:func:`check_record`) and, with
    ``specs``, a run of that plan; :class:`RecordError` names the first file that is not."""
    records: dict[str, dict] = {}
    planned = {s.key for s in specs} if specs is not None else None
    if not os.path.isdir(results):
        return records
    for name in sorted(os.listdir(results)):
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = os.path.join(results, name)
        try:
            with open(path) as f:
                record = json.load(f, parse_constant=_reject_constant)
            spec = check_record(record, name)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}: not a study record: not valid JSON at line {exc.lineno} column "
                              f"{exc.colno} ({exc.msg}; a truncated or hand-edited file?)") from None
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path}: not a study record: {exc}") from None
        if planned is not None and spec.key not in planned:
            raise RecordError(f"{path}: run {spec.key!r} is not in this plan (a record of another study?)")
        if spec.key in records:
            raise RecordError(f"{path}: a second record for run {spec.key!r}")
        records[spec.key] = record
    return records


def run_speed(record: dict) -> float | None:
    """Training images/s of a run over its undisturbed epochs (those whose process had at least
    ``UNDISTURBED`` of a core); every epoch counts for a record without CPU times; None when
    fewer than half of its epochs ran undisturbed."""
    epochs = record["epochs"]
    if any(e.get("cpu_time_s") is None for e in epochs):
        return record["images_per_s"]
    calm = [e for e in epochs if e["cpu_time_s"] >= UNDISTURBED * e["epoch_time_s"]]
    if 2 * len(calm) < len(epochs):
        return None
    return sum(e["images_per_s"] * e["epoch_time_s"] for e in calm) / sum(e["epoch_time_s"] for e in calm)


def disturbed(record: dict) -> bool:
    return run_speed(record) is None
