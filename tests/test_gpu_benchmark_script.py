"""The GPU benchmark script (benchmarks/gpu/) runs end to end on the CPU: ``--smoke`` takes the
Triton kernels through the interpreter at tiny shapes, so the check, both tables and the
training step of a network built by ``suptickets train`` are exercised before a GPU sees them."""
import os
import subprocess
import sys

import pytest

from triton_helpers import needs_triton

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@needs_triton
def test_smoke_run_prints_every_table(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1", TRITON_DEFAULT_FP_FUSION="1")
    env.pop("SUPTICKETS_BACKEND", None)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu", "bench_gpu.py"), "--smoke"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "# checks passed" in out and "FAILED" not in out, out
    header = [line for line in out.splitlines() if line.startswith("| layer |")]
    assert len(header) == 1 and "fwd eta" in header[0] and "sparse f+b peak MiB" in header[0], out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| linear ") or
            line.startswith("| conv3x3 ")]
    assert len(rows) == 2 * 3 * 2, out  # linear and conv x 3 densities x fp16, fp32
    assert all(len(r) == len(header[0].split("|")[1:-1]) for r in rows)
    assert all(float(r[5]) > 0 and float(r[9]) > 0 for r in rows), out  # sparse times were measured
    model_rows = [line for line in out.splitlines() if line.startswith("| cnn 8x8, ")]
    assert len(model_rows) == 2 and all(float(r.split("|")[5]) > 0 for r in model_rows), out
    assert "| cnn 8x8, autocast float16 |" in out  # the autocast step (float32 weights)


def test_run_all_is_valid_bash():
    script = os.path.join(ROOT, "benchmarks", "gpu", "run_all.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0


def test_gpu_time_waits_until_the_calls_are_queued_behind_the_sleep(monkeypatch):
    """``gpu_ms`` lengthens the sleep until every call is queued before the start event runs, and
    reports the events' time per call; the CUDA calls are stand-ins (no GPU here)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("bench_gpu", os.path.join(ROOT, "benchmarks", "gpu", "bench_gpu.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sleeps, started_early = [], iter([True, True, False, False, False])

    class Event:
        def __init__(self, enable_timing):
            pass

        def record(self):
            pass

        def query(self):  # the start event has run: the sleep ended before the calls were queued
            return next(started_early)

        def elapsed_time(self, end):
            return 50.0

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: sleeps.append(cycles))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: type("P", (), {"clock_rate": 1_980_000})())
    calls = []
    assert bench.gpu_ms(lambda: calls.append(1), repeats=3, calls=10, warmup=2) == 5.0
    assert len(sleeps) == 5 and abs(sleeps[1] - 2 * sleeps[0]) <= 1 and abs(sleeps[2] - 2 * sleeps[1]) <= 1
    assert sleeps[2] == sleeps[3] == sleeps[4]  # long enough from then on
    assert len(calls) == 2 + 10 + 5 * 10  # warm-up, the host-time estimate, five timed rounds
    # a function that waits for the GPU never lets the calls queue: timed eagerly once the sleep passes 0.25 s
    started_early = iter([True] * 100)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: type("P", (), {})())  # no clock_rate
    sleeps.clear()
    assert bench.gpu_ms(lambda: None, repeats=3, calls=10, warmup=0) == 50.0
    assert 8 <= len(sleeps) <= 10 and sleeps[-1] > 0.25 * 2e9


def test_run_all_finds_both_packages_without_an_install():
    """The GPU image has torch and triton but not this package: run_all.sh's PYTHONPATH alone must
    find suptickets (python/) and suptickets_kernels (the top level)."""
    script = open(os.path.join(ROOT, "benchmarks", "gpu", "run_all.sh")).read()
    line = next(line for line in script.splitlines() if line.startswith("export PYTHONPATH="))
    path = subprocess.run(["bash", "-c", f"cd {ROOT} && PYTHONPATH= && {line.split('  #')[0]} && echo $PYTHONPATH"],
                          capture_output=True, text=True, check=True).stdout.strip()
    probe = ("import importlib.util, sys; sys.path[:0] = sys.argv[1].split(':'); "
             "print([importlib.util.find_spec(m).origin for m in ('suptickets', 'suptickets_kernels')])")
    out = subprocess.run([sys.executable, "-S", "-c", probe, path], capture_output=True, text=True, check=True,
                         cwd="/").stdout  # not the checkout: only the path may find them
    assert os.path.join(ROOT, "python", "suptickets") in out and os.path.join(ROOT, "suptickets_kernels") in out, out
