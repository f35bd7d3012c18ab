"""Faults, injected: kill -9 at random points, damaged and planted files, a full disk, a
read-only folder, a stalled torchrun rank. Each ends in a resume equal to the uninterrupted
run, or in one line naming the cause and losing nothing."""
import concurrent.futures
import hashlib
import os
import pickle
import random
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from suptickets.train import cli
from suptickets.train.checkpoint import list_checkpoints

RUN = ["train", "--model", "mlp", "--epochs", "3", "--update-every", "10", "--cycle-epochs", "1",
       "--cycle-rate", "0.34", "--quiet", "--threads", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
KILLS = 20


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "suptickets", *args], capture_output=True, text=True, env=ENV,
                          timeout=600, **kwargs)


def _same_model(a, b) -> bool:
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _one_line(err: str) -> str:
    """The one line a failure prints (a note on the run's length, said before training, aside)."""
    lines = [line for line in err.strip().splitlines() if line.strip() and "suptickets train: note:" not in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    began = time.perf_counter()
    proc = _cli(*RUN, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, time.perf_counter() - began


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_is_bit_identical(uninterrupted, tmp_path):
    whole, duration = uninterrupted
    rng = random.Random(0)
    delays = [rng.uniform(0.3, duration) for _ in range(KILLS)]

    def killed_then_resumed(i: int):
        out = tmp_path / f"kill{i}"
        proc = subprocess.Popen([sys.executable, "-m", "suptickets", *RUN, "--out", str(out)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delays[i])
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (out / "config.json").is_file():
            done = _cli("train", "--resume", str(out))
        else:  # killed before the run folder existed: nothing to resume
            done = _cli(*RUN, "--out", str(out))
        assert done.returncode == 0, (i, delays[i], done.stderr[-2000:])
        leftovers = [n for d in (out, out / "checkpoints") for n in os.listdir(d) if n.startswith(".tmp-")]
        assert not leftovers, leftovers
        return _same_model(whole / "model.pt", out / "model.pt")

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        same = list(pool.map(killed_then_resumed, range(KILLS)))
    assert all(same), [d for d, s in zip(delays, same) if not s]


def _short_run(tmp_path, epochs=3):
    out = tmp_path / "run"
    assert cli.main(["train", "--model", "mlp", "--epochs", str(epochs), "--update-every", "10", "--no-sup-tickets",
                     "--quiet", "--threads", "1", "--out", str(out)]) == 0
    return out


def test_a_flipped_byte_is_detected_and_the_intact_checkpoint_named(tmp_path, capsys):
    out = _short_run(tmp_path)
    (_, older), (_, newest) = list_checkpoints(str(out))[-2:]
    data = bytearray(open(newest, "rb").read())
    data[len(data) // 3] ^= 0x10  # inside a tensor's bytes: the zip structure still reads
    open(newest, "wb").write(bytes(data))
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert newest in line and "SHA-256" in line and older in line


def test_temporary_files_of_a_killed_write_are_removed_and_never_taken(tmp_path, capsys):
    out = _short_run(tmp_path, epochs=2)
    for folder in (out, out / "checkpoints"):
        (folder / ".tmp-abc123").write_bytes(b"half a checkpoint")
    (out / "checkpoints" / "epoch-0009.pt").write_bytes(b"unsealed: no digest")  # never taken for a checkpoint
    assert [e for e, _ in list_checkpoints(str(out))] == [1, 2]
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 0
    assert not [n for d in (out, out / "checkpoints") for n in os.listdir(d) if n.startswith(".tmp-")]


def test_a_checkpoint_without_its_seal_is_not_resumed_from(tmp_path, capsys):
    """A seal is written before its checkpoint appears: a checkpoint without one comes from an older
    suptickets, and is named, with how to seal it, instead of being trusted or silently skipped."""
    out = _short_run(tmp_path, epochs=1)
    for path in (out / "checkpoints").glob("*.sha256"):
        path.unlink()
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "epoch-0001.pt has no SHA-256 seal" in line and "sha256sum" in line
    assert cli.main(["train", "--model", "mlp", "--epochs", "1", "--no-sup-tickets", "--update-every", "10",
                     "--quiet", "--out", str(out)]) == 2
    assert "already holds a run" in _one_line(capsys.readouterr().err)  # and it is not overwritten


class _Planted:
    """A pickle that, when loaded by plain pickle, creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_planted_checkpoint_runs_nothing(tmp_path, capsys):
    out = _short_run(tmp_path, epochs=1)
    marker = tmp_path / "MARKER"
    path = out / "checkpoints" / "epoch-0005.pt"
    torch.save({"training": _Planted(marker)}, path)  # with a valid seal: the attacker can compute it
    path.with_name(path.name + ".sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "epoch-0005.pt" in line and "nothing was run" in line
    assert not marker.exists()


def test_a_planted_cifar_file_runs_nothing(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    good = {b"data": np.zeros((4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
    for name in [f"data_batch_{i}" for i in range(2, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump(good, f)
    marker = tmp_path / "MARKER"
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Planted(marker), b"labels": [0]}, f)
    capsys.readouterr()
    assert cli.main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1", "--quiet",
                     "--out", str(tmp_path / "run")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "data_batch_1" in line and "no reason to call" in line
    assert not marker.exists()


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


@pytest.mark.slow
def test_a_file_size_limit_gives_one_line_and_loses_nothing(uninterrupted, tmp_path):
    whole, _ = uninterrupted
    out = tmp_path / "run"
    proc = _cli(*RUN, "--out", str(out), preexec_fn=_limit_file_size)  # a checkpoint is ~160 KB: the first fails
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "file size limit" in line and "epoch-0001.pt" in line
    assert list_checkpoints(str(out)) == []  # nothing half-written is taken for a checkpoint
    done = _cli("train", "--resume", str(out))  # once there is room again
    assert done.returncode == 0, done.stderr[-2000:]
    assert _same_model(whole / "model.pt", out / "model.pt")


def _read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    try:
        (folder / "probe").write_text("")
    except OSError:
        return folder  # permissions hold (not root)
    os.remove(folder / "probe")
    os.chmod(folder, 0o755)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("as root, a read-only folder needs a read-only mount, and mount is not permitted here")
    return folder


def test_a_read_only_folder_gives_one_line(tmp_path, capsys):
    folder = _read_only_folder(tmp_path)
    try:
        capsys.readouterr()
        assert cli.main(["train", "--model", "mlp", "--epochs", "1", "--no-sup-tickets", "--update-every", "10",
                         "--quiet", "--out", str(folder / "run")]) == 2
        line = _one_line(capsys.readouterr().err)
        assert str(folder / "run") in line and "cannot create the run folder" in line
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.mark.slow
def test_a_stalled_rank_ends_the_job_within_the_timeout(tmp_path):
    out = tmp_path / "run"
    timeout = 8
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "suptickets", "train", "--model", "mlp", "--epochs", "40", "--no-sup-tickets",
                             "--update-every", "10", "--quiet", "--threads", "1", "--dist-timeout", str(timeout),
                             "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    try:
        began = time.time()
        while not (out / "checkpoints" / "epoch-0001.pt.sha256").exists():
            assert proc.poll() is None and time.time() - began < 300, "the job did not start training"
            time.sleep(0.1)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2, workers
        os.kill(int(workers[1]), signal.SIGSTOP)  # rank 1: started second
        stopped = time.time()
        _, err = proc.communicate(timeout=timeout + 90)  # the launcher's kill grace is 30 s
        ended = time.time() - stopped
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    lines = [line for line in err.splitlines() if line.startswith("suptickets train: error:")]
    assert lines and "rank 1 did not answer within --dist-timeout 8 s" in lines[0], err[-3000:]
    assert ended < timeout + 60, ended


def test_a_full_disk_is_named_and_the_old_file_kept(tmp_path, monkeypatch):
    import errno

    from suptickets.train.checkpoint import CheckpointError, atomic_save

    path = tmp_path / "ck.pt"
    atomic_save({"a": torch.ones(2)}, str(path))

    def full(fd, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match=f"no space left on {tmp_path}"):
        atomic_save({"a": torch.zeros(2)}, str(path))
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["ck.pt", "ck.pt.sha256"]
