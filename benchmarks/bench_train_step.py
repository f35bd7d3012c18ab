"""One training step of VGG-16 and ResNet-18 at CIFAR shapes, and of the Fashion-MNIST study's
``cnn2`` and ``mlp3x1000`` at its shapes, dense against sparse, on this CPU.

    python benchmarks/bench_train_step.py            # both models, ERK 90 % and 95 %, blocks 1 4 8 16 32
    python benchmarks/bench_train_step.py --quick    # VGG-16, ERK 90 %, blocks 1 and 32 (< 3 minutes)
    python benchmarks/bench_train_step.py --precision bf16-mixed   # both steps under bf16 autocast
    python benchmarks/bench_train_step.py --models cnn2,mlp3x1000 --threads 1   # as the study runs them

A step is forward, backward and SGD with momentum on a batch of 128 32x32 images, plus RigL's
topology update amortised at delta T = 100: (99 plain steps + 1 update step) / 100, the update
step timed on its own. The dense and each sparse step are timed in alternation (medians), so a
machine whose speed drifts slows both alike. Columns:

- img/s, and speedup = dense step time / sparse step time;
- FLOPs ratio: training FLOPs of the sparse step over the dense one (``st.flops``), and
  eta_step = speedup x FLOPs ratio (1.0: the sparse step runs its FLOPs as fast as dense does);
- peak MB: the resident memory a step adds to a fresh process (``_measure.peak_mb``, median of 3
  processes; one with --quick);
- outside: the share of the sparse step spent outside the suptickets operators (BatchNorm, ReLU,
  pooling, the loss, the optimizer, and the layers on the dense path), from a profile of one plain step;
- dense path: how many sparse layers the cost model sends to the dense path (``st.plan``);
- with ``--precision bf16-mixed``: the dense step in float32 too, timed in the same rounds, and the
  sparse step's speedup over it (torch's dense bf16 layers are slow on CPUs without AVX512-BF16).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suptickets as st  # noqa: E402
from suptickets.train.models import build_model  # noqa: E402

from _measure import interleaved_median_ms, markdown_table, median_ms, peak_mb  # noqa: E402

BATCH = 128
UPDATE_EVERY = 100
# (input channels, image size) of each model: CIFAR for the CIFAR networks, Fashion-MNIST for the study's
SHAPES = {"vgg16": (3, 32), "resnet18": (3, 32), "cnn2": (1, 28), "mlp3x1000": (1, 28)}
_REAL: dict = {}


def example_batch(model_name: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(x, y, what)``: the first training batch of Fashion-MNIST (normalised, as the runner feeds
    it) for the Fashion-MNIST networks when the dataset is installed, else standard-normal inputs.
    Real images matter: torch's NCHW max-pool is several times slower on random values than on
    the activations real images give (its comparisons branch)."""
    channels, size = SHAPES[model_name]
    if (channels, size) == (1, 28):
        if "fashion-mnist" not in _REAL:
            from suptickets.train.data import DataError, load_dataset
            try:
                _REAL["fashion-mnist"] = next(load_dataset("fashion-mnist", None).train_batches(0, BATCH, 0))
            except DataError:
                _REAL["fashion-mnist"] = None
        if _REAL["fashion-mnist"] is not None:
            return (*_REAL["fashion-mnist"], "Fashion-MNIST images")
    return torch.randn(BATCH, channels, size, size), torch.randint(0, 10, (BATCH,)), "random inputs"


def make_run(model_name: str, density: float | None, block: int, seed: int = 0, update_every: int = UPDATE_EVERY,
             precision: str = "fp32"):
    """(model, optimizer, SparseTraining or None, step function); with update_every=1 every step
    is a RigL update step; "bf16-mixed" runs forward and loss under bf16 autocast."""
    torch.manual_seed(seed)
    channels, size = SHAPES[model_name]
    model = build_model(model_name, in_channels=channels, image_size=size, num_classes=10)
    if density is not None:
        model = st.sparsify(model, density=density, block_size=(block, block))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    training = None
    if density is not None:
        training = st.SparseTraining(model, optimizer, st.RigL(update_every=update_every), total_steps=10_000)
    x, y, _ = example_batch(model_name)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step() if training is None else training.step()

    step.example = x
    return model, optimizer, training, step


def timed_steps(model_name: str, density: float, block: int, repeats: int, precision: str = "fp32",
                dense_step=None, extra=()) -> tuple[list[float], tuple]:
    """``([dense ms, sparse ms, *extra ms], sparse run)``: the dense step, the sparse step with RigL's
    topology update amortised ((UPDATE_EVERY - 1) plain steps + one update step, timed on its own),
    and the steps in ``extra``, timed in alternation (medians); the sparse run is ``make_run``'s."""
    dense_step = dense_step or make_run(model_name, None, 1, precision=precision)[3]
    run = make_run(model_name, density, block, precision=precision)
    *_, update_step = make_run(model_name, density, block, update_every=1, precision=precision)
    timed = interleaved_median_ms([dense_step, run[3], *extra], repeats)
    update_ms = median_ms(update_step, max(1, repeats // 2))  # RigL's score, selection, re-pack
    timed[1] = ((UPDATE_EVERY - 1) * timed[1] + update_ms) / UPDATE_EVERY
    return timed, run


def outside_share(step) -> float:
    with torch.profiler.profile() as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    # the operators and their autograd nodes (a node's self time is the forward kernel's)
    ours = sum(e.self_cpu_time_total for e in events if "suptickets" in e.key)
    return 1 - ours / total if total else float("nan")


def peak_in_fresh_process(model_name, density, block, runs: int = 3, precision: str = "fp32") -> float:
    """Median over `runs` fresh processes (a process's resident high-water mark varies by tens of MB)."""
    args = [sys.executable, os.path.abspath(__file__), "--peak-of", model_name, str(density), str(block),
            "--precision", precision]
    peaks = [float(subprocess.run(args, check=True, capture_output=True, text=True).stdout.split()[-1])
             for _ in range(runs)]
    return sorted(peaks)[runs // 2]


def print_peak(model_name, density, block, precision):
    _, _, _, step = make_run(model_name, None if density == "dense" else float(density), int(block),
                             precision=precision)
    step()  # the first step allocates optimizer state and workspaces
    print(f"{peak_mb(step):.0f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="VGG-16 at ERK 90 %% only")
    parser.add_argument("--models", default=None, help="comma-separated: vgg16,resnet18,cnn2,mlp3x1000")
    parser.add_argument("--sparsities", default=None, help="comma-separated, e.g. 0.9,0.95")
    parser.add_argument("--blocks", default=None, help="block sides (1: unstructured); default 1,4,8,16,32, "
                        "with --quick 1,32")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per measurement (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--precision", choices=("fp32", "bf16-mixed"), default="fp32",
                        help="bf16-mixed: dense and sparse steps under torch.autocast(bfloat16)")
    parser.add_argument("--peak-of", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_of:
        return print_peak(*args.peak_of, args.precision)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = (args.models or ("vgg16" if args.quick else "vgg16,resnet18")).split(",")
    sparsities = [float(s) for s in (args.sparsities or ("0.9" if args.quick else "0.9,0.95")).split(",")]
    blocks = [int(b) for b in (args.blocks or ("1,32" if args.quick else "1,4,8,16,32")).split(",")]
    peak_runs = 1 if args.quick else 3
    repeats = args.repeats or (3 if args.quick else 5)
    print(f"# suptickets {st.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU kernels: {st.ops.simd_level()}, {platform.processor() or platform.machine()}, {args.precision}, "
          f"batch {BATCH}, RigL update every {UPDATE_EVERY} steps amortised; inputs: "
          + ", ".join(f"{m} {example_batch(m)[2]}" for m in models))
    mixed = args.precision != "fp32"
    header = ("model", "sparsity", "block", "dense img/s", "sparse img/s", "speedup", "FLOPs ratio", "eta_step",
              "dense peak MB", "sparse peak MB", "outside", "dense path") + (
              ("dense fp32 img/s", "speedup vs dense fp32") if mixed else ())
    rows = []
    for model_name in models:
        _, _, _, dense_step = make_run(model_name, None, 1, precision=args.precision)
        # under autocast, also the dense step in float32: on CPUs without fast bf16 the faster dense choice
        dense_fp32_step = make_run(model_name, None, 1)[3] if mixed else None
        dense_peak = peak_in_fresh_process(model_name, "dense", 1, peak_runs, args.precision)
        for sparsity in sparsities:
            for block in blocks:
                timed, (model, _, training, step) = timed_steps(
                    model_name, 1 - sparsity, block, repeats, args.precision, dense_step,
                    [dense_fp32_step] if mixed else [])
                dense_ms, sparse_ms = timed[:2]
                ratio = st.flops.report(model, tuple(step.example.shape), method=training).training_ratio
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):  # the paths the step takes
                    planned = st.plan(model, step.example)
                speedup = dense_ms / sparse_ms
                rows.append((model_name, f"{sparsity:.2f}", f"{block}x{block}", f"{BATCH / dense_ms * 1e3:.0f}",
                             f"{BATCH / sparse_ms * 1e3:.0f}", f"{speedup:.2f}x", f"{ratio:.3f}",
                             f"{speedup * ratio:.2f}", f"{dense_peak:.0f}",
                             f"{peak_in_fresh_process(model_name, 1 - sparsity, block, peak_runs, args.precision):.0f}",
                             f"{outside_share(step):.0%}", f"{planned.dense_layers} of {len(planned)}")
                            + ((f"{BATCH / timed[2] * 1e3:.0f}", f"{timed[2] / sparse_ms:.2f}x") if mixed else ()))
                print(f"  {model_name} {sparsity} {block}x{block}: {speedup:.2f}x", file=sys.stderr, flush=True)
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
