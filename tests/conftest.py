import os
import sys

import pytest
import torch

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
