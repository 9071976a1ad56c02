"""Resolution caches: round trip, reuse, invalidation, resume after interruption, bad images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cxrres.data import cache as cache_module
from cxrres.data.cache import ResolutionCache, array_name, parse_resolutions, prepare_cache
from cxrres.data.images import pad_to_square, read_grey
from cxrres.errors import CacheError

from conftest import exact_area_resize


def _files(cache_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache_dir.glob("r*.npy"))}


def _assert_round_trip(data_dir: Path, cache_dir: Path, resolution: int, names: list[str] | None = None) -> None:
    cache = ResolutionCache.open(cache_dir, resolution)
    array = cache.array()
    for name in names or list(cache.rows):
        path = next(data_dir.glob(f"images*/**/{name}")) if not (data_dir / "images" / name).exists() else data_dir / "images" / name
        reference = exact_area_resize(pad_to_square(read_grey(path)), resolution)
        assert np.abs(array[cache.rows[name]].astype(float) - reference).max() <= 1.0, name


def test_round_trip_equals_direct_area_resize(mini: Path, tmp_path: Path) -> None:
    report = prepare_cache(mini, "16,32,8", tmp_path / "c", workers=1, progress=False)
    assert report.built_px == (8, 16, 32) and report.n_images == 14 and not report.missing
    for r in (8, 16, 32):
        _assert_round_trip(mini, tmp_path / "c", r)
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["resolutions_px"]["32"]["shape"] == [14, 32, 32] and manifest["n_images"] == 14
    cache = ResolutionCache.open(tmp_path / "c", 32)
    assert cache.source_size_px["00000007_001.png"] == 56  # non-square 40x56 padded to 56
    assert not (tmp_path / "c" / ".work").exists()


def test_parallel_equals_serial(mini: Path, tmp_path: Path) -> None:
    prepare_cache(mini, [16], tmp_path / "serial", workers=1, progress=False)
    prepare_cache(mini, [16], tmp_path / "parallel", workers=2, progress=False)
    assert _files(tmp_path / "serial") == _files(tmp_path / "parallel")


def test_reuse_and_adding_a_resolution(mini: Path, tmp_path: Path) -> None:
    prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    before = (tmp_path / "c" / "r16.npy").stat().st_mtime_ns
    again = prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    assert again.built_px == () and again.reused_px == (16,)
    more = prepare_cache(mini, [16, 24], tmp_path / "c", workers=1, progress=False)
    assert more.built_px == (24,) and more.reused_px == (16,)
    assert (tmp_path / "c" / "r16.npy").stat().st_mtime_ns == before
    _assert_round_trip(mini, tmp_path / "c", 24)


def test_changed_source_invalidates_the_cache(mini: Path, tmp_path: Path) -> None:
    prepare_cache(mini, [16, 24], tmp_path / "c", workers=1, progress=False)
    image = mini / "images" / "00000002_000.png"
    from PIL import Image

    Image.fromarray(np.full((48, 48), 200, np.uint8)).save(image)
    os.utime(image, ns=(1, 1))
    report = prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    assert report.built_px == (16,) and report.reused_px == ()
    cache = ResolutionCache.open(tmp_path / "c", 16)
    assert (cache.array()[cache.rows["00000002_000.png"]] == 200).all()
    assert not (tmp_path / "c" / "r24.npy").exists()  # stale resolution removed, not trusted
    with pytest.raises(CacheError, match="resolution 24 px not prepared"):
        ResolutionCache.open(tmp_path / "c", 24)


def test_interrupted_then_resumed_is_byte_identical(mini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare_cache(mini, [16, 32], tmp_path / "clean", workers=1, progress=False)
    real_decode = cache_module._decode

    def interrupt_at_row_6(task):
        if task[0] == 6:
            raise KeyboardInterrupt
        return real_decode(task)

    monkeypatch.setattr(cache_module, "CHECKPOINT_EVERY_S", 0.0)
    monkeypatch.setattr(cache_module, "_decode", interrupt_at_row_6)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(mini, [16, 32], tmp_path / "c", workers=1, progress=False)
    assert not (tmp_path / "c" / "manifest.json").exists()  # nothing looks complete
    with pytest.raises(CacheError, match="no complete cache"):
        ResolutionCache.open(tmp_path / "c", 16)
    assert json.loads((tmp_path / "c" / ".work" / "state.json").read_text())["done"] == 6
    monkeypatch.setattr(cache_module, "_decode", real_decode)
    report = prepare_cache(mini, [16, 32], tmp_path / "c", workers=1, progress=False)
    assert report.resumed_from == 6
    assert _files(tmp_path / "c") == _files(tmp_path / "clean")
    assert (tmp_path / "c" / "index.csv").read_bytes() == (tmp_path / "clean" / "index.csv").read_bytes()


def test_different_resolutions_restart_the_pass(mini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_decode = cache_module._decode
    monkeypatch.setattr(cache_module, "CHECKPOINT_EVERY_S", 0.0)
    monkeypatch.setattr(cache_module, "_decode", lambda t: (_ for _ in ()).throw(KeyboardInterrupt) if t[0] == 3 else real_decode(t))
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    monkeypatch.setattr(cache_module, "_decode", real_decode)
    report = prepare_cache(mini, [16, 32], tmp_path / "c", workers=1, progress=False)
    assert report.resumed_from == 0 and report.built_px == (16, 32)
    _assert_round_trip(mini, tmp_path / "c", 16)


def test_corrupt_image_stops_or_is_skipped(mini: Path, tmp_path: Path) -> None:
    bad = mini / "images" / "00000004_001.png"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(CacheError, match=r"00000004_001.png: cannot decode image.*--skip-bad"):
        prepare_cache(mini, [16], tmp_path / "c", workers=2, progress=False)
    assert not (tmp_path / "c" / "manifest.json").exists()
    report = prepare_cache(mini, [16], tmp_path / "c", workers=2, skip_bad=True, progress=False)
    assert report.resumed_from > 0
    assert [s["image"] for s in report.skipped] == ["00000004_001.png"]
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert [s["image"] for s in manifest["skipped"]] == ["00000004_001.png"]
    cache = ResolutionCache.open(tmp_path / "c", 16)
    assert len(cache.rows) == 13 and "00000004_001.png" not in cache.rows
    with pytest.raises(CacheError, match=r"1 images not in the cache \(missing or skipped; first: 00000004_001.png\)"):
        cache.rows_of(["00000004_001.png"])


def test_missing_images_are_reported_and_left_out(mini: Path, tmp_path: Path) -> None:
    (mini / "images" / "00000005_000.png").unlink()
    report = prepare_cache(mini, [8], tmp_path / "c", workers=1, progress=False)
    assert report.missing == ["00000005_000.png"] and report.n_images == 13


def test_kaggle_layout_is_cached(mini: Path, tmp_path: Path) -> None:
    target = mini / "images_001" / "images"
    target.parent.mkdir()
    (mini / "images").rename(target)
    report = prepare_cache(mini, [8], tmp_path / "c", workers=1, progress=False)
    assert report.n_images == 14
    assert "images_001/images/00000001_000.png" in (tmp_path / "c" / "index.csv").read_text()


def test_bad_resolutions() -> None:
    assert parse_resolutions("64, 32,64") == (32, 64)
    with pytest.raises(CacheError, match="comma-separated integers"):
        parse_resolutions("64,abc")
    with pytest.raises(CacheError, match="out of range"):
        parse_resolutions("4")


# ---- real 1024-px images (skipped without ../shared) ----


def test_real_images_round_trip(real_root: Path, tmp_path: Path) -> None:
    report = prepare_cache(real_root, [64], tmp_path / "c", workers=2, progress=False)
    assert report.n_images == 405 and not report.skipped
    cache = ResolutionCache.open(tmp_path / "c", 64)
    assert set(cache.source_size_px.values()) == {1024}
    rgba = ["00000100_000.png"]  # one of the 10 RGBA originals
    _assert_round_trip(real_root, tmp_path / "c", 64, rgba + sorted(cache.rows)[::50])


def test_killed_prepare_resumes_byte_identical(real_root: Path, tmp_path: Path) -> None:
    """A real SIGKILL mid-run: nothing looks complete, and the rerun continues to the same bytes."""
    command = [sys.executable, "-m", "cxrres.cli", "prepare", "--data", str(real_root), "--resolutions", "32",
               "--workers", "1", "--quiet"]
    killed = tmp_path / "killed"
    process = subprocess.Popen(command + ["--cache", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    state = killed / ".work" / "state.json"
    while time.monotonic() < deadline:
        done = json.loads(state.read_text())["done"] if state.exists() else 0
        if done >= 20:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "manifest.json").exists()
    resumed = subprocess.run(command + ["--cache", str(killed)], capture_output=True, text=True, check=True)
    assert "resumed at image" in resumed.stdout
    subprocess.run(command + ["--cache", str(tmp_path / "clean"), "--workers", "2"], capture_output=True, check=True)
    assert _files(killed) == _files(tmp_path / "clean") and array_name(32) in _files(killed)

