import pytest
import torch

import suptickets as st


def test_from_mask_round_trip_and_derived_indices():
    mask = torch.rand(6, 5) < 0.4
    mask[2] = False
    layout = st.BlockLayout.from_mask(mask, (4, 8))
    assert layout.shape == (24, 40) and layout.grid == (6, 5) and layout.block_size == (4, 8)
    assert torch.equal(layout.mask(), mask)
    assert layout.nnz == int(mask.sum()) and layout.rows.dtype == torch.int32 and layout.cols.dtype == torch.int32
    # slots are row-major
    key = layout.rows.long() * 5 + layout.cols.long()
    assert torch.equal(key, key.sort().values)
    # CSR pointer: slots of block-row r
    for r in range(6):
        slots = range(int(layout.row_ptr[r]), int(layout.row_ptr[r + 1]))
        assert all(int(layout.rows[s]) == r for s in slots)
        assert len(slots) == int(mask[r].sum())
    # column walk: slots of column c, in row order
    for c in range(5):
        perm = layout.col_perm[int(layout.col_ptr[c]):int(layout.col_ptr[c + 1])].long()
        assert torch.all(layout.cols[perm] == c)
        assert torch.equal(layout.rows[perm], layout.rows[perm].sort().values)
        assert len(perm) == int(mask[:, c].sum())
    assert layout.element_mask().shape == (24, 40)
    assert torch.equal(layout.element_mask()[::4, ::8], mask)


def test_layout_is_immutable():
    layout = st.BlockLayout.random((32, 32), (8, 8), 5)
    with pytest.raises(AttributeError, match="immutable"):
        layout.rows = torch.zeros(5, dtype=torch.int32)


def test_random_layout_has_exact_nnz_and_distinct_blocks():
    layout = st.BlockLayout.random((64, 128), (16, 32), 7, generator=torch.Generator().manual_seed(3))
    assert layout.nnz == 7 and int(layout.mask().sum()) == 7
    assert layout.density == pytest.approx(7 / 16)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(shape=(30, 32), block_size=(8, 8), rows=[0], cols=[0]), ValueError, "does not divide"),
        (dict(shape=(32, 32), block_size=(0, 8), rows=[0], cols=[0]), ValueError, "positive"),
        (dict(shape=(32, 32), block_size=(8, 8), rows=[0, 1], cols=[0]), ValueError, "one column per"),
        (dict(shape=(32, 32), block_size=(8, 8), rows=[4], cols=[0]), ValueError, "block grid"),
        (dict(shape=(32, 32), block_size=(8, 8), rows=[1, 0], cols=[0, 0]), ValueError, "row-major"),
        (dict(shape=(32, 32), block_size=(8, 8), rows=[1, 1], cols=[2, 2]), ValueError, "repeats"),
    ],
)
def test_bad_layouts_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        st.BlockLayout(**kwargs)


def test_from_mask_checks_grid_shape():
    with pytest.raises(ValueError, match="block grid"):
        st.BlockLayout.from_mask(torch.ones(3, 3, dtype=torch.bool), (8, 8), shape=(32, 32))
