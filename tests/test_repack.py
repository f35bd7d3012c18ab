"""repack: one function moves values and optimizer state to a new topology."""
import pytest
import torch
import torch.nn.functional as F

import suptickets as st
from suptickets.sparse import repack


def trained_layer(opt_cls, **opt_kw):
    layer = st.SparseLinear(32, 48, density=0.4, block_size=(8, 8))
    opt = opt_cls(layer.parameters(), **opt_kw)
    for _ in range(2):
        x = torch.randn(6, 32)
        layer(x).square().sum().backward()
        opt.step()
        opt.zero_grad()
    return layer, opt


@pytest.mark.parametrize("opt_cls,kw,keys", [
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, ["momentum_buffer"]),
    (torch.optim.Adam, {"lr": 0.01}, ["exp_avg", "exp_avg_sq"]),
    (torch.optim.AdamW, {"lr": 0.01, "amsgrad": True}, ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
], ids=["sgd", "adam", "adamw-amsgrad"])
def test_repack_same_nnz_moves_values_and_state(opt_cls, kw, keys):
    layer, opt = trained_layer(opt_cls, **kw)
    param = layer.values
    old_values = layer.values.detach().clone()
    old_state = {k: opt.state[param][k].clone() for k in keys}
    layout = layer.layout
    drop, grow = st.ops.prune_grow(torch.rand(layout.nnz), torch.rand(layout.grid), layout, 5)
    new_layout, src = layout.replace_blocks(drop, grow)
    repack(layer, new_layout, src, opt)
    assert layer.values is param and layer.layout == new_layout and layer.values.grad is None
    grown = src < 0
    assert int(grown.sum()) == 5
    assert torch.equal(layer.values[~grown], old_values[src[~grown]])
    assert torch.count_nonzero(layer.values[grown]) == 0
    for k in keys:
        assert torch.equal(opt.state[param][k][~grown], old_state[k][src[~grown]])
        assert torch.count_nonzero(opt.state[param][k][grown]) == 0
    if "step" in opt.state[param]:
        assert float(opt.state[param]["step"]) == 2
    # training goes on
    layer(torch.randn(3, 32)).sum().backward()
    opt.step()


def test_repack_changing_nnz_gives_a_new_parameter_known_to_the_optimizer():
    layer, opt = trained_layer(torch.optim.SGD, lr=0.1, momentum=0.9)
    old = layer.values
    momentum = opt.state[old]["momentum_buffer"].clone()
    new_layout, src = layer.layout.replace_blocks(drop=torch.tensor([0, 3, 4]))
    loss_holder = layer(torch.randn(2, 32)).sum()  # a graph that still references the old parameter
    repack(layer, new_layout, src, opt)
    assert layer.values is not old and layer.values.shape[0] == new_layout.nnz
    assert any(p is layer.values for p in opt.param_groups[0]["params"])
    assert not any(p is old for p in opt.param_groups[0]["params"])
    assert torch.equal(opt.state[layer.values]["momentum_buffer"], momentum[src])
    del loss_holder
    y = layer(torch.randn(4, 32))
    F.mse_loss(y, torch.zeros_like(y)).backward()
    assert layer.values.grad.shape == layer.values.shape
    opt.step()


def test_repack_errors():
    layer = st.SparseLinear(16, 16, density=0.5, block_size=(4, 4))
    layout, src = layer.layout.replace_blocks(drop=torch.tensor([0]))
    with pytest.raises(ValueError, match="one entry per slot"):
        repack(layer, layout, src[:-1])
    with pytest.raises(ValueError, match="old slot"):
        repack(layer, layout, src + 100)
