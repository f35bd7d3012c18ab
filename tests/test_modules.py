"""SparseLinear / SparseConv2d: construction, conversion, state_dict, training, errors."""
import io
import math

import pytest
import torch
from torch import nn

import suptickets as st
from suptickets.sparse.conv import conv_weight2d

from helpers import TRAINED, tolerances


@pytest.mark.parametrize("density", [1e-6, 0.05, 0.1, 0.2, 0.5, 1.0])
def test_initial_topology_has_round_density_times_blocks(density):
    fc = st.SparseLinear(256, 512, density=density, block_size=(32, 16))
    blocks = (512 // 32) * (256 // 16)
    assert fc.nnz == max(1, round(density * blocks))
    assert fc.values.shape == (fc.nnz, 32, 16)
    conv = st.SparseConv2d(64, 32, 3, padding=1, density=density, block_size=(16, 16))
    blocks = (32 // 16) * (9 * 64 // 16)
    assert conv.nnz == max(1, round(density * blocks))


def test_initialisation_matches_the_dense_layers_bounds():
    fc = st.SparseLinear(400, 64, density=0.5, block_size=(16, 16))
    bound = 1 / math.sqrt(400)
    assert fc.values.abs().max() <= bound and fc.values.abs().max() > 0.9 * bound
    assert fc.bias.abs().max() <= bound
    conv = st.SparseConv2d(32, 64, 3, density=0.5, block_size=(16, 16))
    bound = 1 / math.sqrt(32 * 9)
    assert conv.values.abs().max() <= bound and conv.values.abs().max() > 0.9 * bound


def test_linear_from_dense_keeps_the_largest_blocks_and_to_dense_is_exact():
    dense = nn.Linear(64, 32)
    with torch.no_grad():
        dense.weight.normal_()
        dense.weight[0:16, 32:48] *= 100  # the strongest block: (0, 2)
        dense.weight[16:32, 0:16] *= 50   # the second: (1, 0)
    sparse = st.SparseLinear.from_dense(dense, density=2 / 8, block_size=(16, 16))
    assert sparse.nnz == 2
    assert torch.equal(sparse.layout.mask(), torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0]], dtype=torch.bool))
    back = sparse.to_dense()
    assert type(back) is nn.Linear
    expected = dense.weight.detach() * sparse.layout.element_mask()
    assert torch.equal(back.weight, expected) and torch.equal(back.bias, dense.bias)
    x = torch.randn(5, 64)
    torch.testing.assert_close(sparse(x), back(x), **tolerances(torch.float32))


def test_conv_from_dense_with_mask_and_to_dense_is_exact():
    dense = nn.Conv2d(32, 32, 3, stride=2, padding=1, dilation=1)
    mask = torch.rand(2, 18) < 0.3
    mask[0, 0] = True
    sparse = st.SparseConv2d.from_dense(dense, mask=mask, block_size=(16, 16))
    assert torch.equal(sparse.layout.mask(), mask)
    back = sparse.to_dense()
    assert type(back) is nn.Conv2d and back.stride == (2, 2) and back.padding == (1, 1)
    elem = sparse.layout.element_mask()
    assert torch.equal(conv_weight2d(back.weight.detach()), conv_weight2d(dense.weight.detach()) * elem)
    x = torch.randn(2, 32, 9, 9)
    torch.testing.assert_close(sparse(x), back(x), **TRAINED)
    # the 2-D view of DESIGN.md: block (r, c) is tap c // (in/bc), channels of c % (in/bc)
    w = back.weight.detach()
    r, c = int(sparse.layout.rows[0]), int(sparse.layout.cols[0])
    tap, cb = divmod(c, 2)
    ki, kj = divmod(tap, 3)
    assert torch.equal(sparse.values[0].detach(), w[r * 16:(r + 1) * 16, cb * 16:(cb + 1) * 16, ki, kj])


@pytest.mark.parametrize("make", [
    lambda: st.SparseLinear(64, 96, density=0.3, block_size=(16, 32)),
    lambda: st.SparseConv2d(32, 16, 3, padding=1, density=0.3, block_size=(16, 16)),
], ids=["linear", "conv"])
def test_state_dict_round_trip(make):
    torch.manual_seed(1)
    a = make()
    torch.manual_seed(2)
    b = make()  # other topology, maybe another nnz after a change
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    assert b.layout == a.layout
    x = torch.randn(2, 64) if isinstance(a, st.SparseLinear) else torch.randn(2, 32, 6, 6)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert set(a.state_dict()) == {"values", "layout_rows", "layout_cols", "bias"}


def test_load_state_dict_with_another_nnz_resizes_values():
    a = st.SparseLinear(64, 64, density=0.5, block_size=(16, 16))
    b = st.SparseLinear(64, 64, density=0.1, block_size=(16, 16))
    b(torch.randn(2, 64)).sum().backward()  # autograd has seen the old shape
    b.load_state_dict(a.state_dict())
    assert b.nnz == a.nnz and isinstance(b.values, nn.Parameter)
    x = torch.randn(3, 64)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    b(x).sum().backward()
    assert b.values.grad.shape == a.values.shape


def test_load_state_dict_rejects_an_invalid_layout():
    a = st.SparseLinear(64, 64, density=0.5, block_size=(16, 16))
    sd = a.state_dict()
    sd["layout_cols"] = sd["layout_cols"].clone().fill_(9)
    with pytest.raises(RuntimeError, match="invalid layout"):
        a.load_state_dict(sd)


def test_training_with_an_optimizer_learns():
    torch.manual_seed(0)
    model = nn.Sequential(st.SparseConv2d(16, 32, 3, padding=1, density=0.5, block_size=(16, 16)), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), st.SparseLinear(32, 16, density=0.5,
                                                                                  block_size=(16, 16)))
    x, y = torch.randn(32, 16, 8, 8), torch.randint(0, 16, (32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_parameter_memory_at_density_0_1():
    fc = st.SparseLinear(1024, 4096, density=0.1, block_size=(32, 32))
    dense = sum(p.numel() for p in nn.Linear(1024, 4096).parameters())
    assert sum(p.numel() for p in fc.parameters()) <= 0.15 * dense


def test_unbatched_conv_input():
    conv = st.SparseConv2d(16, 16, 3, padding="same", density=0.5, block_size=(8, 8))
    x = torch.randn(16, 7, 7)
    torch.testing.assert_close(conv(x), conv(x[None])[0])
    assert conv.padding == (1, 1)


@pytest.mark.parametrize("make, error, match", [
    (lambda: st.SparseLinear(100, 64, density=0.1, block_size=(32, 32)), ValueError, "in_features=100"),
    (lambda: st.SparseLinear(64, 100, density=0.1, block_size=(32, 32)), ValueError, "out_features=100"),
    (lambda: st.SparseLinear(64, 64, density=0.0), ValueError, r"density must be in \(0, 1\]"),
    (lambda: st.SparseLinear(64, 64, density=1.5), ValueError, r"density must be in \(0, 1\]"),
    (lambda: st.SparseLinear(64, 64, density="x"), TypeError, "density"),
    (lambda: st.SparseLinear(64, 64, density=0.5, block_size=(0, 8)), ValueError, "block_size"),
    (lambda: st.SparseConv2d(3, 64, 3, density=0.1, block_size=(32, 32)), ValueError, "in_channels=3"),
    (lambda: st.SparseConv2d(64, 64, 3, groups=2, density=0.1), ValueError, "groups"),
    (lambda: st.SparseConv2d(64, 64, 3, padding_mode="reflect", density=0.1), ValueError, "padding_mode"),
    (lambda: st.SparseConv2d(64, 64, 3, padding=-1, density=0.1), ValueError, "padding"),
])
def test_bad_arguments_are_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_device_and_dtype_mismatch_are_clear_errors():
    fc = st.SparseLinear(32, 32, density=0.5, block_size=(16, 16))
    with pytest.raises(TypeError, match="dtype"):
        fc(torch.randn(2, 32, dtype=torch.float64))
    fc64 = fc.double()
    assert fc64.values.dtype == torch.float64 and fc64.layout_rows.dtype == torch.int32
    assert fc64(torch.randn(2, 32, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match="device"):
        fc64(torch.randn(2, 32, dtype=torch.float64, device="meta"))


def test_from_dense_bad_arguments():
    with pytest.raises(TypeError, match="nn.Linear"):
        st.SparseLinear.from_dense(nn.Conv2d(8, 8, 1))
    with pytest.raises(ValueError, match="boolean block grid"):
        st.SparseLinear.from_dense(nn.Linear(32, 32), mask=torch.ones(3, 3, dtype=torch.bool), block_size=(16, 16))
    with pytest.raises(ValueError, match="either density or mask"):
        st.SparseLinear.from_dense(nn.Linear(32, 32), density=0.5, mask=torch.ones(2, 2, dtype=torch.bool),
                                   block_size=(16, 16))


def test_empty_batch_gives_empty_outputs_and_zero_gradients():
    fc = st.SparseLinear(64, 32, density=0.5, block_size=(16, 16))
    x = torch.randn(0, 64, requires_grad=True)
    y = fc(x)
    y.sum().backward()
    assert y.shape == (0, 32) and x.grad.shape == (0, 64)
    assert torch.equal(fc.values.grad, torch.zeros_like(fc.values)) and torch.equal(fc.bias.grad, torch.zeros(32))
    conv = st.SparseConv2d(16, 16, 3, padding=1, density=0.5, block_size=(8, 8))
    x = torch.randn(0, 16, 5, 5, requires_grad=True)
    y = conv(x)
    y.sum().backward()
    assert y.shape == (0, 16, 5, 5) and torch.equal(conv.values.grad, torch.zeros_like(conv.values))


@pytest.mark.parametrize("backend", ["cpu", "reference", "triton"])
@pytest.mark.parametrize("make, shape", [
    (lambda: st.SparseLinear(32, 32, density=0.5, block_size=(16, 16)), (6, 32)),
    (lambda: st.SparseLinear(32, 32, density=0.5, block_size=(16, 16)), (2, 3, 32)),
    (lambda: st.SparseConv2d(16, 32, 3, padding=1, density=0.5, block_size=(16, 16)), (2, 16, 5, 5)),
])
def test_output_allows_in_place_ops_under_autograd(make, shape, backend, force_backend):
    """``nn.ReLU(inplace=True)`` after a sparse layer (VGG's classifier does it): the output is
    not a view, and the gradients equal those of the out-of-place ReLU."""
    if backend == "triton":
        pytest.importorskip("triton")
    force_backend(backend)
    layer = make()
    x = torch.randn(shape, requires_grad=True)
    y = layer(x)
    torch.relu_(y)  # raised for the C++ and Triton ops while their outputs were views
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    grads = [x.grad.clone(), layer.values.grad.clone()]
    x.grad = None
    layer.values.grad = None
    y = torch.relu(layer(x))
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    torch.testing.assert_close(grads[0], x.grad)
    torch.testing.assert_close(grads[1], layer.values.grad)
