"""SIGTERM (a scheduler pre-empting or timing out a job) to `cxrres train`, sent as a real signal mid-training: exit
143 with one closing line and no traceback, and the same command then continues to the metrics of an uninterrupted
run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cxrres.errors import EXIT_TERMINATED
from cxrres.synthetic import synthesize


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sigphantom")
    synthesize(out, n_images=60, size_px=64, seed=5, workers=1, progress=False)
    return out


def _command(phantom: Path, out: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cxrres.cli",
        "train",
        "--data",
        str(phantom),
        "--resolution",
        "32",
        "--weights",
        "none",
        "--max-epochs",
        "3",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--quiet",
    ]


def test_sigterm_mid_training_resumes_to_identical_metrics(phantom: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    reference = subprocess.run(_command(phantom, tmp_path / "ref", cache), capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    run = tmp_path / "run"
    process = subprocess.Popen(_command(phantom, run, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:  # wait for epoch 1, then stop it inside epoch 2
        metrics = run / "metrics.csv"
        if metrics.is_file() and len(pd.read_csv(metrics)) >= 1:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training finished before the signal could be sent"
    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == EXIT_TERMINATED == 143
    last = stderr.strip().splitlines()[-1]  # before it: the run's progress lines
    assert (
        "Traceback" not in stderr and last.startswith("cxrres train: ") and "stopped by SIGTERM during epoch" in last
    ), stderr
    assert "resume from checkpoints/last.ckpt" in last
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "interrupted" and status["epochs"] < 3
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "predictions_test.csv").exists()
    resumed = subprocess.run(_command(phantom, run, cache), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "metrics.csv").read_text() == (tmp_path / "ref" / "metrics.csv").read_text()
    assert (run / "predictions_test.csv").read_text() == (tmp_path / "ref" / "predictions_test.csv").read_text()
