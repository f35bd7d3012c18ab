"""Data-parallel training on CPU (gloo, 2 processes): identical topology updates on every rank,
and the result of one process with the same global batch."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import suptickets as st
from suptickets.train import distributed

from helpers import TRAINED

GLOBAL_BATCH, STEPS = 24, 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (block, method): unstructured, small blocks (the element kernels) and 16x16 (the tiles), with
# gradient (RigL) and random (SET) regrowth
CASES = [((1, 1), "rigl"), ((1, 1), "set"), ((4, 4), "rigl"), ((4, 4), "set"), ((16, 16), "rigl"), ((16, 16), "set")]


def _model(block=(1, 1)):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 16))
    return st.sparsify(model, density=0.2, distribution="erk", block_size=block)


def _train(rank: int, world: int, block=(1, 1), method="rigl", steps=STEPS):
    """Gradient (RigL) or random (SET) regrowth every 5 steps, then a Sup-tickets phase with
    explorations; with several processes the gradients as ``suptickets train`` forms them."""
    torch.set_num_threads(1)
    model = _model(block)
    if world > 1:
        distributed.keep_batches(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    boost = st.SupTickets(0.4, cycle_steps=steps // 5, lr_high=0.05)
    kind = st.RigL if method == "rigl" else st.SET
    sparse = st.SparseTraining(model, opt, kind(update_every=5, drop_fraction=0.3), steps, sup_tickets=boost, seed=7)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(GLOBAL_BATCH, 32, generator=g), torch.randint(0, 16, (GLOBAL_BATCH,), generator=g)
        part = slice(GLOBAL_BATCH * rank // world, GLOBAL_BATCH * (rank + 1) // world)
        loss = F.cross_entropy(model(x[part]), y[part], reduction="sum") / GLOBAL_BATCH
        opt.zero_grad()
        loss.backward()
        if world > 1:
            distributed.all_reduce_gradients(model)
        sparse.step()
    return model.state_dict(), [r.as_dict() for r in sparse.history]


def _worker(rank: int, world: int, port: int, out: str, cases, steps):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for block, method in cases:
            state, history = _train(rank, world, block, method, steps)
            model = _model(block)
            model.load_state_dict(state)
            torch.save({"state": state, "history": history, "agree": distributed.layouts_agree(model)},
                       os.path.join(out, f"{block[0]}-{method}-rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_match_one_process_at_every_block_size(tmp_path):
    """1 and 2 gloo processes, (1, 1), 4x4 and 16x16 blocks, RigL and SET, 150 steps (30 topology
    updates and explorations): the same topology decisions and the same weights, bit for bit."""
    steps = 150
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), CASES, steps), nprocs=2, join=True)
    for block, method in CASES:
        ranks = [torch.load(tmp_path / f"{block[0]}-{method}-rank{r}.pt", weights_only=False) for r in range(2)]
        single_state, single_history = _train(0, 1, block, method, steps)
        assert ranks[0]["agree"] and ranks[1]["agree"]
        # the same topology changes on both ranks, and as one process takes them
        assert ranks[0]["history"] == ranks[1]["history"] == single_history, (block, method)
        assert any(r["event"] == "explore" for r in single_history)
        assert any(r["event"] == "prune-regrow" and r["grown"] > 0 for r in single_history)
        for key, value in single_state.items():
            assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
            if key.endswith(("layout_rows", "layout_cols")):
                assert torch.equal(ranks[0]["state"][key], value), (block, method, key)
            else:
                torch.testing.assert_close(ranks[0]["state"][key], value, **TRAINED)
                assert torch.equal(ranks[0]["state"][key], value), (block, method, key)  # in fact bit for bit


@pytest.mark.slow
def test_torchrun_cli_matches_one_process(tmp_path):
    args = ["train", "--model", "mlp", "--epochs", "4", "--cycle-epochs", "1", "--cycle-rate", "0.5",
            "--update-every", "10", "--batch-size", "32", "--quiet", "--threads", "1", "--dense-first"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "suptickets", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "suptickets", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["ranks"] == 2 and len(summary["tickets"]) == 3
    a, b = torch.load(tmp_path / "two" / "model.pt"), torch.load(tmp_path / "one" / "model.pt")
    for key in b:  # sparse layers and the dense first layer: bit for bit
        assert torch.equal(a[key], b[key]), key
    one_metrics = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    two_metrics = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    for m1, m2 in zip(one_metrics, two_metrics):
        assert abs(m1["train_loss"] - m2["train_loss"]) < 1e-4
