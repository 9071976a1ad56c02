"""The benchmark paths that need a GPU for their figures have a CPU path, run here on tiny settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_benchmark_runs_on_the_cpu() -> None:
    """`make bench-gpu`'s script, on the CPU at 32 px with one timed step, prints its table without recording it
    (torch.compile is left out here: compiling DenseNet-121 on 2 cores takes minutes)."""
    result = subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--resolutions", "32", "--steps", "1",
                             "--workers", "0", "--images", "20", "--no-record"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 32 px")]
    assert len(rows) >= 2 and rows[0].split("|")[3].strip() == "fp32"
    assert all(float(row.split("|")[4].replace(",", "")) > 0 for row in rows)


def test_bench_gpu_refuses_without_a_gpu() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--require-gpu", "--no-record"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "no CUDA device" in result.stderr
