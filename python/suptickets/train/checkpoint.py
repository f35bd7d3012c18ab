"""Checkpoints of a run folder: written atomically, sealed by a digest, verified on load,
read without executing code.

``checkpoints/epoch-0007.pt`` holds everything a resume needs after epoch 7, and
``epoch-0007.pt.sha256`` its SHA-256 (``sha256sum -c`` reads it). The checkpoint is
serialised in memory and written to a temporary file in the same folder, flushed to disk;
its digest is written (the same way) and only then is the checkpoint renamed over its final
name. A checkpoint counts only with its digest ("sealed"): a crash leaves the old set of
checkpoints or the new one, never half a file taken for a checkpoint, and a checkpoint without
a seal can only come from a suptickets older than the seals. Temporary files of a killed write (``.tmp-*``)
are removed by :func:`remove_temporaries` at the next start. Files are read with
``torch.load(weights_only=True)``: tensors and plain containers only, so a planted file cannot
run code. A checkpoint whose bytes do not match its digest is reported by name, with the
newest intact one that a resume can use instead.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import tempfile

import torch

_NAME = re.compile(r"^epoch-(\d+)\.pt$")
DIGEST_SUFFIX = ".sha256"
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged or cannot be written."""


def _write_error(exc: OSError, path: str) -> CheckpointError:
    folder = os.path.dirname(os.path.abspath(path))
    if exc.errno == errno.ENOSPC:
        return CheckpointError(f"no space left on {folder}: could not write {os.path.basename(path)} "
                               "(the earlier files are intact)")
    if exc.errno == errno.EFBIG:
        return CheckpointError(f"file size limit reached writing {path} (ulimit -f); the earlier files are intact")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CheckpointError(f"cannot write to {folder} ({exc.strerror})")
    return CheckpointError(f"could not write {path}: {exc.strerror or exc}")


def atomic_write_bytes(data: bytes, path: str, before_rename=None) -> None:
    """``data`` into ``path`` through a temporary file of the same folder, fsync and an atomic
    rename (``before_rename()`` is called just before it); on any failure the temporary file is
    removed and ``CheckpointError`` says why."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        os.fchmod(fd, _FILE_MODE)  # as open() would create it (mkstemp makes it private)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _write_error(exc, path) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def append_text(text: str, path: str) -> None:
    """Appends ``text`` to ``path`` (one line of a log that a resume rewrites from the
    checkpoint); ``CheckpointError`` says why it could not."""
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError as exc:
        raise _write_error(exc, path) from None


def atomic_write_text(text: str, path: str) -> None:
    atomic_write_bytes(text.encode("utf-8"), path)


def digest_path(path: str) -> str:
    return path + DIGEST_SUFFIX


def atomic_save(obj, path: str) -> str:
    """``torch.save(obj)`` written atomically to ``path`` with its SHA-256 beside it (the seal),
    the seal first: the file appears only once its seal is there, so a checkpoint without one
    can only have been written by a suptickets older than the seals. Returns the hex digest."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(data, path, before_rename=lambda: atomic_write_text(
        f"{digest}  {os.path.basename(path)}\n", digest_path(path)))
    return digest


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def remove_temporaries(run_dir: str) -> list[str]:
    """Removes the ``.tmp-*`` files that a killed write left in the run folder and its
    checkpoint folder; returns their names."""
    removed = []
    for folder in (run_dir, checkpoint_dir(run_dir)):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(".tmp-"):
                    os.remove(os.path.join(folder, name))
                    removed.append(name)
    return removed


def unsealed_checkpoints(run_dir: str) -> list[str]:
    """Checkpoint files without a digest (written by an older suptickets): never resumed from."""
    folder = checkpoint_dir(run_dir)
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if _NAME.match(n) and not os.path.isfile(os.path.join(folder, n + DIGEST_SUFFIX)))


def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """``(epoch, path)`` of the run's sealed checkpoints (those with a digest), oldest first."""
    folder = checkpoint_dir(run_dir)
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name)) for name in os.listdir(folder)
             if (m := _NAME.match(name)) and os.path.isfile(os.path.join(folder, name + DIGEST_SUFFIX))]
    return sorted(found)


def save_checkpoint(state: dict, run_dir: str, epoch: int, keep: int = 2) -> str:
    """Writes the checkpoint of ``epoch`` and removes all but the ``keep`` newest."""
    path = os.path.join(checkpoint_dir(run_dir), f"epoch-{epoch:04d}.pt")
    atomic_save(state, path)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        os.remove(digest_path(old))
        os.remove(old)
    return path


def verify(path: str) -> bytes:
    """The bytes of ``path`` after checking them against its digest file (``CheckpointError``
    naming the file otherwise)."""
    try:
        with open(digest_path(path)) as f:
            expected = f.read().split()[0].strip().lower()
    except (OSError, IndexError):
        raise CheckpointError(f"{path} has no readable digest {os.path.basename(digest_path(path))}") from None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror})") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: it does not match its SHA-256 digest")
    return data


def load_file(path: str, map_location="cpu"):
    """The object of a sealed file, verified and read with ``weights_only=True``."""
    data = verify(path)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        why = (f"it names {named.group(1)}, which a checkpoint has no reason to call: nothing was run" if named
               else "not a file torch.save wrote")
        raise CheckpointError(f"checkpoint {path} holds something other than tensors and plain containers, or is "
                              f"truncated or corrupt ({why})") from None


def load_latest(run_dir: str, map_location="cpu") -> tuple[dict, str]:
    """The newest checkpoint of ``run_dir`` and its path; raises ``CheckpointError`` naming the
    file when it is damaged, and which older intact checkpoint is there to resume from."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir(run_dir)}: nothing to resume")
    path = found[-1][1]
    try:
        return _read(path, map_location), path
    except CheckpointError as exc:
        intact = None
        for _, older in reversed(found[:-1]):
            try:
                _read(older, map_location)
                intact = older
                break
            except CheckpointError:
                continue
        hint = (f"; the previous checkpoint {intact} is intact: delete {os.path.basename(path)} (and its "
                f"{DIGEST_SUFFIX}) to resume from it" if intact else "; no intact checkpoint is left")
        raise CheckpointError(f"{exc}{hint}") from None


def _read(path: str, map_location) -> dict:
    state = load_file(path, map_location)
    if not isinstance(state, dict) or "training" not in state:
        raise CheckpointError(f"{path} is not a suptickets checkpoint")
    return state
