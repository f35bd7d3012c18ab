"""Mixed precision as PyTorch users train: the products under ``torch.autocast`` (output dtype,
float32 master weights and gradients), scores in float32, bf16 models on the C++ kernels, the
operators' own autocast rules, ``opcheck`` and ``torch.compile`` under autocast, and
``suptickets train --precision``."""
import json
import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import suptickets as st
from suptickets.ops import backend, reference
from suptickets.train import cli

from helpers import TOLERANCES

BF16 = TOLERANCES[torch.bfloat16]


def _layers():
    torch.manual_seed(0)
    return [(st.SparseLinear(48, 40, density=0.3, block_size=(1, 1)), torch.randn(7, 48)),
            (st.SparseLinear(48, 40, density=0.3, block_size=(8, 8)), torch.randn(7, 48)),
            (st.SparseConv2d(16, 24, 3, padding=1, density=0.3, block_size=(1, 1)), torch.randn(3, 16, 6, 5)),
            (st.SparseConv2d(16, 24, 3, padding=1, stride=2, density=0.3, block_size=(8, 8)),
             torch.randn(3, 16, 6, 5))]


@pytest.mark.parametrize("case", range(4), ids=["linear-1x1", "linear-8x8", "conv-1x1", "conv-8x8-stride2"])
def test_autocast_runs_the_product_in_bf16_with_float32_master_weights(case):
    layer, x = _layers()[case]
    x = x.requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error", backend.FallbackWarning)  # the C++ kernels, not the reference
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
    assert y.dtype == torch.bfloat16 and layer.values.dtype == torch.float32
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    y.float().backward(g)
    assert layer.values.grad.dtype == torch.float32 and layer.bias.grad.dtype == torch.float32
    assert x.grad.dtype == torch.float32
    # against the float64 reference on the same bf16-rounded operands
    xr, vr, br = (t.detach().bfloat16().double().requires_grad_() for t in (x, layer.values, layer.bias))
    geom = {} if isinstance(layer, st.SparseLinear) else dict(kernel_size=layer.kernel_size, stride=layer.stride,
                                                               padding=layer.padding)
    ref = (reference.bsr_linear if not geom else reference.bsr_conv2d)(xr, vr, layer.layout, br, **geom)
    ref.backward(g.bfloat16().double())  # the gradient reaches the bf16 output rounded to bf16
    torch.testing.assert_close(y.double(), ref, **BF16)
    torch.testing.assert_close(layer.values.grad.double(), vr.grad, **BF16)
    torch.testing.assert_close(x.grad.double(), xr.grad, **BF16)


def test_a_training_step_under_autocast_is_close_to_float32():
    def step(autocast):
        torch.manual_seed(0)
        model = st.sparsify(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                          nn.Linear(16 * 8 * 8, 10)), density=0.2, block_size=(1, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sparse = st.SparseTraining(model, opt, st.RigL(update_every=2), total_steps=10)
        losses = []
        g = torch.Generator().manual_seed(3)
        for _ in range(4):
            x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad()
            loss.backward()
            sparse.step()  # RigL's update reads gradient scores captured in bf16: computed in float32
            losses.append(loss.item())
        return losses, model
    fp32, _ = step(False)
    bf16, model = step(True)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(torch.tensor(bf16), torch.tensor(fp32), rtol=2e-2, atol=2e-2)


def test_scores_and_superposition_are_float32():
    x, dy = torch.randn(9, 32).bfloat16(), torch.randn(9, 16).bfloat16()
    scores = st.ops.linear_grad_scores(x, dy, (1, 1))
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, reference.linear_grad_scores(x.float(), dy.float(), (1, 1)))
    assert st.ops.block_scores(torch.randn(5, 2, 2).bfloat16()).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the operators' own rules: float32 inside a region too
        direct = torch.ops.suptickets.block_scores(torch.randn(5, 2, 2), "l1")
    assert direct.dtype == torch.float32


def test_the_operators_carry_autocast_rules():
    layout = st.BlockLayout.random((16, 24), (1, 1), 50)
    x, v = torch.randn(4, 24), torch.randn(layout.nnz, 1, 1)
    args = (x, v, layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm, None, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.ops.suptickets.bsr_linear(*args).dtype == torch.bfloat16
    assert torch.ops.suptickets.bsr_linear(*args).dtype == torch.float32


@pytest.mark.parametrize("block", [(1, 1), (16, 16)], ids=["1x1", "16x16"])
def test_bf16_operators_pass_opcheck(block):
    layout = st.BlockLayout.random((32, 48), block, max(1, 32 * 48 // (block[0] * block[1]) // 3))
    x = torch.randn(5, 48, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(layout.nnz, *block, dtype=torch.bfloat16, requires_grad=True)
    b = torch.randn(32, dtype=torch.bfloat16, requires_grad=True)
    torch.library.opcheck(torch.ops.suptickets.bsr_linear.default,
                          (x, v, layout.rows, layout.cols, layout.row_ptr, layout.col_ptr, layout.col_perm, b, 32))


def test_a_bf16_model_trains_on_the_kernels_with_float32_scores():
    torch.manual_seed(0)
    model = st.sparsify(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)), density=0.2,
                        block_size=(1, 1)).to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    boost = st.SupTickets(0.5, cycle_steps=2, lr_high=0.05)
    sparse = st.SparseTraining(model, opt, st.RigL(update_every=2), total_steps=8, sup_tickets=boost)
    with warnings.catch_warnings():
        warnings.simplefilter("error", backend.FallbackWarning)
        for _ in range(8):
            loss = F.cross_entropy(model(torch.randn(16, 32).bfloat16()).float(), torch.randint(0, 8, (16,)))
            opt.zero_grad()
            loss.backward()
            sparse.step()
    assert sparse.history and all(p.dtype == torch.bfloat16 for p in sparse.ultimate_model().parameters())


@pytest.mark.slow
def test_torch_compile_under_autocast_matches_eager():
    layer = st.SparseLinear(32, 24, density=0.3, block_size=(1, 1))
    x = torch.randn(6, 32)

    def f(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return layer(x).float().square().sum()
    eager = f(x)
    grad = torch.autograd.grad(eager, layer.values)[0]
    compiled = torch.compile(f, fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(torch.autograd.grad(compiled, layer.values)[0], grad)


# ---- the command line ---------------------------------------------------------------------------

QUICK = ["--model", "mlp", "--epochs", "3", "--cycle-epochs", "1", "--cycle-rate", "0.34", "--update-every", "20",
         "--quiet", "--threads", "1"]


@pytest.mark.slow
def test_bf16_mixed_resume_is_bit_exact_and_another_precision_is_refused(tmp_path, capsys):
    from suptickets.train.config import resolve
    from suptickets.train.runner import Run
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert cli.main(["train", *QUICK, "--precision", "bf16-mixed", "--out", str(whole)]) == 0
    config = resolve({}, {"model": "mlp", "epochs": 3, "cycle_epochs": 1, "cycle_rate": 0.34, "update_every": 20,
                          "threads": 1, "precision": "bf16-mixed", "out": str(part)})
    run = Run(config, quiet=True)
    run._write_start()
    run._train_epoch()
    assert cli.main(["train", "--resume", str(part)]) == 0
    a, b = torch.load(whole / "model.pt"), torch.load(part / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((whole / "config.json").read_text())["precision"] == "bf16-mixed"
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(part), "--precision", "fp32"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "drop --precision" in err


def test_precision_is_checked(capsys):
    assert cli.main(["train", *QUICK, "--precision", "fp16"]) == 2
    assert "--precision must be one of fp32, bf16-mixed, bf16, bf16-true; got 'fp16'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_bf16_run_trains_and_evaluates(tmp_path):
    assert cli.main(["train", *QUICK, "--precision", "bf16", "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert 0.0 < summary["test_accuracy"] <= 1.0
    state = torch.load(os.path.join(tmp_path, "r", "model.pt"))
    assert any(t.dtype == torch.bfloat16 for t in state.values())


def test_the_sparsity_table_shows_each_layers_path():
    model = st.sparsify(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)), density=0.3, block_size=(1, 1))
    assert [r.path for r in st.sparsity_table(model)] == ["cpu", "cpu"]
    assert [r.path for r in st.sparsity_table(model.to(torch.bfloat16))] == ["cpu", "cpu"]
    half = st.sparsity_table(model.half())
    assert all(r.path.startswith("dense (cpu: dtype torch.float16") for r in half)
    assert "path" in str(half).splitlines()[0]


def test_plan_under_autocast_reports_the_paths_of_the_regions_dtype():
    torch.manual_seed(0)
    model = st.sparsify(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)), density=0.3, block_size=(1, 1))
    x = torch.randn(4, 16)
    assert not any("float16" in r.why for r in st.plan(model, x))
    with torch.autocast("cpu", dtype=torch.float16), warnings.catch_warnings():
        warnings.simplefilter("ignore", backend.FallbackWarning)  # no CPU kernel takes float16: dense path
        half = st.plan(model, x)
    assert [r.path for r in half] == ["dense", "dense"]
    assert all("dtype torch.float16" in r.why for r in half)
