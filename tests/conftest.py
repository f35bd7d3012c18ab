import os
import sys

# Without a GPU the Triton kernels run in Triton's interpreter; it must be chosen before any
# kernel module is imported (tests/test_triton_*.py compare them with the reference).
if not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def force_backend(monkeypatch):
    def set_backend(name):
        monkeypatch.setenv("SUPTICKETS_BACKEND", name)

    return set_backend
