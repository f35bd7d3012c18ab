"""Sup-tickets: the cyclic phase (schedule, Eq. 3, explorations), the Superposer against a dense
implementation of Algorithm 1 lines 10-11, BatchNorm, the ultimate ticket, resume, errors."""
import copy
import io
import math

import pytest
import torch
import torch.nn as nn

import suptickets as st
from suptickets.methods import cyclic_lr

from helpers import STATISTICS, batch, layers, run_steps

BLOCK = (8, 8)


def bn_model():
    return nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16),
    )


def sparse_model(seed, density=0.3):
    torch.manual_seed(seed)
    return st.sparsify(bn_model(), density=density, distribution="uniform", block_size=BLOCK)


def ticket(seed, density=0.3):
    """A model with random weights, topology and BatchNorm statistics (never zeros)."""
    model = sparse_model(seed, density)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for i, (name, tensor) in enumerate(model.state_dict().items()):
            if tensor.is_floating_point():  # layers on different scales
                tensor.copy_(torch.randn(tensor.shape, generator=g, dtype=tensor.dtype) * (1 + i % 3))
                if "running_var" in name:
                    tensor.abs_().add_(0.1)
            elif "num_batches_tracked" in name:
                tensor.fill_(int(torch.randint(1, 100, (1,), generator=g)))
    return model


# ---- the schedule ------------------------------------------------------------------------------


def test_eq3_by_hand():
    low, high, C = 0.001, 0.005, 8
    # t = (i mod C + 1) / C: 1/8, 2/8, ..., 8/8
    want = [0.002, 0.003, 0.004, 0.005, 0.004, 0.003, 0.002, 0.001]
    got = [cyclic_lr(i, C, low, high) for i in range(16)]
    assert got == pytest.approx(want + want, abs=1e-15)


def test_phase_of_the_papers_runs():
    steps = 10  # per epoch
    cifar = st.SupTickets(0.1, cycle_steps=8 * steps, lr_high=0.005)  # 250 epochs, C = 8 (Table 7)
    cifar.bind(250 * steps)
    assert (cifar.cycles, cifar.cycle, cifar.start) == (3, 80, 2260)  # N-epochs 226, C-epochs 24
    assert cifar.collection_steps() == [2260, 2340, 2420, 2500]  # the base ticket and 3 cycle ends
    assert cifar.exploration_steps() == [2260, 2340, 2420]
    literal = st.SupTickets(0.1, cycle_steps=8 * steps, lr_high=0.005, include_base_ticket=False)
    literal.bind(250 * steps)
    assert literal.collection_steps() == [2340, 2420, 2500]
    # ImageNet (Table 8): 100 epochs, C = 2, N-epochs 92, C-epochs 8: the phase is 8% of the run
    imagenet = st.SupTickets(0.08, cycle_steps=2 * steps, lr_high=0.0005)
    imagenet.bind(100 * steps)
    assert (imagenet.cycles, imagenet.start) == (4, 920)
    assert imagenet.collection_steps() == [920, 940, 960, 980, 1000]
    ten_percent = st.SupTickets(0.1, cycle_steps=2 * steps, lr_high=0.0005)
    ten_percent.bind(100 * steps)
    assert ten_percent.cycles == 5  # 10 epochs hold 5 cycles of 2
    by_count = st.SupTickets(0.1, num_cycles=3, lr_high=0.005)
    by_count.bind(250 * steps)  # 250 steps of phase: 3 cycles of 83
    assert (by_count.cycles, by_count.cycle, by_count.start) == (3, 83, 2251)
    rounding = st.SupTickets(0.29, cycle_steps=29, lr_high=0.1)
    rounding.bind(100)  # 0.29 * 100 is 28.999... in floating point: still one cycle of 29
    assert rounding.cycles == 1


def test_learning_rate_around_the_phase_boundary_and_inside_cycles():
    model = sparse_model(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[10, 15], gamma=0.1)
    boost = st.SupTickets(0.4, cycle_steps=4, lr_high=0.005)
    sparse = st.SparseTraining(model, optimizer, st.RigL(update_every=4), total_steps=30, sup_tickets=boost)
    assert boost.start == 18  # 0.4 * 30 = 12 steps, 3 cycles of 4
    used = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    for t in range(1, 31):
        run_steps(model, optimizer, sparse, [t])
        scheduler.step()
    assert used[:18] == pytest.approx([0.1] * 10 + [0.01] * 5 + [0.001] * 3)  # the user's schedule
    low = 0.001  # lr_low: the learning rate of the last base step
    cycle = [0.5 * low + 0.5 * 0.005, 0.005, 0.5 * 0.005 + 0.5 * low, low]  # t = 1/4, 1/2, 3/4, 1
    assert used[18:] == pytest.approx(cycle * 3)
    assert boost.resolved_lr_low == [pytest.approx(0.001)]


def test_lr_low_given_and_several_param_groups():
    model = sparse_model(0)
    head = list(model[-1].parameters())
    rest = [p for p in model.parameters() if all(p is not h for h in head)]
    optimizer = torch.optim.SGD([{"params": rest}, {"params": head, "lr": 0.2}], lr=0.1)
    boost = st.SupTickets(0.2, cycle_steps=2, lr_low=0.01, lr_high=0.03)
    sparse = st.SparseTraining(model, optimizer, st.Static(), total_steps=10, sup_tickets=boost)
    used = []
    optimizer.register_step_pre_hook(lambda opt, a, k: used.append([g["lr"] for g in opt.param_groups]))
    run_steps(model, optimizer, sparse, range(1, 11))
    assert used[:8] == [[0.1, 0.2]] * 8
    assert used[8:] == [[pytest.approx(0.03)] * 2, [pytest.approx(0.01)] * 2]


def test_explorations_replace_the_fraction_and_base_updates_stop():
    model = sparse_model(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    boost = st.SupTickets(0.5, cycle_steps=5, lr_high=0.05, explore_fraction=0.5)
    sparse = st.SparseTraining(model, optimizer, st.RigL(update_every=2, end=1.0), total_steps=20, sup_tickets=boost)
    nnz = {n: m.nnz for n, m in layers(model)}
    run_steps(model, optimizer, sparse, range(1, 10))
    masks = {n: m.layout.mask().clone() for n, m in layers(model)}
    run_steps(model, optimizer, sparse, [10])  # the last base step: collection, then exploration
    changed = {n: int((masks[n] & ~m.layout.mask()).sum()) for n, m in layers(model)}
    assert all(changed[n] <= nnz[n] // 2 for n in nnz)  # a dropped block may be regrown, as in RigL
    assert sum(changed.values()) > 0 and {n: m.nnz for n, m in layers(model)} == nnz
    run_steps(model, optimizer, sparse, range(11, 21))
    in_phase = [r for r in sparse.history if r.step > 10]
    assert {r.event for r in in_phase} == {"explore"}  # RigL's own updates (every 2 steps) are off
    assert sorted({r.step for r in sparse.history if r.event == "explore"}) == [10, 15]
    for r in sparse.history:
        if r.event == "explore":
            assert r.pruned == r.grown == int(0.5 * nnz[r.layer])
    assert [r.event for r in sparse.history if r.step < 10 and r.step % 2 == 0][:1] == ["prune-regrow"]
    assert boost.collected == [10, 15, 20]


def test_exploration_grows_zero_blocks_by_the_base_growth_rule():
    model = sparse_model(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    boost = st.SupTickets(0.5, cycle_steps=5, lr_high=0.05)
    sparse = st.SparseTraining(model, optimizer, st.RigL(update_every=4, end=0.3), total_steps=20, sup_tickets=boost)
    run_steps(model, optimizer, sparse, range(1, 10))
    assert all(m._capture_enabled for _, m in layers(model))  # step 10 explores with gradients
    before = {n: m.layout.mask().clone() for n, m in layers(model)}
    run_steps(model, optimizer, sparse, [10])
    for name, layer in layers(model):
        grown = ~before[name] & layer.layout.mask()
        slots = grown[layer.layout.rows.long(), layer.layout.cols.long()]
        assert grown.any() and torch.all(layer.values[slots] == 0)
        assert torch.all(optimizer.state[layer.values]["momentum_buffer"][slots] == 0)
    assert not any(m._capture_enabled for _, m in layers(model))


# ---- the Superposer against a dense Algorithm 1 ----------------------------------------------------


def dense_superpose(tickets, mode, reprune, beta=0.8):
    """Algorithm 1 lines 10-11 on dense weights with masks: average, then magnitude pruning of
    blocks to the ticket's count (per layer) or total (global, by norm per weight). CAA counts
    the tickets that had a weight since it last entered the superposed network."""
    names = [n for n, _ in layers(tickets[0])]
    acc, count = {}, {}
    for t, model in enumerate(tickets, start=1):
        mods = dict(layers(model))
        for n in names:
            W = mods[n].weight2d().detach().double()
            M = mods[n].layout.element_mask()
            if t == 1:
                acc[n], count[n] = W.clone(), M.double()
                continue
            if mode == "cia":
                acc[n] = ((t - 1) * acc[n] + W) / t
            elif mode == "cima":
                acc[n] = beta * acc[n] + (1 - beta) * W
            else:
                acc[n] = torch.where(M, (count[n] * acc[n] + W) / (count[n] + 1), acc[n])
            count[n] = count[n] + M.double()
        if t == 1:
            continue
        norms = {n: acc[n].reshape(acc[n].shape[0] // 8, 8, -1, 8).abs().sum((1, 3)).flatten() for n in names}
        if reprune == "layer":
            keep = {n: torch.sort(norms[n], descending=True, stable=True).indices[:mods[n].nnz] for n in names}
        else:
            flat = torch.cat([norms[n] / 64 for n in names])
            sizes = [norms[n].numel() for n in names]
            offset = 0
            for size in sizes:  # each layer keeps its best block
                flat[offset + int(torch.argmax(flat[offset:offset + size]))] = float("inf")
                offset += size
            total = sum(mods[n].nnz for n in names)
            top = torch.sort(flat, descending=True, stable=True).indices[:total]
            chosen = torch.zeros(flat.numel(), dtype=torch.bool)
            chosen[top] = True
            keep = {n: part.nonzero().squeeze(1) for n, part in zip(names, chosen.split(sizes))}
        for n in names:
            grid = torch.zeros(norms[n].numel(), dtype=torch.bool)
            grid[keep[n]] = True
            mask = grid.view(acc[n].shape[0] // 8, -1).repeat_interleave(8, 0).repeat_interleave(8, 1)
            acc[n] = acc[n] * mask
            count[n] = count[n] * mask
    return acc


@pytest.mark.parametrize("reprune", ["layer", "global"])
@pytest.mark.parametrize("mode", ["cia", "caa", "cima"])
def test_superposer_equals_a_dense_algorithm_1(mode, reprune):
    tickets = [ticket(seed) for seed in range(4)]
    sup = st.Superposer(mode=mode, reprune=reprune)
    for model in tickets:
        sup.add(model)
    result = sup.result()
    want = dense_superpose(tickets, mode, reprune)
    got = dict(layers(result))
    for name, W in want.items():
        torch.testing.assert_close(got[name].weight2d().double(), W, **STATISTICS)
    nnz = {n: m.nnz for n, m in layers(tickets[-1])}
    if reprune == "layer":  # exact target sparsity, layer by layer
        assert {n: m.nnz for n, m in got.items()} == nnz
    else:
        assert sum(m.nnz for m in got.values()) == sum(nnz.values())
        assert {n: m.nnz for n, m in got.items()} != nnz  # one threshold moved blocks between layers
    assert not result.training


def test_dense_entries_and_batchnorm_statistics_are_the_tickets_mean():
    tickets = [ticket(seed) for seed in range(3)]
    sup = st.Superposer()
    for model in tickets:
        sup.add(model)
    out = sup.result().state_dict()
    states = [m.state_dict() for m in tickets]
    for key in ("1.running_mean", "1.running_var", "4.running_mean", "4.running_var", "1.weight", "4.bias",
                "0.bias", "10.bias"):
        torch.testing.assert_close(out[key], torch.stack([s[key] for s in states]).mean(0))
    assert out["1.num_batches_tracked"] == states[-1]["1.num_batches_tracked"]
    cima = st.Superposer(mode="cima", beta=0.5)
    for model in tickets:
        cima.add(model)
    s0, s1, s2 = (s["4.running_var"] for s in states)
    torch.testing.assert_close(cima.model_state_dict()["4.running_var"], 0.5 * (0.5 * s0 + 0.5 * s1) + 0.5 * s2)


def test_batchnorm_recompute_runs_one_pass():
    tickets = [ticket(seed) for seed in range(2)]
    sup = st.Superposer(bn="recompute")
    for model in tickets:
        sup.add(model)
    with pytest.raises(ValueError, match="needs a loader"):
        sup.result()
    x = torch.randn(32, 8, 6, 6)
    loader = [(x[:16], None), (x[16:], None)]
    model = sup.result(loader=loader)
    seen = []
    hook = model[1].register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    model(x)
    hook.remove()
    inputs = seen[0]
    torch.testing.assert_close(model[1].running_mean, inputs.mean((0, 2, 3)), **STATISTICS)
    halves = inputs.split(16)  # cumulative average of the two batches' unbiased variances
    var = torch.stack([h.var((0, 2, 3), unbiased=True) for h in halves]).mean(0)
    torch.testing.assert_close(model[1].running_var, var, **STATISTICS)
    assert not model.training


def test_superposer_takes_state_dicts_and_checkpoints():
    tickets = [ticket(seed) for seed in range(3)]
    from_models, from_dicts = st.Superposer(), st.Superposer()
    for model in tickets:
        from_models.add(model)
        from_dicts.add({"model": model.state_dict(), "optimizer": {}})  # a SparseTraining checkpoint
    with pytest.raises(ValueError, match="into="):
        from_dicts.result()
    into = sparse_model(9)
    assert from_dicts.result(into=into) is into
    for key, value in from_models.model_state_dict().items():
        assert torch.equal(into.state_dict()[key], value), key


def test_superposer_resumes_from_its_state_dict():
    tickets = [ticket(seed) for seed in range(4)]
    whole = st.Superposer(mode="caa")
    for model in tickets:
        whole.add(model)
    first = st.Superposer(mode="caa")
    for model in tickets[:2]:
        first.add(model)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = st.Superposer(mode="caa")
    second.load_state_dict(torch.load(buffer, weights_only=False))
    for model in tickets[2:]:
        second.add(model)
    for key, value in whole.model_state_dict().items():
        assert torch.equal(second.model_state_dict()[key], value)
    with pytest.raises(ValueError, match="Superposer with"):
        st.Superposer(mode="cia").load_state_dict(first.state_dict())


def test_superposer_rejects_other_architectures():
    sup = st.Superposer()
    sup.add(ticket(0))
    with pytest.raises(ValueError, match="ticket 2 does not match"):
        sup.add(st.sparsify(nn.Sequential(nn.Linear(8, 16)), density=0.5, block_size=BLOCK))
    wider = bn_model()
    wider[8] = nn.Linear(32, 128)
    wider[10] = nn.Linear(128, 16)
    with pytest.raises(ValueError, match="ticket 2 does not match"):
        sup.add(st.sparsify(wider, density=0.3, distribution="uniform", block_size=BLOCK))
    with pytest.raises(ValueError, match="blocks of"):
        sup.add(st.sparsify(bn_model(), density=0.3, distribution="uniform", block_size=(4, 4)))
    with pytest.raises(TypeError, match="model or a state dict"):
        sup.add([1, 2])
    with pytest.raises(RuntimeError, match="no ticket"):
        st.Superposer().result()
    for kwargs, match in (({"mode": "avg"}, "mode must be"), ({"reprune": "net"}, "reprune must be"),
                          ({"beta": 1.0}, r"beta must be in \[0, 1\)"), ({"beta": -0.1}, r"beta must be in"),
                          ({"bn": "none"}, "bn must be")):
        with pytest.raises(ValueError, match=match):
            st.Superposer(**kwargs)


def test_ticket_ensemble_averages_softmax_outputs():
    models = [ticket(seed).eval() for seed in range(3)]
    ensemble = st.TicketEnsemble(models)
    x = torch.randn(5, 8, 6, 6)
    want = torch.stack([torch.softmax(m(x), -1) for m in models]).mean(0)
    torch.testing.assert_close(ensemble(x), want)
    torch.testing.assert_close(ensemble(x).sum(-1), torch.ones(5))
    with pytest.raises(ValueError, match="non-empty"):
        st.TicketEnsemble([])


# ---- the controller ------------------------------------------------------------------------------


def boosted_run(seed, method="rigl", keep=False, bn="average", reprune="layer", total=24):
    model = sparse_model(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    base = st.RigL(update_every=3) if method == "rigl" else st.SET(update_every=3)
    boost = st.SupTickets(0.5, cycle_steps=4, lr_high=0.08, keep_tickets=keep, bn=bn, reprune=reprune)
    return model, optimizer, st.SparseTraining(model, optimizer, base, total_steps=total, sup_tickets=boost, seed=7)


def test_ultimate_model_is_the_superposition_of_the_collected_tickets():
    model, optimizer, sparse = boosted_run(0, keep=True)
    with pytest.raises(RuntimeError, match="no ticket yet"):
        sparse.ultimate_model()
    run_steps(model, optimizer, sparse, range(1, 25))
    tickets = sparse.sup_tickets.tickets
    assert len(tickets) == 4 and sparse.sup_tickets.collected == [12, 16, 20, 24]
    live = copy.deepcopy(model.state_dict())
    ultimate = sparse.ultimate_model()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in live.items())  # the live model is unchanged
    sup = st.Superposer()
    for state in tickets:
        sup.add(state)
    for key, value in sup.model_state_dict().items():
        assert torch.equal(ultimate.state_dict()[key], value), key
    assert [m.nnz for _, m in layers(ultimate)] == [m.nnz for _, m in layers(model)]
    assert ultimate is not model and not ultimate.training
    ensemble = sparse.ticket_ensemble()
    assert len(ensemble.members) == 4
    x, _ = batch(99)
    assert ensemble(x).shape == (16, 16)


def test_without_the_base_ticket_only_cycle_ends_are_superposed():
    model = sparse_model(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    boost = st.SupTickets(0.5, cycle_steps=4, lr_high=0.08, include_base_ticket=False, keep_tickets=True,
                          superpose="caa")
    sparse = st.SparseTraining(model, optimizer, st.SET(3), total_steps=24, sup_tickets=boost, seed=3)
    run_steps(model, optimizer, sparse, range(1, 25))
    assert boost.collected == [16, 20, 24] and boost.exploration_steps() == [12, 16, 20]
    sup = st.Superposer(mode="caa")
    for state in boost.tickets:
        sup.add(state)
    for key, value in sup.model_state_dict().items():
        assert torch.equal(sparse.ultimate_model().state_dict()[key], value), key


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_resume_in_the_cyclic_phase_gives_the_same_ultimate_ticket(method):
    model_a, opt_a, sparse_a = boosted_run(0, method)
    run_steps(model_a, opt_a, sparse_a, range(1, 25))
    ultimate_a = sparse_a.ultimate_model().state_dict()

    model_b, opt_b, sparse_b = boosted_run(0, method)
    run_steps(model_b, opt_b, sparse_b, range(1, 19))  # two tickets in, mid-cycle
    buffer = io.BytesIO()
    torch.save(sparse_b.state_dict(), buffer)
    buffer.seek(0)
    model_c, opt_c, sparse_c = boosted_run(5, method)
    sparse_c.load_state_dict(torch.load(buffer, weights_only=False))
    run_steps(model_c, opt_c, sparse_c, range(19, 25))
    ultimate_c = sparse_c.ultimate_model().state_dict()
    for key, value in ultimate_a.items():
        assert torch.equal(ultimate_c[key], value), key
    assert opt_c.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"]


def test_global_reprune_and_batchnorm_recompute_through_the_controller():
    model, optimizer, sparse = boosted_run(0, bn="recompute", reprune="global")
    run_steps(model, optimizer, sparse, range(1, 25))
    with pytest.raises(ValueError, match="needs a loader"):
        sparse.ultimate_model()
    loader = [batch(t) for t in range(3)]
    ultimate = sparse.ultimate_model(loader=loader)
    active = sum(m.nnz * 64 for _, m in layers(ultimate))
    assert active == sum(m.nnz * 64 for _, m in layers(model))
    assert int(ultimate[1].num_batches_tracked) == 3


def test_works_with_every_base_method():
    for method in (st.Static(), st.SNIP(batches=1), st.SET(3), st.RigL(3), st.GraNet(0.5, 0.3, 3, 12, 3)):
        torch.manual_seed(0)
        density = 0.5 if isinstance(method, st.GraNet) else 0.3
        model = st.sparsify(bn_model(), density=density, distribution="uniform", block_size=BLOCK)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        boost = st.SupTickets(0.5, cycle_steps=4, lr_high=0.05)
        sparse = st.SparseTraining(model, optimizer, method, total_steps=24, sup_tickets=boost)
        run_steps(model, optimizer, sparse, range(1, 25))
        ultimate = sparse.ultimate_model()
        assert [m.nnz for _, m in layers(ultimate)] == [m.nnz for _, m in layers(model)], method


def test_booster_errors():
    with pytest.raises(ValueError, match="exactly one of cycle_steps and num_cycles"):
        st.SupTickets(0.1, lr_high=0.005)
    with pytest.raises(ValueError, match="exactly one"):
        st.SupTickets(0.1, cycle_steps=4, num_cycles=2, lr_high=0.005)
    with pytest.raises(TypeError):
        st.SupTickets(0.1, cycle_steps=4)  # lr_high is required
    for bad in (0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="lr_high must be > 0"):
            st.SupTickets(0.1, cycle_steps=4, lr_high=bad)
    with pytest.raises(ValueError, match="lr_low must be >= 0"):
        st.SupTickets(0.1, cycle_steps=4, lr_low=-1, lr_high=0.1)
    for bad in (1.0, -0.5):
        with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
            st.SupTickets(0.1, cycle_steps=4, lr_high=0.1, superpose="cima", beta=bad)
    for bad in (0, 1, 1.5):
        with pytest.raises(ValueError, match=r"cycle_rate must be in \(0, 1\)"):
            st.SupTickets(bad, cycle_steps=4, lr_high=0.1)
    with pytest.raises(ValueError, match=r"explore_fraction must be in \[0, 1\)"):
        st.SupTickets(0.1, cycle_steps=4, lr_high=0.1, explore_fraction=1)
    with pytest.raises(ValueError, match="superpose must be"):
        st.SupTickets(0.1, cycle_steps=4, lr_high=0.1, superpose="swa")
    model = sparse_model(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="shorter than one cycle of cycle_steps=8"):
        st.SparseTraining(model, optimizer, st.RigL(2), total_steps=50,
                          sup_tickets=st.SupTickets(0.1, cycle_steps=8, lr_high=0.1))
    with pytest.raises(ValueError, match="shorter than num_cycles=6"):
        st.SparseTraining(model, optimizer, st.RigL(2), total_steps=50,
                          sup_tickets=st.SupTickets(0.1, num_cycles=6, lr_high=0.1))
    with pytest.raises(ValueError, match="prune_end=45, inside the cyclic phase"):
        st.SparseTraining(model, optimizer, st.GraNet(0.3, 0.2, 5, 45, 5), total_steps=50,
                          sup_tickets=st.SupTickets(0.2, cycle_steps=5, lr_high=0.1))
    plain = st.SparseTraining(model, optimizer, st.RigL(2), total_steps=50)
    with pytest.raises(RuntimeError, match="no Sup-tickets booster"):
        plain.ultimate_model()
    boosted = st.SparseTraining(model, optimizer, st.RigL(2), total_steps=50,
                                sup_tickets=st.SupTickets(0.2, cycle_steps=5, lr_high=0.1))
    with pytest.raises(ValueError, match="differ in using the Sup-tickets booster"):
        boosted.load_state_dict(plain.state_dict())
    with pytest.raises(RuntimeError, match="keep_tickets=True"):
        boosted.ticket_ensemble()
    assert math.isclose(boosted.sup_tickets.lr(41, low=0.02), 0.6 * 0.02 + 0.4 * 0.1)  # t = 1/5
    with pytest.raises(ValueError, match="outside the cyclic phase"):
        boosted.sup_tickets.lr(40, low=0.02)


# ---- the command line's note on short cycles -------------------------------------------------------

def test_a_short_run_or_cycle_is_told_and_a_long_one_is_not(tmp_path, capsys, monkeypatch):
    from suptickets.methods import sup_tickets
    from suptickets.train import cli
    args = ["train", "--model", "mlp", "--epochs", "2", "--cycle-rate", "0.5", "--cycles", "1", "--update-every", "10",
            "--quiet", "--threads", "1"]  # 84 steps, one cycle of 42

    def notes(name):
        assert cli.main([*args, "--out", str(tmp_path / name)]) == 0
        return [line for line in capsys.readouterr().err.strip().splitlines() if "suptickets train: note:" in line]

    note = notes("short")  # the study's thresholds: far longer runs
    assert len(note) == 1 and f"this run has 84 steps, fewer than the {sup_tickets.SHORTEST_HELPFUL_RUN}" in note[0]
    assert note[0].endswith("lengthen the run with more --epochs")
    monkeypatch.setattr(sup_tickets, "SHORTEST_HELPFUL_RUN", 84)
    monkeypatch.setattr(sup_tickets, "SHORTEST_HELPFUL_CYCLE", 43)
    note = notes("short-cycle")
    assert len(note) == 1 and "Sup-tickets cycles of 42 steps are shorter than the 43 steps" in note[0]
    assert "--epochs" in note[0] and "--cycles" in note[0] and "--cycle-epochs" in note[0]
    monkeypatch.setattr(sup_tickets, "SHORTEST_HELPFUL_CYCLE", 42)  # a run long enough, cycles long enough
    assert notes("long") == []
    assert sup_tickets.short_run_note(84) is None and sup_tickets.short_run_note(83) is not None
    assert sup_tickets.short_cycle_note(42) is None and sup_tickets.short_cycle_note(41) is not None


def test_a_base_method_measured_without_gain_is_told_and_rigl_is_not(tmp_path, capsys):
    from suptickets.methods import sup_tickets
    from suptickets.train import cli
    args = ["train", "--model", "mlp", "--epochs", "2", "--cycle-rate", "0.25", "--cycles", "1", "--update-every", "10",
            "--quiet", "--threads", "1"]

    def notes(method):
        assert cli.main([*args, "--method", method, "--out", str(tmp_path / method)]) == 0
        return [line for line in capsys.readouterr().err.strip().splitlines() if "gained nothing measurable" in line]

    note = notes("granet")
    assert len(note) == 1 and "--method rigl" in note[0]
    assert all(delta in note[0] for delta in sup_tickets.MEASURED_WITHOUT_GAIN["granet"].values())
    assert "20 points" in note[0]  # the default explorations of 0.5: what they cost, and the gentler measured one
    assert "20 points" not in sup_tickets.base_method_note("granet", 0.2)
    assert notes("rigl") == []
    assert sup_tickets.base_method_note("rigl") is None and sup_tickets.base_method_note("set") is None
