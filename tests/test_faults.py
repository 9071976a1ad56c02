"""Faults: nothing hangs and nothing half-written is trusted. A prepare worker killed mid-way or SIGTERM ends the
command in seconds with one line; worker processes that cannot start fall back to in-process work (parallel.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cxrres.util import parallel
from cxrres.synthetic import synthesize

SRC = Path(__file__).resolve().parents[1] / "src"

#: Loaded by every Python process of the command (workers included) through PYTHONPATH: replaces the decode of one
#: cache row so that the worker decoding row K dies (kill) or stalls (sleep).
HOOK = """
import os, signal, time
import cxrres.data.cache_workers as cache
_decode = cache._decode
def _faulty(task):
    if task[0] == int(os.environ["FAULT_ROW"]):
        if os.environ["FAULT"] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(3600)
    return _decode(task)
cache._decode = _faulty
"""


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faultphantom")
    synthesize(out, n_images=40, size_px=64, seed=3, workers=1, progress=False)
    return out


def _env(hook_dir: Path, fault: str, row: int) -> dict[str, str]:
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    return {**os.environ, "PYTHONPATH": f"{hook_dir}{os.pathsep}{SRC}", "FAULT": fault, "FAULT_ROW": str(row)}


def _prepare(phantom: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cxrres.cli",
        "prepare",
        "--data",
        str(phantom),
        "--resolutions",
        "32",
        "--cache",
        str(cache),
        "--workers",
        "2",
        "--quiet",
    ]


def test_prepare_worker_killed_midway_ends_in_seconds_with_one_line(phantom: Path, tmp_path: Path) -> None:
    env = _env(tmp_path, "kill", 21)
    started = time.monotonic()
    result = subprocess.run(_prepare(phantom, tmp_path / "cache"), capture_output=True, text=True, env=env, timeout=60)
    # the 60 s above is the start-up of two spawned workers on a busy machine; the death itself must end it at once
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("cxrres prepare: error: a worker process died abruptly"), lines
    assert time.monotonic() - started < 60
    # the rerun (no fault) resumes and finishes the cache
    clean = {**os.environ, "PYTHONPATH": str(SRC)}
    again = subprocess.run(
        _prepare(phantom, tmp_path / "cache"), capture_output=True, text=True, env=clean, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert np.load(tmp_path / "cache" / "r32.npy", mmap_mode="r").shape == (40, 32, 32)


def test_prepare_sigterm_while_a_worker_is_stuck_ends_in_seconds(phantom: Path, tmp_path: Path) -> None:
    env = _env(tmp_path, "sleep", 21)
    process = subprocess.Popen(
        _prepare(phantom, tmp_path / "cache"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    work = tmp_path / "cache" / ".work" / "state.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and not work.is_file():
        time.sleep(0.1)
    time.sleep(3)  # the workers have started and one is stuck on row 21
    assert process.poll() is None
    sent = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("prepare did not end within 10 s of SIGTERM")
    assert time.monotonic() - sent <= 10
    assert process.returncode == 143 and "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("cxrres prepare: "), stderr


def _square(x: int) -> int:
    return x * x


def test_ordered_map_matches_map_and_raises_on_worker_death() -> None:
    assert list(parallel.ordered_map(_square, list(range(23)), 2, chunksize=3)) == [x * x for x in range(23)]
    with pytest.raises(parallel.WorkerDied):
        list(parallel.ordered_map(os._exit, [0, 1, 2, 3, 4], 2, chunksize=1))


def test_unguarded_main_with_spawn_falls_back_in_process(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent("""
        from cxrres.util.parallel import ordered_map
        print(sum(ordered_map(abs, list(range(-10, 10)), 2)))
    """)
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "100"
    assert "working in this process instead" in result.stderr
