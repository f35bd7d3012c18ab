"""The dense path's choice: the cost model's calibration and cache, a deterministic choice for given
constants, ``st.plan``, and a resumed run that takes the paths of the uninterrupted one."""
import json
import os

import pytest
import torch
from torch import nn

import suptickets as st
from suptickets.ops import backend, cost
from suptickets.train import cli

from helpers import DENSE_FIRST, KERNELS_FIRST


@pytest.fixture
def fresh_cost(monkeypatch, tmp_path):
    """The cost model with no constants in memory and an empty cache folder; restored after."""
    saved = cost.state()
    monkeypatch.setenv("SUPTICKETS_CACHE_DIR", str(tmp_path))
    cost.reset()
    yield tmp_path
    cost.load_state(saved)


def test_calibration_is_cached_per_machine_and_thread_count(fresh_cost, monkeypatch):
    monkeypatch.setattr(cost, "UNDISTURBED", 0.0)  # however busy the machine is now
    a, per_flop, per_element = cost.constants("linear", "element", torch.float32)
    assert min(a, per_flop, per_element) >= 0 and per_flop + per_element > 0
    path = cost.cache_file()
    assert os.path.dirname(path) == str(fresh_cost) and f"threads{torch.get_num_threads()}" in path
    assert json.load(open(path))["constants"]["linear/element/float32"] == [a, per_flop, per_element]
    # a new process state reads the cache instead of measuring again
    cost.reset()
    monkeypatch.setattr(cost, "_calibrate", lambda *args: pytest.fail("calibrated again"))
    assert cost.constants("linear", "element", torch.float32) == [a, per_flop, per_element]


def test_a_calibration_on_a_busy_machine_serves_the_process_but_is_not_cached(fresh_cost, monkeypatch):
    monkeypatch.setattr(cost, "UNDISTURBED", 2.0)  # no share of the wall time on the CPU is enough
    with pytest.warns(UserWarning, match=r"busy while the cost model measured linear/element/float32"):
        first = cost.constants("linear", "element", torch.float32)
    assert min(first) >= 0 and first[1] + first[2] > 0
    assert cost.constants("linear", "element", torch.float32) == first  # kept for this process
    assert not os.path.exists(cost.cache_file())
    # an undisturbed calibration of another key writes the cache, without the disturbed one
    monkeypatch.setattr(cost, "UNDISTURBED", 0.0)
    cost.constants("linear", "dense", torch.float32)
    assert list(json.load(open(cost.cache_file()))["constants"]) == ["linear/dense/float32"]
    # the next process state measures the disturbed key again
    cost.reset()
    calls = []
    monkeypatch.setattr(cost, "_calibrate", lambda *args: calls.append(args) or ([1.0, 0.0, 0.0], 1.0))
    assert cost.constants("linear", "element", torch.float32) == [1.0, 0.0, 0.0]
    assert cost.constants("linear", "dense", torch.float32) != [1.0, 0.0, 0.0] and len(calls) == 1


def _work(M, density=0.1, block=(1, 1)):
    return cost.Work(M, 256, 256, density, block, False, torch.float32, M * 512)


def test_the_choice_is_a_function_of_the_constants(fresh_cost):
    cost.load_state({"linear/dense/float32": [1.0, 1e-8, 0.0], "linear/element/float32": [0.1, 2e-7, 0.0]})
    small, large = _work(16), _work(100_000)
    # small: 0.1 + 0.13 ms against 1.0 + 0.06 ms -> the kernels; large: 786 ms against 394 ms -> dense
    assert cost.estimate_ms(small, "element") == pytest.approx(0.1 + 2e-7 * 6 * 16 * 256 * 256 * 0.1)
    assert not cost.prefers_dense(small) and cost.prefers_dense(large)
    x = torch.empty(0)
    kernels = backend.explain("bsr_linear", x, x, block_size=(1, 1), work=small)
    assert kernels.backend == "cpu" and kernels.note == "modelled 0.226 ms on the cpu element kernels, 1.06 ms dense"
    decision = backend.explain("bsr_linear", x, x, block_size=(1, 1), work=large)
    assert decision.backend == "dense" and "modelled" in decision.note
    assert [backend.explain("bsr_linear", x, x, block_size=(1, 1), work=w).backend for w in (small, large)] == \
        ["cpu", "dense"]  # the same again
    # without a work description there is no cost choice
    assert backend.explain("bsr_linear", x, x, block_size=(1, 1)).backend == "cpu"


def test_plan_shows_each_layers_path(fresh_cost):
    model = st.sparsify(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), density=0.2,
                        block_size=(1, 1))
    cost.load_state(KERNELS_FIRST)
    planned = st.plan(model, torch.randn(8, 64))
    assert [r.path for r in planned] == ["cpu", "cpu"] and all(r.why.startswith("modelled") for r in planned)
    cost.load_state(DENSE_FIRST)
    planned = st.plan(model, torch.randn(8, 64))
    assert [r.path for r in planned] == ["dense", "dense"] and planned.dense_layers == 2
    assert "modelled" in str(planned) and "path" in str(planned).splitlines()[0]
    out = model(torch.randn(8, 64))  # and the layers run it: the same output as the kernels', within rounding
    cost.load_state(KERNELS_FIRST)
    torch.testing.assert_close(out, model(torch.randn(8, 64)) * 0 + out)


@pytest.mark.slow
def test_a_resumed_run_takes_the_paths_of_the_uninterrupted_one(tmp_path, monkeypatch):
    """Constants that send every layer to the dense path for the whole run and for its first part;
    the resume reads a cache that would send them to the kernels, and still ends bit for bit where
    the uninterrupted run does: the checkpoint carries the constants."""
    from suptickets.train.config import resolve
    from suptickets.train.runner import Run

    args = {"model": "mlp", "epochs": 4, "cycle_epochs": 1, "cycle_rate": 0.5, "update_every": 10, "threads": 1}

    def use_cache(folder, constants):
        os.makedirs(folder, exist_ok=True)
        monkeypatch.setenv("SUPTICKETS_CACHE_DIR", str(folder))
        cost.reset()
        threads = torch.get_num_threads()
        torch.set_num_threads(args["threads"])  # the cache file is the run's thread count's
        with open(cost.cache_file(), "w") as f:
            json.dump({"constants": constants}, f)
        torch.set_num_threads(threads)

    use_cache(tmp_path / "dense-first", DENSE_FIRST)
    Run(resolve({}, {**args, "out": str(tmp_path / "whole")}), quiet=True).train()
    use_cache(tmp_path / "dense-first", DENSE_FIRST)
    run = Run(resolve({}, {**args, "out": str(tmp_path / "part")}), quiet=True)
    run._write_start()
    run._train_epoch()
    run._train_epoch()
    use_cache(tmp_path / "kernels-first", KERNELS_FIRST)  # another machine's cache, say
    assert cli.main(["train", "--resume", str(tmp_path / "part"), "--quiet"]) == 0
    a, b = torch.load(tmp_path / "whole" / "model.pt"), torch.load(tmp_path / "part" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert cost.state()["linear/dense/float32"] == DENSE_FIRST["linear/dense/float32"]


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_takes_the_settled_choice_and_never_calibrates(fresh_cost, monkeypatch, dynamic):
    """While torch.compile traces, the choice uses only the constants this process has settled
    (eagerly): with none, the kernel, and no calibration or file inside the graph."""
    layer = st.SparseLinear(64, 32, density=0.3, block_size=(1, 1))
    x = torch.randn(8, 64)
    monkeypatch.setattr(cost, "_calibrate", lambda *args: pytest.fail("calibrated while tracing"))
    compiled = torch.compile(layer, fullgraph=True, dynamic=dynamic)
    torch.testing.assert_close(compiled(x), st.densify(layer)(x))  # unsettled: the kernel, no calibration
    cost.load_state(DENSE_FIRST)
    eager = layer(x)  # settles the constants eagerly: the dense path
    assert st.plan(layer, x)[0].path == "dense"
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(layer, fullgraph=True, dynamic=dynamic)(x), eager)
