"""The real NIH images through the whole pipeline, as a user runs it: `cxrres train` (1 epoch at 32 px on the 405 real
images of ../shared, --allow-missing for the other 111,715 listed), `cxrres localize` on the official boxes among
them, `cxrres evaluate` — each a subprocess, on a read-only copy of the data root (the images symlinked, so their
bytes, with their RGBA files, are the real ones) with the default cache, and nothing may be written under the root.
Skipped without the real material."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cxrres.data.cache_store import default_cache_dir

#: The 10 RGBA originals among the 405 include this one (see ../shared/data/chestxray14/SOURCES.md).
RGBA_IMAGE = "00000100_000.png"


@pytest.fixture(autouse=True)
def _user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default caches go to a temporary directory, never ~/.cache (subprocesses inherit it)."""
    home = tmp_path / "user-cache"
    monkeypatch.setenv("CXRRES_CACHE_DIR", str(home))
    return home


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under `root` (links not followed) with its (mode, size, mtime ns)."""
    return {
        str(p.relative_to(root)): (p.lstat().st_mode, p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in [root, *root.rglob("*")]
    }


def _read_only_copy(real_root: Path, target: Path) -> Path:
    """The metadata files copied and every image symlinked into `target`, then every directory and file made a-w."""
    target.mkdir()
    for path in real_root.iterdir():
        if path.is_file():
            shutil.copy2(path, target / path.name)
    shutil.copytree(real_root / "splits", target / "splits")
    (target / "images").mkdir()
    for image in (real_root / "images").iterdir():
        (target / "images" / image.name).symlink_to(image)
    for path in [target, *target.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~0o222)
    return target


def _cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m cxrres.cli ARGS` with this test's environment; fails with its stderr if it does not exit 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "cxrres.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, f"cxrres {' '.join(args)}:\n{done.stderr[-3000:]}"
    return done


def test_train_localize_evaluate_on_the_real_images(real_root: Path, tmp_path: Path, record_property) -> None:
    root = _read_only_copy(real_root, tmp_path / "chestxray14")
    before = _snapshot(root)
    run = tmp_path / "run"
    started = time.perf_counter()
    try:
        _cli(
            "train",
            "--data",
            str(root),
            "--allow-missing",
            "--weights",
            "none",
            "--max-epochs",
            "1",
            "--resolution",
            "32",
            "--out",
            str(run),
            "--workers",
            "0",
            "--precision",
            "32",
            "--quiet",
        )  # bf16-mixed on a CPU: 31 s for the 11 steps
        trained = time.perf_counter()
        localized = _cli("localize", str(run), "--data", str(root), "--quiet")
        evaluated = _cli("evaluate", str(run), "--n-boot", "50")
        finished = time.perf_counter()
        after = _snapshot(root)
    finally:
        for path in [root, *root.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
    record_property("real_pipeline_s", round(finished - started, 1))
    record_property("real_train_s", round(trained - started, 1))
    assert after == before, "something was written under the data root"

    cache = default_cache_dir(root)
    assert (cache / "r32.npy").is_file()  # the default cache, outside the data root
    with open(cache / "index.csv", newline="") as handle:
        index = {row["image"]: row for row in csv.DictReader(handle)}
    assert len(index) == 405 and all(row["ok"] == "True" for row in index.values())
    assert index[RGBA_IMAGE]["source_height_px"] == "1024"

    with open(run / "metrics.csv", newline="") as handle:
        epochs = list(csv.DictReader(handle))
    assert len(epochs) == 1
    with open(run / "predictions_test.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 216  # the CheXNet test images among the 405
    # the 22 official boxes in the CheXNet test part, by class (45 of the 60 are Pneumonia overall)
    rows = [line.split() for line in localized.stdout.splitlines()[1:] if line.split() and line.split()[0] != "wrote"]
    boxes = {row[0]: int(row[1]) for row in rows if len(row) == 5 and row[1].isdigit() and row[0] != "mean"}
    assert sum(boxes.values()) == 22 and boxes.get("Pneumonia", 0) > 0, localized.stdout
    assert (run / "localization.csv").is_file() and (run / "auc.csv").is_file()
    assert any(line.startswith("mean") for line in evaluated.stdout.splitlines()), evaluated.stdout
