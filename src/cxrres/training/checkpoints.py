"""What keeps a run directory sound: checkpoints written whole (temporary name, fsync, rename), the checkpoint a
resumed run starts from checked first (damaged: fall back; unsafe: refuse), and one writer per run directory
(an flock on RUN/.lock held while `cxrres train` writes it). See docs/training.md."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cxrres import runs
from cxrres.errors import CxrresError
from cxrres.models.registry import safe_torch_load
from cxrres.util.parallel import write_bytes_atomic

#: The lock file of a run directory; it holds "pid P on HOST" of the process that writes the run.
LOCK = ".lock"


class RunLocked(CxrresError):
    """Another process is writing the run directory."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but a checkpoint only ever appears under its final name whole: it is
    serialised in memory, written to NAME.tmp, fsynced and renamed (a full disk leaves the previous file intact)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(Path(path), buffer.getbuffer())


def checkpoint_problem(path: Path) -> str | None:
    """Why the Lightning checkpoint at `path` cannot be resumed from (truncated, not a checkpoint), or None if it
    can; WeightsError (one line, as for any weights file) if it holds Python objects other than tensors."""
    try:
        obj = safe_torch_load(path)
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        return (
            "not a readable PyTorch file: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
        )
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict) or "epoch" not in obj:
        return "not a Lightning checkpoint (no state_dict and epoch)"
    return None


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint to resume `run_dir` from: last.ckpt if sound; if it is damaged or missing (a full disk during
    its write), best.ckpt if that is sound (its later epochs are trained again), else none (from the start); each
    fallback is one warning line."""
    last, best = run_dir / runs.CHECKPOINTS / runs.LAST, run_dir / runs.CHECKPOINTS / runs.BEST
    if not last.is_file() and not best.is_file():
        return None
    problem = checkpoint_problem(last) if last.is_file() else "missing"
    if problem is None:
        return last
    if best.is_file() and checkpoint_problem(best) is None:
        print(
            f"warning: {last}: {'missing' if problem == 'missing' else f'damaged ({problem})'}; resuming from "
            f"{runs.BEST} instead",
            file=sys.stderr,
        )
        return best
    print(f"warning: {last}: {problem} and no sound {runs.BEST}; training from the start", file=sys.stderr)
    return None


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold RUN/.lock (flock, exclusive) while the block runs; RunLocked naming the holder if another process has it.

    The kernel drops the lock when its holder ends however it ends, so a crash never leaves a stale lock. A directory
    this call created is removed again when the block leaves nothing in it but the lock (a run refused before it
    wrote anything leaves no trace)."""
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text(errors="replace").strip() or "holder unknown"
        os.close(fd)
        raise RunLocked(
            f"{run_dir}: another cxrres process is writing this run ({holder}); wait for it to end, "
            "or choose another --out"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK]:
            path.unlink(missing_ok=True)
            run_dir.rmdir()
        os.close(fd)
