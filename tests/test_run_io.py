"""A run directory stays sound: checkpoints appear whole or not at all (a real full tmpfs mid-write), a damaged
last.ckpt falls back to best.ckpt at resume, an unsafe one is refused in one line, one writer per run directory."""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from cxrres import runs
from cxrres.util import parallel
from cxrres.cli import main
from cxrres.config import TrainConfig
from cxrres.training.checkpoints import AtomicCheckpointIO, checkpoint_problem
from cxrres.synthetic import synthesize
from cxrres.training.train import train

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("iophantom")
    synthesize(out, n_images=40, size_px=64, seed=4, workers=1, progress=False)
    return str(out)


def _config(phantom: str, out: Path, cache: Path, **overrides) -> TrainConfig:
    settings = dict(
        data=phantom,
        resolution_px=32,
        weights="none",
        out=str(out),
        cache=str(cache),
        arch="resnet34",
        max_epochs=2,
        batch_size=8,
        progress=False,
    )
    return TrainConfig(**(settings | overrides))


def _argv(phantom: str, out: Path, cache: Path) -> list[str]:
    return [
        "train",
        "--data",
        phantom,
        "--resolution",
        "32",
        "--weights",
        "none",
        "--arch",
        "resnet34",
        "--max-epochs",
        "2",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--quiet",
    ]


class _Crash(Callback):
    """Raises at the start of `epoch` (1-based): a process killed after epoch-1's checkpoints."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            raise RuntimeError("simulated kill")


def _interrupted_run(phantom: str, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(_config(phantom, run, tmp_path / "cache"), callbacks=[_Crash(epoch=2)])
    return run


def test_checkpoint_write_failure_keeps_the_previous_file_whole(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(parallel.os, "fsync", full)
    with pytest.raises(OSError) as caught:
        AtomicCheckpointIO().save_checkpoint({"epoch": 2, "state_dict": {"w": torch.zeros(1000)}}, path)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


class _FillDisk(Callback):
    """Before epoch 1's checkpoints are written, fills the run's file system but for 1.5 checkpoints: best.ckpt
    fits, last.ckpt does not (as when another job filled the disk)."""

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            buffer = io.BytesIO()
            torch.save(trainer._checkpoint_connector.dump_checkpoint(), buffer)
            run = Path(trainer.default_root_dir)
            with open(run.parent / "filler", "wb") as handle:
                handle.write(b"\0" * max(0, shutil.disk_usage(run).free - len(buffer.getvalue()) * 3 // 2))


def test_full_disk_during_checkpoint_write_then_rerun_resumes(phantom: str, tmp_path: Path, capsys) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=800m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        run, cache = disk / "run", tmp_path / "cache"
        with pytest.raises(OSError) as caught:
            train(_config(phantom, run, cache), callbacks=[_FillDisk()])
        assert caught.value.errno == errno.ENOSPC
        ckpts = sorted((run / runs.CHECKPOINTS).iterdir())
        assert [p.name for p in ckpts if not p.name.endswith(".ckpt")] == []  # no temporary file left behind
        assert all(checkpoint_problem(p) is None for p in ckpts), [(p, checkpoint_problem(p)) for p in ckpts]
        (disk / "filler").unlink()  # a larger disk: the same command again, nothing deleted by hand
        capsys.readouterr()
        assert main(_argv(phantom, run, cache)) == 0, capsys.readouterr().err
        assert runs.read_status(run).status == "finished" and len(pd.read_csv(run / runs.METRICS)) == 2
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_truncated_last_checkpoint_falls_back_to_best(phantom: str, tmp_path: Path, capsys) -> None:
    run = _interrupted_run(phantom, tmp_path)
    last = run / runs.CHECKPOINTS / runs.LAST
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 4])  # what a full disk left under the final name before writes were atomic
    capsys.readouterr()
    assert main(_argv(phantom, run, tmp_path / "cache")) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert f"warning: {last}: damaged" in err and "resuming from best.ckpt instead" in err, err
    assert runs.read_status(run).status == "finished" and len(pd.read_csv(run / runs.METRICS)) == 2


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unsafe_last_checkpoint_is_refused_in_one_line(phantom: str, tmp_path: Path, capsys) -> None:
    run = _interrupted_run(phantom, tmp_path)
    last = run / runs.CHECKPOINTS / runs.LAST
    torch.save({"epoch": 1, "state_dict": {}, "payload": _Evil()}, last)
    capsys.readouterr()
    assert main(_argv(phantom, run, tmp_path / "cache")) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith(f"cxrres train: error: {last}: refused to load"), captured.err
    assert "Traceback" not in captured.err and "this must never run" not in captured.out


def test_second_writer_of_a_run_directory_is_refused(phantom: str, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from cxrres.training.checkpoints import lock_run_dir\nwith lock_run_dir(Path(sys.argv[1])):\n"
            "    print('locked', flush=True); time.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(_argv(phantom, run, tmp_path / "cache")) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pid {holder.pid} on " in err[0] and "another cxrres process is writing" in err[0], (
            err
        )
        assert not (run / runs.CONFIG).exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(_argv(phantom, run, tmp_path / "cache")) == 0  # the holder ended: its lock went with it
