"""prune_grow (the fused selection) and BlockLayout.replace_blocks: the C++ radix selection
against ops/reference.py and against a plain sort, ties, extremes and errors."""
import pytest
import torch

import suptickets as st
from suptickets.ops import reference

from helpers import TOPOLOGIES, make_layout


def plain_selection(drop_scores, grow_scores, layout, k_drop, k_grow):
    """The k weakest active and k strongest free blocks by a Python sort on (score, index)."""
    order = sorted(range(layout.nnz), key=lambda s: (float(drop_scores[s]), s))
    drop = sorted(order[:k_drop])
    ids = layout.block_ids().tolist()
    active = set(ids) - {ids[s] for s in drop}
    flat = grow_scores.flatten().tolist()
    free = [b for b in range(len(flat)) if b not in active]
    grow = sorted(sorted(free, key=lambda b: (-flat[b], b))[:k_grow])
    return drop, grow


def run_both(drop_scores, grow_scores, layout, k_drop, k_grow=None):
    got = st.ops.prune_grow(drop_scores, grow_scores, layout, k_drop, k_grow)
    k_grow = k_drop if k_grow is None else k_grow
    ref = reference.prune_grow(drop_scores, grow_scores, layout.rows, layout.cols, k_drop, k_grow)
    return got, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("block", [(1, 1), (4, 4), (16, 32)], ids=["1x1", "4x4", "16x32"])
def test_prune_grow_matches_reference_and_plain_sort(block, topology, dtype):
    shape = (24 * block[0], 20 * block[1])
    layout = make_layout(shape, block, topology, seed=3)
    drop_scores = torch.rand(layout.nnz, dtype=dtype)
    grow_scores = torch.randn(layout.grid, dtype=dtype)
    for k in sorted({0, 1, layout.nnz // 3, layout.nnz}):
        (drop, grow), (rdrop, rgrow) = run_both(drop_scores, grow_scores, layout, k)
        assert drop.dtype == grow.dtype == torch.long
        assert torch.equal(drop, rdrop) and torch.equal(grow, rgrow)
        pdrop, pgrow = plain_selection(drop_scores, grow_scores, layout, k, k)
        assert drop.tolist() == pdrop and grow.tolist() == pgrow


def test_ties_go_to_the_lower_index():
    layout = st.BlockLayout.from_mask(torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0]], dtype=torch.bool), (2, 2))
    drop_scores = torch.tensor([0.5, 0.1, 0.1, 0.1])  # slots 1, 2, 3 tie
    grow_scores = torch.tensor([[9.0, 3.0, 0.0, 3.0], [3.0, 0.0, 0.0, 3.0]])
    drop, grow = st.ops.prune_grow(drop_scores, grow_scores, layout, 2)
    assert drop.tolist() == [1, 2]  # the two lower slots among the tie
    # free after dropping slots 1 (block 2) and 2 (block 5): 1, 2, 3, 4, 5, 7; the 3.0s are 1, 3, 4, 7
    assert grow.tolist() == [1, 3]


def test_all_equal_scores_select_lowest_indices():
    layout = make_layout((64, 64), (4, 4), "half")
    drop, grow = st.ops.prune_grow(torch.zeros(layout.nnz), torch.ones(layout.grid), layout, 5)
    assert drop.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(grow, reference.prune_grow(torch.zeros(layout.nnz), torch.ones(layout.grid), layout.rows,
                                                  layout.cols, 5, 5)[1])


def test_negative_zero_and_negative_scores():
    layout = make_layout((32, 32), (4, 4), "half")
    drop_scores = torch.randn(layout.nnz)
    drop_scores[::3] = -0.0
    drop_scores[1::3] = 0.0
    grow_scores = torch.randn(layout.grid)
    (drop, grow), (rdrop, rgrow) = run_both(drop_scores, grow_scores, layout, layout.nnz // 2)
    assert torch.equal(drop, rdrop) and torch.equal(grow, rgrow)


def test_a_dropped_block_can_come_back():
    layout = st.BlockLayout.from_mask(torch.tensor([[True, False]]), (1, 1))
    drop, grow = st.ops.prune_grow(torch.tensor([1.0]), torch.tensor([[5.0, 1.0]]), layout, 1)
    assert drop.tolist() == [0] and grow.tolist() == [0]


def test_large_unstructured_layer_matches_reference():
    layout = st.BlockLayout.random((1000, 600), (1, 1), 60000)
    drop_scores = torch.rand(layout.nnz)
    grow_scores = torch.rand(layout.grid)
    grow_scores[::7] = 0.25  # many exact ties across selection chunks
    for k in (1, 1000, 18000, 60000):
        (drop, grow), (rdrop, rgrow) = run_both(drop_scores, grow_scores, layout, k)
        assert torch.equal(drop, rdrop) and torch.equal(grow, rgrow)


def test_different_k_for_drop_and_grow_and_drop_only():
    layout = make_layout((64, 64), (8, 8), "half")
    ds, gs = torch.rand(layout.nnz), torch.rand(layout.grid)
    (drop, grow), (rdrop, rgrow) = run_both(ds, gs, layout, 3, 7)
    assert len(drop) == 3 and len(grow) == 7 and torch.equal(drop, rdrop) and torch.equal(grow, rgrow)
    drop, grow = st.ops.prune_grow(ds, None, layout, 4, 0)
    assert len(grow) == 0 and torch.equal(drop, torch.sort(ds, stable=True).indices[:4].sort().values)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_nan_or_inf_scores_are_errors(backend, force_backend):
    force_backend(backend)
    layout = make_layout((32, 32), (4, 4), "half")
    ds, gs = torch.rand(layout.nnz), torch.rand(layout.grid)
    bad = ds.clone()
    bad[2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        st.ops.prune_grow(bad, gs, layout, 1)
    bad = gs.clone()
    bad[1, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        st.ops.prune_grow(ds, bad, layout, 1)


def test_bad_arguments():
    layout = make_layout((32, 32), (4, 4), "half")
    ds, gs = torch.rand(layout.nnz), torch.rand(layout.grid)
    with pytest.raises(ValueError, match="k_drop"):
        st.ops.prune_grow(ds, gs, layout, layout.nnz + 1)
    with pytest.raises(ValueError, match="k_grow"):
        st.ops.prune_grow(ds, gs, layout, 0, layout.num_blocks - layout.nnz + 1)
    with pytest.raises(ValueError, match="grow_scores"):
        st.ops.prune_grow(ds, torch.rand(3, 3), layout, 1)
    with pytest.raises(ValueError, match="drop_scores"):
        st.ops.prune_grow(ds[:-1], gs, layout, 1)


def test_full_layout_can_only_regrow_what_it_drops():
    layout = st.BlockLayout.dense((16, 16), (4, 4))
    ds, gs = torch.rand(16), torch.rand(4, 4)
    drop, grow = st.ops.prune_grow(ds, gs, layout, 3)
    assert torch.equal(drop, grow)  # slot s of a dense layout is block s


def test_prune_grow_opcheck():
    layout = make_layout((32, 32), (4, 4), "half")
    args = (torch.rand(layout.nnz), torch.rand(layout.grid), layout.rows, layout.cols, 3, 4)
    torch.library.opcheck(torch.ops.suptickets.prune_grow.default, args, test_utils=("test_schema", "test_faketensor"))


# ---- BlockLayout.replace_blocks ------------------------------------------------------


def test_replace_blocks_renumbers_slots():
    layout = make_layout((48, 40), (4, 4), "half", seed=5)
    ds, gs = torch.rand(layout.nnz), torch.rand(layout.grid)
    drop, grow = st.ops.prune_grow(ds, gs, layout, 6)
    new, src = layout.replace_blocks(drop, grow)
    mask = layout.mask().flatten().clone()
    mask[layout.block_ids()[drop]] = False
    mask[grow] = True
    assert new == st.BlockLayout.from_mask(mask.view(layout.grid), (4, 4), layout.shape)
    old_ids, new_ids = layout.block_ids(), new.block_ids()
    for s in range(new.nnz):
        if src[s] >= 0:
            assert old_ids[src[s]] == new_ids[s] and int(src[s]) not in drop.tolist()
        else:
            assert int(new_ids[s]) in grow.tolist()
    assert int((src < 0).sum()) == len(grow)
    # derived index tensors are what a fresh layout derives
    fresh = st.BlockLayout(new.shape, new.block_size, new.rows, new.cols)
    for name in ("row_ptr", "col_ptr", "col_perm"):
        assert torch.equal(getattr(new, name), getattr(fresh, name))


def test_replace_blocks_changes_nnz():
    layout = make_layout((32, 32), (4, 4), "half")
    new, src = layout.replace_blocks(drop=torch.tensor([0, 2]))
    assert new.nnz == layout.nnz - 2 and torch.equal(src, torch.tensor([1] + list(range(3, layout.nnz))))
    free = (~layout.mask().flatten()).nonzero().squeeze(1)[:3]
    new, src = layout.replace_blocks(grow=free)
    assert new.nnz == layout.nnz + 3 and int((src < 0).sum()) == 3


def test_replace_blocks_errors():
    layout = make_layout((32, 32), (4, 4), "half")
    active = layout.block_ids()[:1]
    with pytest.raises(ValueError, match="already active"):
        layout.replace_blocks(grow=active)
    with pytest.raises(ValueError, match="drop slots"):
        layout.replace_blocks(drop=torch.tensor([layout.nnz]))
    with pytest.raises(ValueError, match="ascending"):
        free = (~layout.mask().flatten()).nonzero().squeeze(1)[:2]
        layout.replace_blocks(grow=free.flip(0))
    with pytest.raises(ValueError, match="repeat"):
        layout.replace_blocks(drop=torch.tensor([1, 1]))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_layout_index_and_merge_kernels_match_reference(topology):
    layout = make_layout((96, 80), (4, 4), topology, seed=7)
    for got, ref in zip(st.ops.layout_index(layout.rows, layout.cols, layout.grid),
                        reference.layout_index(layout.rows, layout.cols, layout.grid)):
        assert got.dtype == torch.int32 and torch.equal(got, ref)
    drop, grow = st.ops.prune_grow(torch.rand(layout.nnz), torch.rand(layout.grid), layout, layout.nnz // 2)
    free = (~layout.mask().flatten()).nonzero().squeeze(1)[::2]
    for d, g in ((drop, grow), (drop, grow[:0]), (drop[:0], free)):
        got = st.ops.merge_blocks(layout.rows, layout.cols, d, g, layout.grid[1])
        ref = reference.merge_blocks(layout.rows, layout.cols, d, g, layout.grid[1])
        for a, b in zip(got, ref):
            assert a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize("merge", [st.ops.merge_blocks, reference.merge_blocks], ids=["kernel", "reference"])
def test_merge_blocks_errors(merge):
    layout = make_layout((32, 32), (4, 4), "half")
    rows, cols, gc = layout.rows, layout.cols, layout.grid[1]
    none = torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError, match="already active"):
        merge(rows, cols, none, layout.block_ids()[:1], gc)
    with pytest.raises(ValueError, match="must lie in"):
        merge(rows, cols, torch.tensor([layout.nnz]), none, gc)
    with pytest.raises(ValueError, match="ascending"):
        merge(rows, cols, torch.tensor([2, 1]), none, gc)
