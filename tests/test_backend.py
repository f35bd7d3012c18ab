"""The dispatch table (``suptickets.ops.backend``): what each backend takes, the one rule of
``SUPTICKETS_BACKEND``, and that no other file decides a backend."""
import os
import re
import subprocess
import sys

import pytest
import torch

import suptickets as st
from suptickets.ops import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_op_has_an_entry_and_the_reference():
    assert set(backend.TABLE) == {"bsr_linear", "bsr_conv2d", "block_scores", "linear_grad_scores",
                                  "conv2d_grad_scores", "prune_grow", "select_k", "superpose", "layout_index",
                                  "merge_blocks", "gather_slots"}
    x = torch.empty(0)
    for op in backend.TABLE:
        assert backend.eligible(op, "reference", x) is None


@pytest.mark.parametrize("op, block, dtype, expected", [
    ("bsr_linear", (16, 16), torch.float32, ["cpu", "triton", "dense"]),
    ("bsr_linear", (4, 8), torch.float64, ["cpu", "dense"]),
    ("bsr_linear", (1, 1), torch.float32, ["cpu", "dense"]),
    ("bsr_conv2d", (32, 16), torch.float16, ["triton", "dense"]),
    ("block_scores", (1, 1), torch.float32, ["cpu", "triton"]),
    ("linear_grad_scores", (1, 1), torch.float32, ["cpu"]),
    ("prune_grow", None, torch.float32, ["cpu"]),
    ("superpose", (3, 3), torch.float64, ["cpu"]),
])
def test_implementations_follow_the_table(op, block, dtype, expected):
    got = backend.implementations(op, torch.empty(0, dtype=dtype), block_size=block)
    if not st.ops._triton.interpreting():
        expected = [b for b in expected if b != "triton"]
    assert got == expected


def test_reasons_name_what_a_backend_cannot_take():
    x = torch.empty(0)
    assert backend.eligible("bsr_linear", "cpu", x, block_size=(1, 1)) is None  # the element kernels
    assert "(1, 1)" in backend.eligible("bsr_linear", "triton", x, block_size=(1, 1), forced=True)
    assert "float16" in backend.eligible("bsr_linear", "cpu", x.half(), block_size=(16, 16))
    assert backend.eligible("bsr_linear", "cpu", x.bfloat16(), block_size=(1, 1)) is None
    assert "bfloat16" in backend.eligible("block_scores", "cpu", x.bfloat16(), block_size=(16, 16))
    assert "powers of two >= 16" in backend.eligible("bsr_linear", "triton", x, block_size=(8, 8), forced=True)
    assert "no triton kernel" in backend.eligible("prune_grow", "triton", x)
    # CPU tensors go to Triton only when it is asked for by name
    assert "TRITON_INTERPRET" in backend.eligible("bsr_linear", "triton", x, block_size=(16, 16))


def test_auto_falls_back_to_the_reference_and_forcing_refuses(force_backend):
    x = torch.empty(0, dtype=torch.float16)
    with pytest.warns(backend.FallbackWarning, match=r"bsr_linear in float16 with 16x16 blocks runs the dense path"):
        assert backend.choose("bsr_linear", x, block_size=(16, 16)) == "dense"
    with pytest.warns(backend.FallbackWarning, match=r"block_scores in float16 .* runs the plain-PyTorch reference"):
        assert backend.choose("block_scores", x, block_size=(16, 16)) == "reference"
    force_backend("cpu")
    with pytest.raises(RuntimeError, match=r"SUPTICKETS_BACKEND=cpu.*float16"):
        backend.choose("bsr_linear", x, block_size=(16, 16))
    force_backend("triton")  # prune_grow has no Triton kernel: it runs as under auto
    assert backend.choose("prune_grow", torch.empty(0)) == "cpu"
    force_backend("reference")
    assert backend.choose("block_scores", torch.empty(0), block_size=(4, 4)) == "reference"
    # exact index ops ignore the variable
    assert backend.choose("layout_index", torch.empty(0, dtype=torch.int32)) == "cpu"


def test_the_fallback_warning_fires_once_per_layer_and_reason_and_never_for_a_supported_call():
    import warnings
    layer = st.SparseLinear(64, 32, density=0.2, block_size=(1, 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer(torch.randn(5, 64))                                       # float32: the C++ kernels
        layer.to(torch.bfloat16)(torch.randn(5, 64, dtype=torch.bfloat16))  # bf16: the C++ kernels too
        layer.to(torch.float64)
        half = st.SparseLinear(64, 48, density=0.2, block_size=(1, 1)).half()
        for _ in range(3):
            half(torch.randn(5, 64, dtype=torch.float16))               # no kernel: warned once
        st.SparseLinear(64, 24, density=0.2, block_size=(1, 1)).half()(torch.randn(5, 64).half())  # another layer
    fallbacks = [w for w in caught if issubclass(w.category, backend.FallbackWarning)]
    assert len(fallbacks) == 2, [str(w.message) for w in caught]
    assert "(48, 64) weight in float16 with 1x1 blocks" in str(fallbacks[0].message)
    assert "cpu: dtype torch.float16" in str(fallbacks[0].message) and "triton" not in str(fallbacks[0].message)
    with warnings.catch_warnings(record=True) as caught:  # nor on meta tensors (shapes only), nor when asked for
        warnings.simplefilter("always")
        backend.choose("bsr_linear", torch.empty(0, dtype=torch.float16, device="meta"), block_size=(2, 2))
    assert not caught


def test_unknown_op_is_an_error():
    with pytest.raises(ValueError, match="unknown op"):
        backend.choose("bsr_matmul", torch.empty(0))


def test_the_backend_decision_is_made_in_the_table_only():
    """No file but ops/backend.py reads SUPTICKETS_BACKEND or compares backend names."""
    decision = re.compile(r"SUPTICKETS_BACKEND\"|==\s*\"(cpu|triton|reference)\"|choose_for|triton_reason")
    offenders = []
    for folder in ("python/suptickets", "suptickets_kernels"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                path = os.path.join(dirpath, name)
                if name.endswith(".py") and not path.endswith(os.path.join("ops", "backend.py")):
                    with open(path) as f:
                        offenders += [f"{path}:{i}" for i, line in enumerate(f, 1) if decision.search(line)]
    assert not offenders, offenders


@pytest.mark.slow
def test_the_build_ships_both_packages(tmp_path):
    """What `pip install .` puts in a wheel: python/suptickets and the top-level suptickets_kernels."""
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True)
    for path in ("suptickets/ops/bsr_linear.py", "suptickets/ops/backend.py", "suptickets_kernels/bsr_linear.py",
                 "suptickets_kernels/bsr_conv2d.py", "suptickets_kernels/block_scores.py",
                 "suptickets_kernels/superpose.py", "suptickets_kernels/tiles.py"):
        assert (tmp_path / path).is_file(), path
