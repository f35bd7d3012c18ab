"""torch.compile over the custom ops: one small model, forward and backward, no graph break."""
import pytest
import torch
from torch import nn

import suptickets as st

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("block", [(16, 16), (1, 1)], ids=["16x16", "1x1"])
def test_compiled_model_matches_eager_forward_and_backward(block):
    torch.manual_seed(0)
    model = nn.Sequential(st.SparseConv2d(16, 32, 3, padding=1, density=0.5, block_size=block), nn.ReLU(),
                          nn.Flatten(), st.SparseLinear(32 * 6 * 6, 16, density=0.25, block_size=block))
    x = torch.randn(4, 16, 6, 6)
    compiled = torch.compile(model, fullgraph=True)
    y_eager = model(x)
    y_eager.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    y = compiled(x)
    y.sum().backward()
    torch.testing.assert_close(y, y_eager)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g)
