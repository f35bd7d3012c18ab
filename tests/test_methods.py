"""Static, SNIP, SET, RigL and GraNet under SparseTraining: what each update must do."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import suptickets as st
from suptickets.methods import Topology
from suptickets.methods.schedule import cosine_decay, cubic_density
from suptickets.ops import reference

from helpers import batch, layers, small_model

BLOCK = (8, 8)


def setup_run(method, density=0.3, total=40, opt="sgd", seed=0):
    torch.manual_seed(seed)
    model = st.sparsify(small_model(), density=density, distribution="uniform", block_size=BLOCK)
    if opt == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, optimizer, st.SparseTraining(model, optimizer, method, total_steps=total, seed=seed)


def train_step(model, optimizer, sparse, step):
    x, y = batch(step)
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    sparse.step()
    return loss


# ---- schedules -----------------------------------------------------------------------


def test_schedules_by_hand():
    assert cosine_decay(0.3, 0, 75) == pytest.approx(0.3)
    assert cosine_decay(0.3, 25, 75) == pytest.approx(0.15 * (1 + math.cos(math.pi / 3)))  # 0.225
    assert cosine_decay(0.3, 75, 75) == 0.0 and cosine_decay(0.3, 80, 75) == 0.0
    assert cubic_density(0.5, 0.1, 0, 0, 100) == pytest.approx(0.5)
    assert cubic_density(0.5, 0.1, 50, 0, 100) == pytest.approx(0.1 + 0.4 * 0.125)
    assert cubic_density(0.5, 0.1, 100, 0, 100) == pytest.approx(0.1)
    rigl = st.RigL(update_every=10, drop_fraction=0.3, end=0.75)
    rigl.bind(100)
    assert rigl.end_step == 75 and rigl.drop_fraction_at(25) == pytest.approx(0.225)
    assert [t for t in range(1, 101) if rigl.is_update(t)] == [10, 20, 30, 40, 50, 60, 70]


# ---- Static ------------------------------------------------------------------------------


def test_static_never_changes_the_topology():
    model, opt, sparse = setup_run(st.Static())
    before = [m.layout for _, m in layers(model)]
    for t in range(1, 11):
        train_step(model, opt, sparse, t)
    assert [m.layout for _, m in layers(model)] == before and sparse.history == []


# ---- SET and RigL --------------------------------------------------------------------


@pytest.mark.parametrize("method", [lambda: st.SET(update_every=3), lambda: st.RigL(update_every=3, end=0.9),
                                    lambda: st.SET(update_every=2, schedule="cosine")],
                         ids=["set", "rigl", "set-cosine"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_fixed_density_updates_keep_nnz_and_zero_grown_blocks(method, opt):
    model, optimizer, sparse = setup_run(method(), total=30, opt=opt)
    nnz = {n: m.nnz for n, m in layers(model)}
    changed = 0
    for t in range(1, 31):
        before = {n: set(m.layout.block_ids().tolist()) for n, m in layers(model)}
        train_step(model, optimizer, sparse, t)
        for n, m in layers(model):
            assert m.nnz == nnz[n], f"step {t}: {n} has {m.nnz} blocks, expected {nnz[n]}"
            ids = m.layout.block_ids().tolist()
            new = [s for s, b in enumerate(ids) if b not in before[n]]
            changed += len(new)
            if new:
                state = optimizer.state[m.values]
                assert torch.count_nonzero(m.values[new]) == 0
                for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
                    if key in state:
                        assert torch.count_nonzero(state[key][new]) == 0
    assert changed > 0
    updates = {r.step for r in sparse.history}
    assert updates == {t for t in range(1, 31) if sparse.method.is_update(t)}


def test_update_counts_follow_the_drop_fraction():
    method = st.RigL(update_every=5, drop_fraction=0.3, end=0.75)
    model, opt, sparse = setup_run(method, total=40)
    for t in range(1, 31):
        train_step(model, opt, sparse, t)
    for rec in sparse.history:
        expected = int(cosine_decay(0.3, rec.step, 30) * rec.nnz)
        assert rec.pruned == rec.grown == expected


def test_prune_regrow_drops_the_k_weakest_and_grows_the_k_strongest_gradients():
    torch.manual_seed(3)
    layer = st.SparseLinear(64, 96, density=0.3, block_size=(8, 8))
    model = nn.Sequential(layer)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    topo = Topology(model, opt, torch.Generator().manual_seed(0))
    layer.capture_gradients(True)
    x = torch.randn(20, 64)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    k = 7
    layout = layer.layout
    weak = torch.sort(layer.values.detach().abs().sum((1, 2)), stable=True).indices[:k]
    dropped_ids = set(layout.block_ids()[weak].tolist())
    dense_grad = g.T @ x  # what a dense layer's weight.grad is
    norms = reference.block_norms(dense_grad, (8, 8)).flatten()
    free = [b for b in range(layout.num_blocks) if b not in set(layout.block_ids().tolist()) - dropped_ids]
    strongest = set(sorted(free, key=lambda b: -float(norms[b]))[:k])
    topo.prune_regrow(1, "0", layer, k, "gradient")
    new_ids = set(layer.layout.block_ids().tolist())
    old_ids = set(layout.block_ids().tolist())
    assert old_ids - new_ids == dropped_ids - strongest
    assert new_ids - old_ids == strongest - old_ids
    assert new_ids == (old_ids - dropped_ids) | strongest


def test_set_growth_is_random_but_reproducible():
    runs = []
    for _ in range(2):
        model, opt, sparse = setup_run(st.SET(update_every=2), total=10, seed=4)
        for t in range(1, 7):
            train_step(model, opt, sparse, t)
        runs.append([m.layout for _, m in layers(model)])
    assert runs[0] == runs[1]


# ---- SNIP ------------------------------------------------------------------------------


def test_snip_keeps_the_highest_sensitivity_blocks():
    torch.manual_seed(0)
    model = st.sparsify(small_model(), density=0.25, distribution="uniform", block_size=BLOCK)
    target = sum(m.nnz * 64 for _, m in layers(model))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparse = st.SparseTraining(model, opt, st.SNIP(), total_steps=10)
    assert all(m.density == 1.0 for _, m in layers(model))  # made dense for scoring
    init = {n: m.values.detach().clone() for n, m in layers(model)}
    x, y = batch(1)
    F.cross_entropy(model(x), y).backward()
    sens = {n: (m.values.grad * m.values).detach().abs().sum((1, 2)) for n, m in layers(model)}
    grads = {n: m.values.grad.clone() for n, m in layers(model)}
    sparse.step()
    # global top-k by a plain sort over every block of every layer (equal block areas), after
    # each layer's best block (every layer keeps one)
    everything = sorted(((float(s), n, i) for n, v in sens.items() for i, s in enumerate(v)), key=lambda e: -e[0])
    best = {(n, int(torch.argmax(v))) for n, v in sens.items()}
    rest = [(n, i) for _, n, i in everything if (n, i) not in best]
    keep = best | set(rest[:target // 64 - len(best)])
    for n, m in layers(model):
        kept_slots = set(m.layout.block_ids().tolist())
        assert kept_slots == {i for (ln, i) in keep if ln == n}  # dense layout: slot == block id
        assert torch.equal(m.values.detach(), init[n][sorted(kept_slots)])  # no update on the scoring step
        assert grads[n].shape[0] == m.layout.num_blocks
    assert sum(m.nnz for _, m in layers(model)) * 64 == target
    assert sparse.step_count == 1 and [r.event for r in sparse.history].count("snip") == len(layers(model))
    for t in range(2, 6):
        train_step(model, opt, sparse, t)
    assert sum(m.nnz for _, m in layers(model)) * 64 == target


# ---- GraNet ----------------------------------------------------------------------------


def test_granet_reaches_the_final_density_exactly_and_follows_the_cubic_schedule():
    method = st.GraNet(initial_density=0.5, final_density=0.1, prune_start=4, prune_end=24, update_every=4)
    model, opt, sparse = setup_run(method, density=0.5, total=40)
    topo = sparse.topology
    total_blocks = sum(m.layout.num_blocks for _, m in layers(model))
    nnz_before = sum(m.nnz for _, m in layers(model))
    for t in range(1, 41):
        train_step(model, opt, sparse, t)
        nnz = sum(m.nnz for _, m in layers(model))
        if method.is_update(t) and t <= 24:
            expected = round(cubic_density(0.5, 0.1, t, 4, 24) * total_blocks)
            assert nnz == min(expected, nnz_before), f"step {t}"
        if t >= 24:
            assert nnz == round(0.1 * total_blocks), f"step {t}: {nnz} blocks"
        nnz_before = nnz
    assert topo.density() == pytest.approx(round(0.1 * total_blocks) / total_blocks)
    events = {r.event for r in sparse.history}
    assert events == {"prune", "prune-regrow"}
    regrown = [r for r in sparse.history if r.event == "prune-regrow"]
    assert regrown and all(r.pruned == r.grown for r in regrown) and any(r.grown > 0 for r in regrown)
    for r in regrown:  # regeneration rate: regrow_fraction (0.5) cosine-decayed over the run (40 steps)
        assert r.grown == math.floor(cosine_decay(0.5, r.step, 40) * r.nnz), r


def test_granet_prunes_by_global_magnitude():
    method = st.GraNet(initial_density=0.5, final_density=0.2, prune_start=0, prune_end=2, update_every=2,
                       regrow_fraction=0.01)
    # every kept block's mean |w| is >= every pruned block's at the time of pruning (but each layer's best)
    model, opt, sparse = setup_run(method, density=0.5, total=10)
    train_step(model, opt, sparse, 1)
    x, y = batch(2)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    before = {n: (m.layout.block_ids().clone(), m.values.detach().clone()) for n, m in layers(model)}
    state = {n: opt.state[m.values]["momentum_buffer"].clone() for n, m in layers(model)}
    grads = {n: m.values.grad.clone() for n, m in layers(model)}
    sparse.step()
    prune = [r for r in sparse.history if r.event == "prune"]
    assert prune
    kept, pruned = [], []
    for n, m in layers(model):
        ids, vals = before[n]
        # the values sparse.step() pruned by: one SGD step with momentum and weight decay
        buf = state[n] * 0.9 + grads[n] + 1e-4 * vals
        stepped = vals - 0.05 * buf
        score = stepped.abs().mean((1, 2))
        now = set(m.layout.block_ids().tolist())
        best = int(torch.argmax(score))  # each layer keeps at least its best block
        assert ids[best].item() in now
        for s, b in enumerate(ids.tolist()):
            if s != best:
                (kept if b in now else pruned).append(float(score[s]))
    assert pruned and min(kept) >= max(pruned) - 1e-6


def test_granet_checks_the_initial_density():
    with pytest.raises(ValueError, match="initial_density"):
        setup_run(st.GraNet(0.5, 0.1, 0, 10, 5), density=0.2, total=20)


# ---- argument errors -----------------------------------------------------------------


@pytest.mark.parametrize("make,match", [
    (lambda: st.RigL(update_every=0), "update_every must be >= 1"),
    (lambda: st.RigL(drop_fraction=0.0), r"drop_fraction must be in \(0, 1\)"),
    (lambda: st.RigL(drop_fraction=1.0), r"drop_fraction must be in \(0, 1\)"),
    (lambda: st.RigL(end=1.5), r"end must be in \(0, 1\]"),
    (lambda: st.SET(update_every=2.5), "update_every must be an integer"),
    (lambda: st.SET(10, schedule="linear"), "schedule must be one of"),
    (lambda: st.SNIP(batches=0), "batches must be >= 1"),
    (lambda: st.GraNet(0.5, 0.6, 0, 10, 5), "final_density .* below initial_density"),
    (lambda: st.GraNet(0.5, 0.1, 10, 5, 5), "prune_end .* after prune_start"),
    (lambda: st.GraNet(0.5, 0.1, 0, 12, 5), "multiple of update_every"),
    (lambda: st.GraNet(0.5, 0.1, 0, 10, 5, regrow_fraction=1.0), r"regrow_fraction must be in \(0, 1\)"),
    (lambda: st.GraNet(1.5, 0.1, 0, 10, 5), r"initial_density must be in \(0, 1\]"),
])
def test_bad_method_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_schedules_that_do_not_fit_the_run():
    with pytest.raises(ValueError, match="no topology update"):
        setup_run(st.RigL(update_every=100), total=100)  # end 0.75 -> step 75 < 100
    with pytest.raises(ValueError, match="at most total_steps"):
        setup_run(st.GraNet(0.3, 0.1, 0, 50, 10), total=40)
    with pytest.raises(ValueError, match="no training"):
        setup_run(st.SNIP(batches=5), total=5)


@pytest.mark.parametrize("kind", ["linear", "conv", "conv-ties"])
def test_growth_selected_by_rows_equals_one_selection_over_the_grid(kind, monkeypatch):
    """A grid scored and selected a piece of block-rows at a time (large (1, 1) layers) grows the
    same blocks as one selection over the whole grid, ties included (to the lower index)."""
    from suptickets.methods.topology import Topology

    torch.manual_seed(0)
    if kind == "linear":
        layer = st.SparseLinear(40, 37, density=0.3, block_size=(1, 1))
        x = torch.randn(16, 40)
    else:
        layer = st.SparseConv2d(6, 11, 3, padding=1, density=0.3, block_size=(1, 1))
        x = torch.randn(4, 6, 5, 5)
        if kind == "conv-ties":
            x[:, :3] = 0  # a third of the grid scores exactly 0
    model = nn.Sequential(layer)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    topo = Topology(model, opt, torch.Generator().manual_seed(0))
    layer.capture_gradients(True)
    model(x).square().sum().backward()
    k = layer.nnz // 3
    magnitude = topo.magnitude(layer)
    drop, grow = st.ops.prune_grow(magnitude, layer.gradient_scores(), layer.layout, k)
    monkeypatch.setattr(Topology, "CHUNK_BLOCKS", 50)  # pieces of one or a few block-rows
    drop_rows, grow_rows = topo._select_by_rows(layer, k, "gradient")
    assert torch.equal(drop_rows, drop) and torch.equal(grow_rows, grow)
    # random growth by rows: k distinct blocks, none active once the dropped are out
    _, grown = topo._select_by_rows(layer, k, "random")
    active = layer.layout.mask().flatten().clone()
    active[(layer.layout.rows.long() * layer.layout.grid[1] + layer.layout.cols.long())[drop]] = False
    assert grown.numel() == k and grown.unique().numel() == k and not active[grown].any()
