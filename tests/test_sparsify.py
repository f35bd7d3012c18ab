"""sparsify / densify and the ERK / ER / uniform layer densities."""
import math

import pytest
import torch
from torch import nn

import suptickets as st
from suptickets.sparse.distribution import LayerShape, layer_densities

from helpers import TRAINED


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def test_erk_hand_computed_without_dense_layers():
    layers = [LayerShape("a", (64, 32, 3, 3)), LayerShape("b", (128, 64, 3, 3)), LayerShape("c", (256, 128))]
    got = layer_densities(layers, 0.1, "erk")
    # eps * sum(raw_l * n_l) = density * sum(n_l); raw_l = sum(shape) / prod(shape)
    n = [math.prod(layer.shape) for layer in layers]
    raw = [sum(layer.shape) / math.prod(layer.shape) for layer in layers]
    budget = sum(ni - math.floor(ni * 0.9) for ni in n)  # RigL counts n_zeros = floor(n * sparsity)
    eps = budget / sum(r * ni for r, ni in zip(raw, n))
    for layer, r in zip(layers, raw):
        assert got[layer.name] == pytest.approx(eps * r)
    assert sum(got[layer.name] * ni for layer, ni in zip(layers, n)) == pytest.approx(budget)
    assert budget == pytest.approx(0.1 * sum(n), abs=len(n))


def test_erk_moves_overfull_layers_to_dense_and_keeps_the_budget():
    layers = [LayerShape("tiny", (10, 8)), LayerShape("big", (512, 512, 3, 3)), LayerShape("mid", (256, 256))]
    got = layer_densities(layers, 0.2, "erk")
    assert got["tiny"] == 1.0
    assert all(0 < d <= 1 for d in got.values())
    total = sum(math.prod(layer.shape) for layer in layers)
    active = sum(got[layer.name] * math.prod(layer.shape) for layer in layers)
    assert active == pytest.approx(0.2 * total, rel=1e-4)
    # the larger layer gets the lower density
    assert got["big"] < got["mid"]


def test_er_ignores_kernel_dims_and_uniform_is_flat():
    layers = [LayerShape("a", (64, 32, 3, 3)), LayerShape("b", (64, 32, 5, 5))]
    er = layer_densities(layers, 0.05, "er")
    assert er["a"] == pytest.approx(er["b"])  # same (n_in + n_out) / (n_in n_out)
    erk = layer_densities(layers, 0.05, "erk")
    assert erk["a"] > erk["b"]
    assert layer_densities(layers, 0.3, "uniform") == {"a": 0.3, "b": 0.3}
    with pytest.raises(ValueError, match="distribution"):
        layer_densities(layers, 0.3, "random")


def test_sparsify_swaps_layers_and_reports_every_layer():
    model = small_cnn()
    model, table = st.sparsify(model, density=0.1, distribution="erk", block_size=(32, 32), return_table=True)
    kinds = [type(m).__name__ for m in model if isinstance(m, (nn.Linear, nn.Conv2d, st.SparseLinear,
                                                                st.SparseConv2d))]
    assert kinds == ["Conv2d", "SparseConv2d", "SparseConv2d", "SparseLinear", "Linear"]
    assert [row.name for row in table] == ["0", "2", "4", "8", "10"]
    assert "does not fit 32x3 channels" in table[0].status
    assert "does not fit 10x128 features" in table[4].status
    densities = layer_densities([LayerShape("2", (64, 32, 3, 3)), LayerShape("4", (64, 64, 3, 3)),
                                 LayerShape("8", (128, 64))], 0.1, "erk")
    for row, module in zip(table[1:4], [model[2], model[4], model[8]]):
        blocks = module.layout.num_blocks
        assert module.nnz == max(1, round(densities[row.name] * blocks))
        assert row.nnz == module.nnz * 32 * 32 and row.status == "sparse"
    text = str(table)
    assert "layer" in text and "total" in text
    assert table == st.sparsity_table(model)


def test_sparsify_keeps_the_dense_values_in_active_blocks():
    torch.manual_seed(0)
    model = small_cnn()
    weight = model[2].weight.detach().clone()
    st.sparsify(model, density=0.2, block_size=(32, 32))
    density = model[2].density
    dense = st.densify(model)
    w = dense[2].weight.detach()
    kept = w != 0
    assert torch.equal(w[kept], weight[kept])
    assert kept.float().mean().item() == pytest.approx(density)


def test_sparsify_then_densify_gives_the_same_function():
    torch.manual_seed(0)
    model = small_cnn()
    model = st.sparsify(model, density=0.2, block_size=(16, 16), unfit="unstructured", distribution="uniform")
    x = torch.randn(2, 3, 8, 8)
    y = model(x)
    assert isinstance(model[0], st.SparseConv2d) and model[0].block_size == (1, 1)
    dense = st.densify(model)
    assert all(type(m) in (nn.Conv2d, nn.Linear) for m in dense.modules() if hasattr(m, "weight"))
    torch.testing.assert_close(dense(x), y, **TRAINED)


def test_sparsify_exclude_dense_first_and_top_level_layer():
    model = small_cnn()
    model, table = st.sparsify(model, density=0.1, block_size=(16, 16), exclude=["8"], dense_first=True,
                               distribution="uniform", return_table=True)
    status = {row.name: row.status for row in table}
    assert status["0"] == "dense: dense_first" and status["8"] == "dense: excluded"
    assert status["2"] == "sparse" and model[2].density == pytest.approx(0.1, abs=0.01)
    fc = st.sparsify(nn.Linear(64, 64), density=0.25, block_size=(16, 16))
    assert isinstance(fc, st.SparseLinear) and fc.nnz == 4
    assert isinstance(st.densify(fc), nn.Linear)


def test_sparsify_bad_arguments():
    with pytest.raises(ValueError, match="density"):
        st.sparsify(small_cnn(), density=0.0)
    with pytest.raises(ValueError, match="no nn.Linear"):
        st.sparsify(nn.ReLU(), density=0.5)
    with pytest.raises(ValueError, match="unfit"):
        st.sparsify(small_cnn(), density=0.5, unfit="maybe")
    with pytest.raises(ValueError, match="distribution"):
        st.sparsify(small_cnn(), density=0.5, distribution="gaussian")
