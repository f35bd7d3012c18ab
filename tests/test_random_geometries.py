"""Random conv geometries, block shapes and topologies against the reference (seeded)."""
import random

import pytest
import torch

import suptickets as st
from suptickets.ops import reference

from helpers import tolerances

CASES = 60


def random_case(seed):
    rng = random.Random(seed)
    br, bc = rng.choice([1, 1, 2, 4, 8, 16, 32]), rng.choice([1, 1, 2, 4, 8, 16, 32])
    cin, cout = bc * rng.randint(1, 3), br * rng.randint(1, 3)
    kh, kw = rng.choice([1, 2, 3, 5]), rng.choice([1, 3])
    sh, sw = rng.choice([1, 1, 2, 3]), rng.choice([1, 2])
    dh, dw = rng.choice([1, 2]), rng.choice([1, 2])
    ph, pw = rng.randint(0, 3), rng.randint(0, 2)
    h = max(dh * (kh - 1) + 1 - 2 * ph, 1) + rng.randint(0, 9)
    w = max(dw * (kw - 1) + 1 - 2 * pw, 1) + rng.randint(0, 40)
    batch = rng.choice([1, 2, 3, 17])
    grid = (cout // br, kh * kw * cin // bc)
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(grid, generator=g) < rng.choice([0.05, 0.3, 0.7, 1.0])
    if not mask.any():
        mask[0, 0] = True
    layout = st.BlockLayout.from_mask(mask, (br, bc), (cout, kh * kw * cin))
    geom = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))
    return layout, torch.randn(batch, cin, h, w, generator=g), torch.randn(layout.nnz, br, bc, generator=g), \
        torch.randn(cout, generator=g), geom


@pytest.mark.parametrize("seed", range(CASES))
def test_random_conv_matches_reference(seed):
    layout, x, values, bias, geom = random_case(seed)
    outs = []
    for fn in (st.ops.bsr_conv2d, reference.bsr_conv2d):
        xs, vs, bs = (t.clone().requires_grad_() for t in (x, values, bias))
        y = fn(xs, vs, layout, bs, **geom)
        grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
        y.backward(grad)
        outs.append((y.detach(), xs.grad, vs.grad, bs.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, **tolerances(torch.float32))
