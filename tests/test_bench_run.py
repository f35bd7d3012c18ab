"""benchmarks/bench_run.py refuses what it cannot measure with one line naming the argument."""
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench_run.py")


@pytest.mark.parametrize("args, message", [
    (["--epochs", "1"], "--epochs: at least 2"),
    (["--models", "vgg16"], "--models: 'vgg16' is not one of cnn2, mlp3x1000"),
])
def test_bad_arguments_get_one_clear_error(args, message):
    done = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
