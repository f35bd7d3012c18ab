"""Checkpoints of a run folder, written atomically.

``checkpoints/epoch-0007.pt`` holds everything a resume needs after epoch 7. A checkpoint
is written to a temporary file in the same folder, flushed to disk and renamed over its
final name, so a crash leaves either the old set of files or the new one, never half a
file; the ``keep`` newest are kept. A file that cannot be read (truncated, corrupt) is
reported by name with the intact one it can resume from instead.
"""
from __future__ import annotations

import os
import re
import tempfile

import torch

_NAME = re.compile(r"^epoch-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read."""


def atomic_save(obj, path: str) -> None:
    """``torch.save(obj, path)`` through a temporary file and an atomic rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(text: str, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """``(epoch, path)`` of the run's checkpoints, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name)) for name in os.listdir(folder)
             if (m := _NAME.match(name))]
    return sorted(found)


def save_checkpoint(state: dict, run_dir: str, epoch: int, keep: int = 2) -> str:
    """Writes the checkpoint of ``epoch`` and removes all but the ``keep`` newest."""
    path = os.path.join(checkpoint_dir(run_dir), f"epoch-{epoch:04d}.pt")
    atomic_save(state, path)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        os.remove(old)
    return path


def load_latest(run_dir: str, map_location="cpu") -> dict:
    """The newest checkpoint of ``run_dir``; raises ``CheckpointError`` naming the file when
    it cannot be read, and which older intact checkpoint is there."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir(run_dir)}: nothing to resume")
    path = found[-1][1]
    try:
        return _read(path, map_location)
    except Exception as exc:
        intact = None
        for _, older in reversed(found[:-1]):
            try:
                _read(older, map_location)
                intact = older
                break
            except Exception:
                continue
        hint = (f"; the previous checkpoint {intact} is intact: delete {os.path.basename(path)} to resume from it"
                if intact else "")
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}){hint}") from None


def _read(path: str, map_location) -> dict:
    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or "training" not in state:
        raise ValueError("not a suptickets checkpoint")
    return state
