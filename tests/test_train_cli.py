"""``suptickets train``: the run folder end to end, config files and presets, resume, checkpoints,
bad input."""
import json
import os
import subprocess
import sys

import pytest
import torch

from suptickets.train import cli
from suptickets.train.build import default_milestones
from suptickets.train.checkpoint import CheckpointError, atomic_save, list_checkpoints, load_latest
from suptickets.train.config import FIELDS, ConfigError, read_config_file, resolve
from suptickets.train.runner import Run

# A short run with every part in it: RigL updates, the Sup-tickets phase (2 cycles of one
# epoch: tickets after epochs 4, 5, 6 and explorations after 4 and 5).
TINY = ["--epochs", "6", "--cycle-epochs", "1", "--cycle-rate", "0.34", "--update-every", "10", "--threads", "1",
        "--quiet"]


def run_cli(args, capsys=None):
    code = cli.main(["train", *args])
    return code


def test_end_to_end_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli([*TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for word in ("test accuracy", "ECE", "NLL", "sparsity", "FLOPs train", "FLOPs test", "per-layer sparsity"):
        assert word in printed
    names = set(os.listdir(out))
    assert {"config.json", "metrics.jsonl", "summary.json", "report.md", "model.pt", "lr.png", "curves.png",
            "density.png", "checkpoints"} <= names
    for png in ("lr.png", "curves.png", "density.png"):
        with open(out / png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "digits" and config["model"] == "cnn" and config["method"] == "rigl"
    assert config["sparsity"] == 0.9 and config["sup_tickets"] is True
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(0 <= r["test_accuracy"] <= 1 and r["train_loss"] > 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    for key in ("test_accuracy", "ece", "nll", "sparsity", "flops_train", "flops_test"):
        assert isinstance(summary[key], float)
    steps = 6 * (1347 // 32)
    assert summary["steps"] == steps and summary["tickets"] == [4 * 42, 5 * 42, 6 * 42]
    assert summary["explorations"] == [4 * 42, 5 * 42]
    assert summary["test_accuracy"] > 0.5  # learns digits in six epochs
    assert abs(summary["sparsity"] - 0.9) < 0.01
    assert 0.09 < summary["flops_test"] < 0.2 and summary["flops_test"] < summary["flops_train"] < 0.3
    assert [c for c, _ in list_checkpoints(str(out))] == [5, 6]  # the two newest are kept
    # the output network is the ultimate ticket at the target sparsity
    state = torch.load(out / "model.pt")
    assert any(k.endswith("values") for k in state)
    report = (out / "report.md").read_text()
    assert "ultimate ticket" in report and "![learning rate](lr.png)" in report


@pytest.mark.slow
def test_python_m_suptickets_runs_the_cli(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "suptickets", "train", "--model", "mlp", "--epochs", "2",
                           "--no-sup-tickets", "--update-every", "20", "--quiet", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "summary.json").read_text())["network"] == "final network"


def _interrupted_run(tmp_path, args, stop_after):
    """The run of ``args`` stopped after ``stop_after`` epochs (its checkpoints written)."""
    config = resolve({}, {k.replace("-", "_"): v for k, v in args.items()})
    run = Run(config, quiet=True)
    run._write_start()
    for _ in range(stop_after):
        run._train_epoch()
    return run.run_dir


@pytest.mark.parametrize("method", ["rigl", "granet", "dense"])
def test_resume_gives_the_same_final_weights(tmp_path, method):
    args = {"epochs": 6, "cycle_epochs": 1, "cycle_rate": 0.34, "update_every": 10, "threads": 1, "model": "mlp",
            "method": method, "granet_prune_end": 0.5}
    if method == "dense":  # no booster to configure
        args = {k: v for k, v in args.items() if k not in ("cycle_epochs", "cycle_rate")}
    whole = tmp_path / "whole"
    config = resolve({}, {**args, "out": str(whole)})
    Run(config, quiet=True).train()
    part = _interrupted_run(tmp_path, {**args, "out": str(tmp_path / "part")}, stop_after=4 if method != "dense" else 3)
    assert cli.main(["train", "--resume", part]) == 0
    a, b = torch.load(whole / "model.pt"), torch.load(os.path.join(part, "model.pt"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma = (whole / "metrics.jsonl").read_text().splitlines()
    mb = open(os.path.join(part, "metrics.jsonl")).read().splitlines()
    assert len(ma) == len(mb) == 6
    timing = ("epoch_time_s", "cpu_time_s", "images_per_s")
    strip = lambda s: {k: v for k, v in json.loads(s).items() if k not in timing}  # noqa: E731
    assert [strip(x) for x in ma] == [strip(x) for x in mb]


def test_corrupt_checkpoint_is_named_and_the_previous_one_is_kept(tmp_path, capsys):
    out = tmp_path / "run"
    part = _interrupted_run(tmp_path, {"epochs": 4, "model": "mlp", "out": str(out), "threads": 1,
                                       "sup_tickets": False, "update_every": 20}, stop_after=3)
    (_, older), (_, newest) = list_checkpoints(part)[-2:]
    size = os.path.getsize(newest)
    with open(newest, "r+b") as f:
        f.truncate(size // 2)
    capsys.readouterr()
    assert cli.main(["train", "--resume", part]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert newest in err and "truncated or corrupt" in err and older in err
    assert load_latest.__name__ and torch.load(older, weights_only=False)["epoch"] == 2
    with pytest.raises(CheckpointError, match="epoch-0003.pt"):
        load_latest(part)
    os.remove(newest)  # as the message says: resume from the intact one
    assert cli.main(["train", "--resume", part, "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 4


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    atomic_save({"a": torch.ones(3)}, str(path))

    def broken(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"a": torch.zeros(3)}, str(path))
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["a"], torch.ones(3))
    assert sorted(os.listdir(tmp_path)) == ["ck.pt", "ck.pt.sha256"]  # no temporary file left, the seal kept


@pytest.mark.parametrize("args, words", [
    (["--model", "alexnet"], ["--model", "mlp", "wrn28-10", "alexnet"]),
    (["--dataset", "mnist"], ["--dataset", "digits", "cifar10", "mnist"]),
    (["--dataset", "cifar10"], ["--data-dir"]),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/data"], ["--data-dir", "/nonexistent/data"]),
    (["--sparsity", "1.0"], ["--sparsity", "[0, 1)", "1.0"]),
    (["--sparsity", "-0.1"], ["--sparsity", "[0, 1)"]),
    (["--sparsity", "abc"], ["--sparsity", "abc"]),
    (["--block-size", "7"], ["--block-size", "7x7", "fits no layer"]),
    (["--block-size", "0"], ["--block-size"]),
    (["--method", "lottery"], ["--method", "rigl", "granet"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--epochs", "2"], ["cyclic phase", "--cycle-epochs"]),
    (["--preset", "mnist-paper"], ["--preset", "cifar-paper"]),
    (["--no-such-flag"], ["--no-such-flag"]),
    (["--resume", "/nonexistent/run"], ["--resume", "config.json"]),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, words, capsys, tmp_path):
    assert cli.main(["train", *args, "--out", str(tmp_path / "run"), "--quiet"] if "--resume" not in args
                    else ["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("suptickets train: error:")
    for w in words:
        assert w in err, (w, err)
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.slow
def test_bad_input_exit_code_from_the_console(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "suptickets", "train", "--model", "alexnet"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--model" in proc.stderr


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    part = _interrupted_run(tmp_path, {"epochs": 2, "model": "mlp", "sup_tickets": False, "out": str(tmp_path / "r"),
                                       "threads": 1, "update_every": 20}, stop_after=1)
    assert cli.main(["train", "--out", part, "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for field in FIELDS - {"preset"}:
        assert "--" + field.replace("_", "-") in text, field
    assert "(default: 0.9)" in text and "--no-sup-tickets" in text and "(default: 1x1)" in text


def test_config_file_and_flag_precedence(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("method: set\nsparsity: 0.8\nepochs: 30\nblock-size: 16x32\nlr_milestones: [10, 20]\n")
    values = read_config_file(str(yaml_file))
    c = resolve(values, {"epochs": 25})
    assert (c.method, c.sparsity, c.epochs, c.block_size, c.lr_milestones) == ("set", 0.8, 25, (16, 32), [10, 20])
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"model": "mlp", "sup_tickets": False}))
    c = resolve(read_config_file(str(json_file)), {})
    assert c.model == "mlp" and not c.sup_tickets and c.dataset == "digits"
    (tmp_path / "bad.json").write_text(json.dumps({"sparsty": 0.5}))
    with pytest.raises(ConfigError, match="unknown option.*sparsty"):
        read_config_file(str(tmp_path / "bad.json"))
    (tmp_path / "broken.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config_file(str(tmp_path / "broken.yaml"))


def test_presets_carry_the_papers_hyperparameters(tmp_path):
    c = resolve({}, {"preset": "cifar-paper", "data_dir": str(tmp_path)})  # Table 7
    assert (c.dataset, c.model, c.epochs, c.batch_size, c.lr) == ("cifar10", "vgg16", 250, 128, 0.1)
    assert c.lr_milestones is None and default_milestones(250 - 3 * 8) == [113, 169]
    assert (c.cycle_epochs, c.lr_low, c.lr_high, c.weight_decay, c.momentum) == (8, 0.001, 0.005, 5e-4, 0.9)
    c = resolve({}, {"preset": "imagenet-paper", "data_dir": str(tmp_path)})  # Table 8
    assert (c.dataset, c.model, c.epochs, c.batch_size, c.lr_milestones) == ("imagenet", "resnet50", 100, 64,
                                                                             [30, 60, 85])
    assert (c.cycle_epochs, c.cycle_rate, c.lr_low, c.lr_high, c.weight_decay) == (2, 0.08, 1e-4, 5e-4, 1e-4)
    # a CIFAR dataset alone takes the CIFAR preset's values; flags still win
    c = resolve({}, {"dataset": "cifar100", "data_dir": str(tmp_path), "model": "resnet18", "epochs": 10})
    assert (c.dataset, c.model, c.epochs, c.batch_size) == ("cifar100", "resnet18", 10, 128)
