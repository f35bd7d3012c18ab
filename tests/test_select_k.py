"""select_k (the plain selection): the C++ radix selection against ops/reference.py and a
Python sort on (score, index), lowest and highest, with and without skipped entries, ties,
outliers that mislead the sampling, and errors."""
import pytest
import torch

import suptickets as st
from suptickets.ops import reference


def plain(scores, k, largest, skip):
    """The k lowest (highest) by a Python sort on (score, index), ascending indices."""
    flat = scores.tolist()
    free = [i for i in range(len(flat)) if skip is None or not bool(skip[i])]
    key = (lambda i: (-flat[i], i)) if largest else (lambda i: (flat[i], i))
    return sorted(sorted(free, key=key)[:k])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("n", [1, 37, 5000, 70001])
@pytest.mark.parametrize("largest", [False, True], ids=["lowest", "highest"])
@pytest.mark.parametrize("with_skip", [False, True], ids=["all", "skip"])
def test_select_k_matches_reference_and_plain_sort(dtype, n, largest, with_skip):
    g = torch.Generator().manual_seed(n)
    scores = torch.randn(n, dtype=dtype, generator=g)
    scores[::5] = 0.5  # exact ties
    skip = torch.rand(n, generator=g) < 0.3 if with_skip else None
    free = n - (int(skip.sum()) if skip is not None else 0)
    for k in sorted({0, min(1, free), free // 3, free}):
        got = st.ops.select_k(scores, k, largest, skip)
        ref = reference.select_k(scores, k, largest, skip)
        assert got.dtype == torch.long and torch.equal(got, ref)
        if n <= 5000:
            assert got.tolist() == plain(scores, k, largest, skip)


def test_non_contiguous_scores():
    base = torch.randn(4000, 3)
    scores = base[:, 1]
    assert not scores.is_contiguous()
    assert torch.equal(st.ops.select_k(scores, 100, True), reference.select_k(scores.contiguous(), 100, True))


@pytest.mark.parametrize("k", [1, 30000, 99999])
def test_selection_is_exact_when_the_sample_misleads(k):
    """Every 16th score (where the selection samples) is an outlier, so the sampled bracket
    misses the k-th score and the exact radix selection has to take over."""
    n = 100000
    scores = torch.rand(n, dtype=torch.float64)
    scores[::16] += 100.0
    assert torch.equal(st.ops.select_k(scores, k), torch.sort(scores, stable=True).indices[:k].sort().values)
    scores[::16] -= 200.0
    assert torch.equal(st.ops.select_k(scores, k), torch.sort(scores, stable=True).indices[:k].sort().values)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_nan_or_inf_scores_are_errors(backend, force_backend):
    force_backend(backend)
    for bad in (float("nan"), float("inf")):
        scores = torch.rand(50)
        scores[7] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            st.ops.select_k(scores, 3)


@pytest.mark.parametrize("call, match", [
    (lambda: st.ops.select_k(torch.rand(3, 3), 1), "must be 1-D"),
    (lambda: st.ops.select_k(torch.rand(5), 6), r"k must be in \[0, 5\]"),
    (lambda: st.ops.select_k(torch.rand(5), -1), r"k must be in \[0, 5\]"),
    (lambda: st.ops.select_k(torch.rand(5), 4, skip=torch.tensor([1, 1, 0, 0, 0], dtype=torch.bool)),
     r"k must be in \[0, 3\] \(entries not skipped\)"),
    (lambda: st.ops.select_k(torch.rand(5), 1, skip=torch.ones(4, dtype=torch.bool)), "skip must be a bool tensor"),
    (lambda: st.ops.select_k(torch.rand(5), 1, skip=torch.ones(5)), "skip must be a bool tensor"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_select_k_operator_passes_opcheck():
    scores = torch.randn(300, dtype=torch.float64)
    skip = torch.rand(300) < 0.2
    torch.library.opcheck(torch.ops.suptickets.select_k.default, (scores, 20, True, skip))
    torch.library.opcheck(torch.ops.suptickets.select_k.default, (scores.float(), 5, False, None))
