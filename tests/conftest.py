import json
import os
import sys
import tempfile

# Without a GPU the Triton kernels run in Triton's interpreter; it must be chosen before any
# kernel module is imported (tests/test_*_triton.py compare them with the reference).
if not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))

import suptickets.ops  # noqa: E402
from suptickets.ops import cost  # noqa: E402

from helpers import KERNELS_FIRST  # noqa: E402

# The cost model's constants for the whole session, subprocesses included: fixed ones that always
# prefer the kernels to the dense path, so that a test's paths do not depend on a calibration
# (tests/test_cost_model.py calibrates and chooses with constants of its own).
_CACHE = tempfile.mkdtemp(prefix="suptickets-cost-")
os.environ["SUPTICKETS_CACHE_DIR"] = _CACHE
_threads = torch.get_num_threads()
for _n in range(1, 2 * (os.cpu_count() or 1) + 1):  # the cache is per thread count (subprocesses set theirs)
    torch.set_num_threads(_n)
    with open(cost.cache_file(), "w") as f:
        json.dump({"constants": KERNELS_FIRST}, f)
torch.set_num_threads(_threads)

# The kernel tests take their cases from the dispatch table: without the C++ build they would
# quietly lose every CPU-kernel case, so a missing build is a failure, not a fallback.
if not suptickets.ops.extension_available and os.environ.get("SUPTICKETS_ALLOW_NO_EXTENSION") != "1":
    raise pytest.UsageError(
        f"the suptickets C++ operators are not built ({suptickets.ops._extension.load_error}); install with "
        "`pip install --no-build-isolation .` (or set SUPTICKETS_ALLOW_NO_EXTENSION=1 to test the reference only)")


@pytest.fixture(autouse=True)
def _session_cost_model():
    """Every test starts from the session's constants above: one that loads or calibrates its own
    leaves nothing behind (the next product reads the session's cache again)."""
    yield
    cost.reset()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def force_backend(monkeypatch):
    def set_backend(name):
        monkeypatch.setenv("SUPTICKETS_BACKEND", name)

    return set_backend
