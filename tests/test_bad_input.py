"""Bad input, as a careless user or an attacker gives it: every case is one line naming the
option (the command line, exit status 2) or one clear exception naming the argument (the API)."""
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

import suptickets as st
from suptickets.train import cli

QUICK = ["--model", "mlp", "--epochs", "1", "--no-sup-tickets", "--update-every", "10", "--quiet"]


def _main(capsys, argv) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["train", *argv])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1, err
    return code, err[0]


@pytest.mark.parametrize("argv, words", [
    (["--lr", "inf"], ["--lr", "finite"]),
    (["--lr", "nan"], ["--lr"]),
    (["--weight-decay", "inf"], ["--weight-decay", "finite"]),
    (["--device", "cuda:abc"], ["--device", "cuda:N"]),
    (["--device", "cudaXYZ"], ["--device", "cuda:N"]),
    (["--dist-timeout", "0"], ["--dist-timeout"]),
    (["--block-size", "2.5"], ["--block-size", "integers"]),
])
def test_bad_flags(capsys, argv, words):
    code, line = _main(capsys, [*QUICK, *argv])
    assert code == 2 and all(w in line for w in words), line


@pytest.mark.parametrize("text, words", [
    ("out: 5\n", ["--out", "string"]),
    ("dense_first: maybe\n", ["--dense-first", "true or false"]),
    ('sup_tickets: "sometimes"\n', ["--sup-tickets", "true or false"]),
    ("block_size: [2.5, 2.5]\n", ["--block-size", "integers"]),
    ("data_dir: [1, 2]\n", ["--data-dir", "string"]),
    ("epochs: [1,\n  2\nlr: 0.1\n", ["c.yaml:3:", "not valid YAML"]),
    ("lr: 0.1\n  momentum: 0.9\n", ["c.yaml:2:", "not valid YAML"]),
])
def test_bad_config_files(capsys, tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    out = [] if text.startswith(("out:", "sup_tickets:")) else ["--out", str(tmp_path / "run")]  # no flag overrides
    code, line = _main(capsys, ["--model", "mlp", "--epochs", "1", "--quiet", "--config", str(path), *out])
    assert code == 2 and all(w in line for w in words), line


@pytest.mark.parametrize("text, value", [('dense_first: "false"\n', False), ("sup_tickets: no\n", False),
                                         ('base_ticket: "yes"\n', True), ("dense_first: On\n", True)])
def test_config_booleans_take_their_spellings(tmp_path, text, value):
    from suptickets.train.config import read_config_file, resolve
    path = tmp_path / "c.yaml"
    path.write_text(text)
    config = resolve(read_config_file(str(path)), {})
    assert getattr(config, text.split(":")[0]) is value


def test_a_json_syntax_error_names_the_line(capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"epochs": 2,\n "lr": }')
    code, line = _main(capsys, [*QUICK, "--config", str(path)])
    assert code == 2 and "c.json:2:" in line and "not valid JSON" in line


def test_out_naming_a_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("")
    code, line = _main(capsys, [*QUICK, "--out", str(tmp_path / "afile")])
    assert code == 2 and "--out" in line and "is a file" in line


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    assert cli.main(["train", *QUICK, "--epochs", "2", "--threads", "1", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("damage, words", [
    ("truncated", ["config.json is damaged", "line"]),
    ("empty-dict", ["not a suptickets configuration", "lacks"]),
    ("list", ["holds a list"]),
    ("edited-option", ["other options", "lr", "another run"]),
    ("foreign-checkpoint", ["other options"]),
    ("other-threads", ["--threads 2", "--threads 1"]),
    ("no-threads", ["records no thread count", '"threads": N']),
    ("unfitting-state", ["does not fit this run (Error(s) in loading state_dict", "values has shape (3,)"]),
])
def test_a_damaged_run_folder_on_resume(capsys, tmp_path, finished_run, damage, words):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    config = run / "config.json"
    argv = ["--resume", str(run), "--quiet"]
    if damage == "truncated":
        config.write_text(config.read_text()[:100])
    elif damage == "empty-dict":
        config.write_text("{}")
    elif damage == "list":
        config.write_text("[1, 2]")
    elif damage == "edited-option":
        values = json.loads(config.read_text())
        config.write_text(json.dumps({**values, "lr": values["lr"] / 2}))
    elif damage == "foreign-checkpoint":  # a checkpoint of another run copied in
        other = tmp_path / "other"
        assert cli.main(["train", *QUICK, "--epochs", "2", "--lr", "0.05", "--threads", "1", "--out",
                         str(other)]) == 0
        for name in os.listdir(other / "checkpoints"):
            shutil.copy(other / "checkpoints" / name, run / "checkpoints" / name)
    elif damage == "no-threads":  # an older version's config.json: resumed, the thread count could change
        values = json.loads(config.read_text())
        config.write_text(json.dumps({**values, "threads": None}))
    elif damage == "unfitting-state":  # sealed and well-formed, but of another shape: the reason whole
        from suptickets.train.checkpoint import list_checkpoints, load_file, save_checkpoint
        epoch, path = list_checkpoints(str(run))[-1]
        state = load_file(path)
        name = next(k for k in state["training"]["model"] if k.endswith("weight") or k.endswith("values"))
        state["training"]["model"][name] = torch.zeros(3)
        os.remove(path)
        save_checkpoint(state, str(run), epoch, 2)
    else:
        argv += ["--threads", "2"]
    code, line = _main(capsys, argv)
    assert code == 2 and all(w in line for w in words), line


@pytest.mark.parametrize("argv, words", [
    (["--cycles", "2", "--cycle-epochs", "1"], ["--cycles and --cycle-epochs", "give one"]),
    (["--no-sup-tickets", "--cycles", "2"], ["--cycles sets the Sup-tickets booster", "--no-sup-tickets"]),
    (["--no-sup-tickets", "--ticket-trace"], ["--ticket-trace", "--no-sup-tickets turns off"]),
    (["--method", "dense", "--explore-fraction", "0.2"], ["--explore-fraction", "--method dense turns off"]),
    (["--method", "dense", "--sup-tickets"], ["--sup-tickets", "--method dense turns off"]),
    (["--method", "static", "--drop-schedule", "cosine"], ["--drop-schedule", "--method static has none"]),
    (["--method", "snip", "--drop-schedule", "constant"], ["--drop-schedule", "--method snip"]),
    (["--method", "granet", "--drop-schedule", "constant"], ["--drop-schedule", "--method granet"]),
    (["--method", "dense", "--drop-schedule", "constant"], ["--drop-schedule", "--method dense"]),
    (["--preset", "imagenet-paper", "--data-dir", ".", "--epochs", "1"],
     ["--lr-milestones must be epochs in [1, --epochs=1]", "--lr-milestones 30 60 85 comes from preset imagenet-paper",
      "give --lr-milestones to override it"]),
    (["--dataset", "digits", "--preset", "fashion-mnist"],
     ["--val-size must be in [0, 1347)", "--val-size 5000 comes from preset fashion-mnist"]),
])
def test_options_that_contradict_or_do_nothing_are_refused(capsys, tmp_path, argv, words):
    quick = ["--model", "mlp", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]
    code, line = _main(capsys, [*quick, *argv] if "--epochs" not in argv else [*quick[:2], *quick[4:], *argv])
    assert code == 2 and all(w in line for w in words), line
    assert not (tmp_path / "run").exists()


def test_the_booster_options_of_a_preset_do_not_count_as_given(tmp_path):
    from suptickets.train.config import resolve
    c = resolve({}, {"preset": "fashion-mnist", "method": "dense"})  # the preset's --cycles 3: no refusal
    assert not c.sup_tickets and c.sparsity == 0.0
    c = resolve({}, {"preset": "fashion-mnist", "cycle_epochs": 2})  # the user's length replaces the preset's count
    assert c.cycles is None and c.cycle_epochs == 2


def test_help_shows_the_values_a_run_takes_and_version(capsys):
    for argv, shown in ((["train", "--help"], "default: 120, from preset digits"),
                        (["train", "--preset", "fashion-mnist", "--help"], "default: 10, from preset fashion-mnist"),
                        (["train", "--dataset", "cifar10", "--help"], "default: 250, from preset cifar-paper")):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert f"--epochs EPOCHS {shown}" in text, text
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"suptickets {st.__version__}"


def test_superposer_refuses_a_whole_run_checkpoint(finished_run):
    from suptickets.train.checkpoint import list_checkpoints, load_file
    state = load_file(list_checkpoints(str(finished_run))[-1][1])
    sup = st.Superposer()
    with pytest.raises(ValueError, match=r'got a whole `suptickets train` checkpoint: pass its \["training"\] entry'):
        sup.add(state)
    with pytest.raises(ValueError, match="whose 'epoch' entry is a int, not a tensor"):
        sup.add({"w": torch.zeros(2), "epoch": 3})
    sup.add(state["training"])  # what it names works
    assert sup.count == 1


@pytest.mark.parametrize("content, words", [
    ([1, 2, 3], ["data_batch_1", "not a CIFAR batch"]),
    ({b"data": np.zeros((2, 10), dtype=np.uint8), b"labels": [0, 1]}, ["data_batch_1", "[N, 3072]"]),
    ({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 99]}, ["data_batch_1", "labels"]),
    ({b"labels": [0]}, ["data_batch_1", "data"]),
    (np.array([1, 2], dtype=object), ["data_batch_1"]),
])
def test_a_malformed_cifar_pickle(capsys, tmp_path, content, words):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    good = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 1]}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump(content if name == "data_batch_1" else good, f)
    code, line = _main(capsys, ["--dataset", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1", "--quiet",
                                "--out", str(tmp_path / "run")])
    assert code == 2 and all(w in line for w in words), line


def test_divergence_is_one_line_and_the_files_stay_strict_json(capsys, tmp_path):
    out = tmp_path / "run"
    capsys.readouterr()
    code = cli.main(["train", "--model", "mlp", "--method", "static", "--lr", "1e6", "--epochs", "3",
                     "--no-sup-tickets", "--quiet", "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1 and "diverged at epoch 1, step" in err[0] and "checkpoint" in err[0]
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))


def test_strict_json_writes_null_for_undefined_figures():
    from suptickets.train import strict_json
    assert json.loads(strict_json.dumps({"loss": float("nan"), "x": [1.0, float("inf")]})) == {"loss": None,
                                                                                              "x": [1.0, None]}


# ---- the Python API ---------------------------------------------------------------------------


@pytest.mark.parametrize("make, error, words", [
    (lambda: st.SparseLinear(8, 8, density=0.5, block_size=(2.5, 2.5)), TypeError, ["block_size", "ints"]),
    (lambda: st.SparseConv2d(8, 8, 3, density=0.5, block_size=(2.0, 2)), TypeError, ["block_size"]),
    (lambda: st.SparseLinear(8, 8, density=True, block_size=(2, 2)), TypeError, ["density", "number"]),
    (lambda: st.SparseLinear(8, 8, density="0.5", block_size=(2, 2)), TypeError, ["density", "number"]),
    (lambda: st.SparseLinear(8, 8, density=float("nan"), block_size=(2, 2)), ValueError, ["density"]),
    (lambda: st.sparsify(torch.nn.Sequential(torch.nn.Linear(8, 8)), density=0.5, block_size=(2, 2),
                         exclude=["fc9"]), ValueError, ["exclude", "fc9"]),
    (lambda: st.SparseLinear(8, 8, density=0.5, block_size=(2, 2))(torch.tensor(1.0)), ValueError,
     ["at least 1 dimension"]),
    (lambda: st.SparseConv2d(4, 4, 3, density=0.5, block_size=(2, 2))(torch.tensor(1.0)), ValueError, ["4-D"]),
])
def test_bad_api_arguments(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert all(w in str(info.value) for w in words), str(info.value)


def _trained(total_steps, **kwargs):
    model = torch.nn.Sequential(st.SparseLinear(8, 8, density=0.5, block_size=(2, 2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, opt, st.SparseTraining(model, opt, st.Static(), total_steps=total_steps, **kwargs)


def test_stepping_past_total_steps_is_an_error():
    model, _, sparse = _trained(2)
    for _ in range(2):
        model(torch.randn(2, 8)).sum().backward()
        sparse.step()
    with pytest.raises(RuntimeError, match="total_steps=2"):
        sparse.step()


def test_a_booster_runs_one_training_only():
    boost = st.SupTickets(cycle_steps=1, lr_high=0.01)
    model, opt, _ = _trained(20, sup_tickets=boost)
    with pytest.raises(ValueError, match="already runs another SparseTraining"):
        st.SparseTraining(model, opt, st.Static(), total_steps=30, sup_tickets=boost)


def test_a_nan_score_names_the_layer_and_the_step_before_the_step_is_applied():
    model = torch.nn.Sequential(st.SparseLinear(8, 8, density=0.5, block_size=(2, 2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sparse = st.SparseTraining(model, opt, st.RigL(update_every=2, end=1.0), total_steps=10)
    model(torch.randn(2, 8)).sum().backward()
    sparse.step()
    model(torch.randn(2, 8)).sum().backward()
    model[0].values.grad[0, 0, 0] = float("nan")
    before = model[0].values.detach().clone()
    with pytest.raises(ValueError, match=r"step 2: layer '0' has non-finite gradients"):
        sparse.step()
    assert torch.equal(model[0].values.detach(), before)  # the optimizer step was not applied
