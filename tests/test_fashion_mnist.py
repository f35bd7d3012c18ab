"""Fashion-MNIST in ``suptickets train``: the IDX reader on files written here (good and damaged),
the dataset and its validation split, the default folder and its one-line error, the presets'
topology recipe, ``--drop-schedule``, ``--cycles``, and ``--ticket-trace``."""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from suptickets.train import cli, data
from suptickets.train.build import build_method
from suptickets.train.config import ConfigError, resolve
from suptickets.train.data import FASHION_MNIST_FILES, DataError, load_dataset, load_fashion_mnist
from suptickets.train.idx import IdxError, read_idx, write_idx
from suptickets.train.models import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_fashion(root, n_train=300, n_test=60, seed=0):
    """The four IDX files of a small Fashion-MNIST: random images and labels (every class)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    arrays = [rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), np.arange(n_train, dtype=np.uint8) % 10,
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.permutation(np.arange(n_test) % 10)]
    for name, array in zip(FASHION_MNIST_FILES, arrays):
        write_idx(os.path.join(root, name), array)
    return arrays


# ---- the IDX reader ------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, suffix):
    array = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = str(tmp_path / f"x-idx3-ubyte{suffix}")
    write_idx(path, array)
    got = read_idx(path, 3, (5, 3))
    assert got.dtype == np.uint8 and np.array_equal(got, array)
    assert got.flags.writeable  # a copy, not a view of the file's bytes


def _raw(tmp_path, blob: bytes) -> str:
    path = str(tmp_path / "bad-idx1-ubyte")
    with open(path, "wb") as f:
        f.write(blob)
    return path


@pytest.mark.parametrize("blob, match", [
    (b"", "not an IDX file"),
    (b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc", "not an IDX file"),
    (b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc", "item type 0x0d"),
    (b"\x00\x00\x08\x02" + (3).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"abc", "2 dimensions, expected 1"),
    (b"\x00\x00\x08\x01\x00\x00", "truncated inside its header"),
    (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc", "is truncated"),
    (b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"abc", "longer than its header says"),
])
def test_idx_damage_is_named(tmp_path, blob, match):
    path = _raw(tmp_path, blob)
    with pytest.raises(IdxError, match=match) as info:
        read_idx(path, 1)
    assert path in str(info.value)


def test_idx_wrong_item_shape_and_broken_gzip(tmp_path):
    path = str(tmp_path / "img-idx3-ubyte")
    write_idx(path, np.zeros((2, 27, 28), dtype=np.uint8) + 3)
    with pytest.raises(IdxError, match=r"items of shape \(27, 28\), expected \(28, 28\)"):
        read_idx(path, 3, (28, 28))
    gz = str(tmp_path / "img-idx3-ubyte.gz")
    with gzip.open(gz, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (100).to_bytes(4, "big") + bytes(range(100)))
    with open(gz, "r+b") as f:
        f.truncate(os.path.getsize(gz) - 12)
    with pytest.raises(IdxError, match="cannot read IDX file"):
        read_idx(gz, 1)
    with pytest.raises(IdxError, match="missing IDX file"):
        read_idx(str(tmp_path / "none.gz"), 1)


def _claiming(path: str, items: int, body: bytes) -> None:
    """A gzip IDX image file whose header declares ``items`` 28x28 images, followed by ``body``."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (items, 28, 28)) + body)


_UNDER_LIMIT = """
import resource, sys
import torch  # noqa: F401 (what a run has loaded before its data)
from suptickets.train import cli
with open("/proc/self/status") as f:
    size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
limit = int(sys.argv[1]) if int(sys.argv[1]) > 0 else size - int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.exit(cli.main(["train", "--dataset", "fashion-mnist", "--data-dir", sys.argv[2], "--model", "mlp",
                   "--epochs", "1", "--val-size", "0", "--out", sys.argv[3], "--quiet", "--threads", "1",
                   "--method", "dense", "--batch-size", "30000"]))
"""


def _run_limited(tmp_path, limit: int, out: str):
    """``suptickets train`` on ``tmp_path/data`` under an address-space limit (bytes; a negative
    number: that many bytes above what the process has mapped once torch is imported)."""
    return subprocess.run([sys.executable, "-c", _UNDER_LIMIT, str(limit), str(tmp_path / "data"),
                           str(tmp_path / out)], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_readers_are_bounded_by_the_data_under_an_address_space_limit(tmp_path):
    folder = tmp_path / "data"
    write_fashion(str(folder), n_train=60, n_test=10)
    pattern = np.tile(np.arange(28 * 28, dtype=np.uint16).astype(np.uint8), 60000).tobytes()
    train = str(folder / FASHION_MNIST_FILES[0])
    labels = np.arange(60000, dtype=np.uint8) % 10
    # the genuine sizes (60,000 images) load under a 4 GiB address space
    _claiming(train, 60000, pattern)
    write_idx(str(folder / FASHION_MNIST_FILES[1]), labels)
    proc = _run_limited(tmp_path, 4 << 30, "run0")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    # a small gzip whose header claims 5.5 M images: refused before any allocation, named
    _claiming(train, 5_500_000, pattern[:19 << 20])
    proc = _run_limited(tmp_path, 4 << 30, "run1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert f"{train}: its header declares 5500000 items, more than this dataset can hold (1000000)" in proc.stderr
    # a header within the bound whose bytes do not fit the memory left: one line, file and bytes named
    _claiming(train, 1_000_000, pattern[:1 << 20])
    proc = _run_limited(tmp_path, -(256 << 20), "run2")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert f"{train}: not enough memory for the 784000000 bytes its header declares" in proc.stderr
    # with the memory, the same file is found short of its header
    with pytest.raises(DataError, match="is truncated: its header \\[1000000, 28, 28\\] needs 784000000 bytes"):
        load_fashion_mnist(str(folder))


# ---- the dataset -------------------------------------------------------------------------------------

def test_fashion_mnist_dataset(tmp_path):
    images, labels, test_images, test_labels = write_fashion(str(tmp_path))
    ds = load_fashion_mnist(str(tmp_path))
    assert (ds.train_size, ds.test_size, ds.num_classes, ds.in_channels, ds.image_size) == (300, 60, 10, 1, 28)
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(images)) and torch.equal(ds.y_test,
                                                                                   torch.from_numpy(test_labels).long())
    assert ds.augment and ds.padding == 0  # flips only
    scaled = images / 255.0
    assert ds.mean[0] == pytest.approx(scaled.mean()) and ds.std[0] == pytest.approx(scaled.std(ddof=1))
    x, y = next(ds.train_batches(1, 300, seed=0))
    assert x.shape == (300, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (300,)
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05  # normalised by the training statistics
    order = torch.randperm(300, generator=data.epoch_generator(0, 1))
    raw = (ds.x_train[order].float() / 255 - ds.mean[0]) / ds.std[0]
    flipped = torch.tensor([torch.equal(a, b.flip(-1)) and not torch.equal(a, b) for a, b in zip(x, raw)])
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(x, raw)])
    assert bool((flipped | kept).all()) and 100 < int(flipped.sum()) < 200  # each image flipped or not, about half
    a = [b[0] for b in ds.train_batches(2, 50, seed=3)]
    b = [b[0] for b in ds.train_batches(2, 50, seed=3)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))  # drawn from (seed, epoch) alone


def test_validation_split_is_stratified_fixed_and_disjoint(tmp_path):
    write_fashion(str(tmp_path), n_train=500)
    full = load_fashion_mnist(str(tmp_path))
    ds = load_dataset("fashion-mnist", str(tmp_path), val_size=100)
    again = load_dataset("fashion-mnist", str(tmp_path), val_size=100)
    assert (ds.train_size, ds.val_size) == (400, 100)
    assert torch.equal(ds.x_val, again.x_val) and torch.equal(ds.y_train, again.y_train)
    assert torch.bincount(ds.y_val, minlength=10).tolist() == [10] * 10  # 50 per class -> 10 each
    flat = lambda x: {bytes(row.numpy().tobytes()) for row in x.reshape(len(x), -1)}  # noqa: E731
    assert not flat(ds.x_val) & flat(ds.x_train) and flat(ds.x_val) | flat(ds.x_train) == flat(full.x_train)
    assert ds.mean == full.mean  # normalised by the statistics of the whole training set
    xv, yv = next(ds.val_batches(1000))
    assert xv.shape == (100, 1, 28, 28) and torch.equal(yv, ds.y_val)
    for bad in (-1, 500, 900):
        with pytest.raises(DataError, match=r"--val-size must be in \[0, 500\)"):
            load_dataset("fashion-mnist", str(tmp_path), val_size=bad) if bad >= 0 else full.hold_out(bad)


def test_mismatched_or_bad_labels_are_named(tmp_path):
    write_fashion(str(tmp_path))
    write_idx(str(tmp_path / FASHION_MNIST_FILES[1]), np.arange(299, dtype=np.uint8) % 10)
    with pytest.raises(DataError, match="holds 300 images, train-labels-idx1-ubyte.gz 299 labels"):
        load_fashion_mnist(str(tmp_path))
    write_idx(str(tmp_path / FASHION_MNIST_FILES[1]), np.full(300, 12, dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\), got up to 12"):
        load_fashion_mnist(str(tmp_path))
    os.remove(tmp_path / FASHION_MNIST_FILES[3])
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(str(tmp_path))


def test_default_folder_is_found_or_named(tmp_path, monkeypatch, capsys):
    write_fashion(str(tmp_path / "pkg"))
    monkeypatch.setattr(data, "_FASHION_MNIST_DIRS", (str(tmp_path / "nowhere"), str(tmp_path / "pkg")))
    monkeypatch.setattr(data.shutil, "which", lambda name: None)  # no dpkg: the known folders alone
    assert data.fashion_mnist_dir() == str(tmp_path / "pkg")
    monkeypatch.setattr(data, "_FASHION_MNIST_DIRS", (str(tmp_path / "nowhere"),))
    assert data.fashion_mnist_dir() is None
    code = cli.main(["train", "--dataset", "fashion-mnist", "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "apt-get install dataset-fashion-mnist" in err and "--data-dir" in err
    assert not (tmp_path / "r").exists()


def test_default_folder_comes_from_dpkg(tmp_path, monkeypatch):
    write_fashion(str(tmp_path / "listed"))
    listing = "\n".join(["/.", str(tmp_path / "listed"), str(tmp_path / "listed" / FASHION_MNIST_FILES[0])])
    monkeypatch.setattr(data, "_FASHION_MNIST_DIRS", ())
    monkeypatch.setattr(data.shutil, "which", lambda name: "/usr/bin/dpkg-query")
    monkeypatch.setattr(data.subprocess, "run", lambda *a, **k: type("P", (), {"stdout": listing})())
    assert data.fashion_mnist_dir() == str(tmp_path / "listed")


# ---- models, presets and options -----------------------------------------------------------------

def test_the_study_networks():
    mlp = build_model("mlp3x1000", in_channels=1, image_size=28, num_classes=10)
    shapes = [tuple(m.weight.shape) for m in mlp if isinstance(m, torch.nn.Linear)]
    assert shapes == [(1000, 784), (1000, 1000), (1000, 1000), (10, 1000)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in mlp) == 3
    cnn = build_model("cnn2", in_channels=1, image_size=28, num_classes=10)
    assert sum(p.numel() for p in cnn.parameters()) < 250_000
    for model in (mlp, cnn):
        assert model.eval()(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_presets_take_the_authors_topology_recipe(tmp_path):
    for preset, every, end in (("cifar-paper", 1000, 0.9), ("imagenet-paper", 4000, 0.92)):
        c = resolve({}, {"preset": preset, "data_dir": str(tmp_path)})
        assert (c.update_every, c.update_end, c.drop_fraction, c.drop_schedule) == (every, end, 0.5, "constant")
        assert (c.explore_fraction, c.reprune, c.bn, c.base_ticket) == (0.5, "global", "recompute", True)
        assert c.update_end == 1 - c.cycle_rate  # updates until the cyclic phase
    c = resolve({}, {"dataset": "fashion-mnist"})  # the dataset's own preset
    assert (c.model, c.epochs, c.batch_size, c.cycles, c.cycle_rate, c.val_size) == ("mlp3x1000", 10, 128, 3, 0.1,
                                                                                     5000)
    assert (c.update_every, c.drop_fraction, c.drop_schedule, c.reprune, c.bn) == (1000, 0.5, "constant", "global",
                                                                                   "recompute")
    # RigL with no preset keeps its own schedule: cosine decay from 0.3, every 100 steps, until 75 %
    c = resolve({}, {"method": "rigl", "preset": "digits"})
    rigl = build_method(c, 1000, say=lambda text: None)
    assert (rigl.schedule, rigl.drop_fraction, rigl.update_every, rigl.end) == ("cosine", 0.3, 100, 0.75)


@pytest.mark.parametrize("method, asked, expected", [("rigl", None, "cosine"), ("set", None, "constant"),
                                                     ("rigl", "constant", "constant"), ("set", "cosine", "cosine")])
def test_drop_schedule(method, asked, expected):
    flags = {"method": method, **({"drop_schedule": asked} if asked else {})}
    c = resolve({}, flags)
    assert build_method(c, 1000, say=lambda text: None).schedule == expected


def test_drop_schedule_and_cycles_are_checked(capsys):
    assert cli.main(["train", "--drop-schedule", "linear"]) == 2
    assert "--drop-schedule must be one of constant, cosine; got 'linear'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"--cycles must be in \[1, inf\); got 0"):
        resolve({}, {"cycles": 0})
    with pytest.raises(ConfigError, match="--val-size must be an integer"):
        resolve({}, {"val_size": 0.5})


def test_a_run_shorter_than_one_update_interval_says_so():
    said = []
    rigl = build_method(resolve({}, {"method": "rigl", "update_every": 1000}), 500, say=said.append)
    assert said and "makes no topology update" in said[0]
    rigl.bind(500)
    assert not any(rigl.is_update(t) for t in range(1, 501))


def test_cli_trains_on_fashion_mnist_files_with_the_preset(tmp_path, capsys):
    write_fashion(str(tmp_path / "fm"), n_train=2000, n_test=100)
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "fm"), "--epochs", "1",
                     "--val-size", "60", "--batch-size", "32", "--threads", "1", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert (config["dataset"], config["model"], config["cycles"], config["reprune"]) == ("fashion-mnist",
                                                                                         "mlp3x1000", 3, "global")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 1940 // 32 and summary["val_size"] == 60
    assert len(summary["tickets"]) == 4 and set(summary["validation"]) == {"accuracy", "ece", "nll"}
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"val_accuracy", "val_nll", "val_ece", "test_accuracy"} <= set(row)


def test_ticket_trace(tmp_path):
    out = tmp_path / "run"
    tiny = ["--epochs", "6", "--cycle-epochs", "1", "--cycle-rate", "0.34", "--update-every", "10", "--threads", "1",
            "--quiet", "--model", "mlp", "--val-size", "200", "--ticket-trace", "--out", str(out)]
    assert cli.main(["train", *tiny]) == 0
    summary = json.loads((out / "summary.json").read_text())
    trace = summary["ticket_trace"]
    events = [(e["event"], e["step"]) for e in trace["events"]]
    tickets, explorations = summary["tickets"], summary["explorations"]
    assert sorted(events) == sorted([("ticket", t) for t in tickets] + [("explored", t) for t in explorations])
    assert [e["index"] for e in trace["events"] if e["event"] == "ticket"] == list(range(len(tickets)))
    assert trace["ultimate"]["test"]["accuracy"] == summary["test_accuracy"]
    assert trace["ultimate"]["val"]["accuracy"] == summary["validation"]["accuracy"]
    assert trace["final"]["test"]["accuracy"] == summary["final_network"]["accuracy"]
    last_ticket = [e for e in trace["events"] if e["event"] == "ticket"][-1]
    assert last_ticket["test"] == trace["final"]["test"]  # the last ticket is the live network at the end
    assert all(0 <= e[split]["accuracy"] <= 1 for e in trace["events"] for split in ("val", "test"))
    assert 0 <= trace["ensemble"]["test"]["accuracy"] <= 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["images_per_s"] > 0 for r in rows)
