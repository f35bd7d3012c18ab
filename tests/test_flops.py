"""``st.flops.report``: FLOPs counted by hand for small models, as RigL's paper counts them."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import suptickets as st

B = 4  # batch of the input size


def mlp(densities=(0.25, 0.5)):
    """64 -> 32 (sparse) -> 16 (sparse) -> 10 (dense)."""
    model = nn.Sequential(nn.Flatten(), st.SparseLinear(64, 32, density=densities[0], block_size=(1, 1)), nn.ReLU(),
                          st.SparseLinear(32, 16, density=densities[1], block_size=(1, 1)), nn.ReLU(),
                          nn.Linear(16, 10))
    return model


def dense_flops():
    return [2 * B * 64 * 32, 2 * B * 32 * 16, 2 * B * 16 * 10]


def test_inference_ratio_scales_each_layer_by_its_density():
    model = mlp()
    rep = st.flops.report(model, (B, 64))
    f = dense_flops()
    d = [model[1].density, model[3].density, 1.0]
    assert d[:2] == [0.25, 0.5]
    assert rep.dense_forward == sum(f)
    assert rep.inference_ratio == pytest.approx(sum(a * b for a, b in zip(f, d)) / sum(f))
    assert [r.dense_forward for r in rep.layers] == f
    assert math.isnan(rep.training_ratio)
    assert "total" in str(rep)


def test_conv_flops_use_the_output_size():
    model = nn.Sequential(st.SparseConv2d(8, 16, 3, stride=2, padding=1, density=0.5, block_size=(1, 1)),
                          nn.Conv2d(16, 4, 1))
    rep = st.flops.report(model, (2, 8, 10, 10))
    assert [r.dense_forward for r in rep.layers] == [2 * 2 * 5 * 5 * 16 * 8 * 9, 2 * 2 * 5 * 5 * 4 * 16]


def test_static_training_is_three_sparse_forwards_per_step():
    model = mlp()
    rep = st.flops.report(model, (B, 64), method=st.Static(), total_steps=50)
    assert rep.training_ratio == pytest.approx(rep.inference_ratio)


def _expected(f, d, T, grad_steps, dense_steps=0, extra=0.0):
    spent = sum((T - grad_steps - dense_steps) * 3 * dl * fl + grad_steps * (2 * dl + 1) * fl + dense_steps * 3 * fl
                for fl, dl in zip(f, d))
    return (spent + extra) / (3 * sum(f) * T)


def test_rigl_adds_a_dense_gradient_every_delta_t_steps():
    model = mlp()
    rigl = st.RigL(update_every=10, end=0.75)
    rep = st.flops.report(model, (B, 64), method=rigl, total_steps=100)
    # updates at 10, 20, ..., 70 (before 75): (3 f_S dT + 2 f_S + f_D) per update period
    assert rep.training_ratio == pytest.approx(_expected(dense_flops(), [0.25, 0.5, 1.0], 100, 7))
    assert rep.training_ratio > rep.inference_ratio


def test_snip_scoring_steps_are_dense():
    model = mlp()
    rep = st.flops.report(model, (B, 64), method=st.SNIP(batches=3), total_steps=40)
    assert rep.training_ratio == pytest.approx(_expected(dense_flops(), [0.25, 0.5, 1.0], 40, 0, dense_steps=3))


def test_sup_tickets_adds_explorations_and_merges():
    model = mlp()
    boost = st.SupTickets(0.3, cycle_steps=10, lr_high=0.01)  # T=100: phase 70..100, 3 cycles
    rigl = st.RigL(update_every=10, end=1.0)
    rep = st.flops.report(model, (B, 64), method=rigl, total_steps=100, sup_tickets=boost)
    # base updates at 10..70 (7, the one at step 70 = P is still the base phase's), explorations
    # after 70, 80, 90: steps 70, 80, 90 read the dense gradient; 80 and 90 are explorations only
    assert boost.exploration_steps() == [70, 80, 90]
    active = 64 * 32 * 0.25 + 32 * 16 * 0.5
    merges = 3 * 5 * 2 * active  # 4 tickets (with the base ticket): 3 merges
    assert rep.training_ratio == pytest.approx(_expected(dense_flops(), [0.25, 0.5, 1.0], 100, 9, extra=merges))


def test_granet_schedule_matches_the_recorded_run():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), st.SparseLinear(64, 64, density=0.5, block_size=(1, 1)), nn.ReLU(),
                          nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    T = 60
    sparse = st.SparseTraining(model, opt, st.GraNet(0.5, 0.1, prune_start=0, prune_end=40, update_every=10), T)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    for _ in range(T):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        sparse.step()
    recorded = st.flops.report(model, (B, 64), method=sparse)
    planned = st.flops.report(model, (B, 64), method=st.GraNet(0.5, 0.1, prune_start=0, prune_end=40,
                                                                update_every=10), total_steps=T)
    assert recorded.training_ratio == pytest.approx(planned.training_ratio, rel=1e-3)
    # density 0.5 down to 0.1: more than the end state's training cost, less than the start's
    f = [2 * B * 64 * 64, 2 * B * 64 * 10]
    assert _expected(f, [0.1, 1.0], T, 6) < recorded.training_ratio < _expected(f, [0.5, 1.0], T, 6)
    assert recorded.inference_ratio == pytest.approx((0.1 * f[0] + f[1]) / sum(f), rel=1e-3)


def test_report_rejects_bad_arguments():
    with pytest.raises(TypeError, match="method must be"):
        st.flops.report(mlp(), (B, 64), method="rigl", total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        st.flops.report(mlp(), (B, 64), total_steps=0)
    model = mlp()
    sparse = st.SparseTraining(model, torch.optim.SGD(model.parameters(), lr=0.1), st.Static(), 10)
    with pytest.raises(ValueError, match="differs from the SparseTraining's 10"):
        st.flops.report(model, (B, 64), method=sparse, total_steps=20)
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        st.flops.report(nn.Sequential(nn.ReLU()), (B, 64))
