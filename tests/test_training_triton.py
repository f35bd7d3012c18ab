"""A whole sparse training run on the Triton kernels (the interpreter without a GPU): RigL with
Sup-tickets (gradient growth, explorations, superposition, the ultimate ticket) through
``SUPTICKETS_BACKEND=triton`` gives the same topology history and, within float32 rounding, the
same weights as the run on the C++ kernels."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import suptickets as st

from helpers import TRAINED
from triton_helpers import needs_triton

pytestmark = pytest.mark.slow


def run(monkeypatch, backend):
    monkeypatch.setenv("SUPTICKETS_BACKEND", backend)
    monkeypatch.setenv("SUPTICKETS_FP32_PRECISION", "ieee")
    torch.manual_seed(0)
    model = st.sparsify(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
                        density=0.4, distribution="erk", block_size=(16, 16))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    total = 16
    boost = st.SupTickets(cycle_rate=0.5, cycle_steps=4, lr_high=0.05)
    sparse = st.SparseTraining(model, opt, method=st.RigL(update_every=2, drop_fraction=0.5), total_steps=total,
                               sup_tickets=boost)
    g = torch.Generator().manual_seed(1)
    for _ in range(total):
        x, y = torch.randn(24, 64, generator=g), torch.randint(0, 10, (24,), generator=g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        sparse.step()
    ultimate = sparse.ultimate_model()
    x = torch.randn(24, 64, generator=g)
    return sparse.history, model.state_dict(), ultimate(x)


@needs_triton
def test_rigl_with_sup_tickets_on_the_triton_kernels(monkeypatch):
    want_history, want_state, want_out = run(monkeypatch, "cpu")
    got_history, got_state, got_out = run(monkeypatch, "triton")
    assert [(h.step, h.layer, h.event, h.pruned, h.grown) for h in got_history] == \
        [(h.step, h.layer, h.event, h.pruned, h.grown) for h in want_history]
    assert sum(h.event == "explore" for h in got_history) > 0 and sum(h.grown for h in got_history) > 0
    assert got_state.keys() == want_state.keys()
    for key, value in want_state.items():
        torch.testing.assert_close(got_state[key], value, **TRAINED, msg=key)
    torch.testing.assert_close(got_out, want_out, **TRAINED)
