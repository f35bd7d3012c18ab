"""Without usable Triton kernels the package still imports and the CPU path works; a call that
needs the kernels says why they are unavailable."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow


def test_a_triton_that_fails_to_load_leaves_the_cpu_path(tmp_path):
    # a 'triton' that raises at import, as Triton < 3.4 does on a machine without a GPU driver
    (tmp_path / "triton").mkdir()
    (tmp_path / "triton" / "__init__.py").write_text(
        "raise RuntimeError('0 active drivers ([]). There should only be one.')\n")
    code = textwrap.dedent("""
        import torch, suptickets as st
        from suptickets.ops import _triton
        assert not _triton.available and "active drivers" in str(_triton.load_error), _triton.load_error
        layer = st.SparseLinear(64, 32, density=0.5, block_size=(16, 16))
        x = torch.randn(4, 64)
        torch.testing.assert_close(layer(x), layer.to_dense()(x))
        import os
        os.environ["SUPTICKETS_BACKEND"] = "triton"
        try:
            layer(x)
        except RuntimeError as exc:
            assert "Triton kernels are unavailable" in str(exc) and "active drivers" in str(exc), exc
        else:
            raise AssertionError("SUPTICKETS_BACKEND=triton ran without Triton")
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    env.pop("SUPTICKETS_BACKEND", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
