"""Resolution caches: round trip, reuse, invalidation, resume after interruption, bad images, concurrent prepare,
the default cache outside the (read-only) data root, damaged arrays."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cxrres.data import cache as cache_module
from cxrres.data import cache_workers
from cxrres.data import cache_store
from cxrres.data.cache import ResolutionCache, array_name, parse_resolutions, prepare_cache
from cxrres.data.cache_store import default_cache_dir, user_cache_home
from cxrres.data.images import pad_to_square, read_grey
from cxrres.errors import CacheError

from conftest import exact_area_resize


@pytest.fixture(autouse=True)
def _user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default caches go to a temporary directory, never ~/.cache."""
    home = tmp_path / "user-cache"
    monkeypatch.setenv("CXRRES_CACHE_DIR", str(home))
    return home


def _files(cache_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache_dir.glob("r*.npy"))}


def _assert_round_trip(data_dir: Path, cache_dir: Path, resolution: int, names: list[str] | None = None) -> None:
    cache = ResolutionCache.open(cache_dir, resolution)
    array = cache.array()
    for name in names or list(cache.rows):
        path = (
            next(data_dir.glob(f"images*/**/{name}"))
            if not (data_dir / "images" / name).exists()
            else data_dir / "images" / name
        )
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


def test_interrupted_then_resumed_is_byte_identical(
    mini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_cache(mini, [16, 32], tmp_path / "clean", workers=1, progress=False)
    real_decode = cache_workers._decode

    def interrupt_at_row_6(task):
        if task[0] == 6:
            raise KeyboardInterrupt
        return real_decode(task)

    monkeypatch.setattr(cache_module, "CHECKPOINT_EVERY_S", 0.0)
    monkeypatch.setattr(cache_workers, "_decode", interrupt_at_row_6)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(mini, [16, 32], tmp_path / "c", workers=1, progress=False)
    assert not (tmp_path / "c" / "manifest.json").exists()  # nothing looks complete
    with pytest.raises(CacheError, match="no complete cache"):
        ResolutionCache.open(tmp_path / "c", 16)
    assert json.loads((tmp_path / "c" / ".work" / "state.json").read_text())["done"] == 6
    monkeypatch.setattr(cache_workers, "_decode", real_decode)
    report = prepare_cache(mini, [16, 32], tmp_path / "c", workers=1, progress=False)
    assert report.resumed_from == 6
    assert _files(tmp_path / "c") == _files(tmp_path / "clean")
    assert (tmp_path / "c" / "index.csv").read_bytes() == (tmp_path / "clean" / "index.csv").read_bytes()


def test_different_resolutions_restart_the_pass(mini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_decode = cache_workers._decode
    monkeypatch.setattr(cache_module, "CHECKPOINT_EVERY_S", 0.0)
    monkeypatch.setattr(
        cache_workers, "_decode", lambda t: (_ for _ in ()).throw(KeyboardInterrupt) if t[0] == 3 else real_decode(t)
    )
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    monkeypatch.setattr(cache_workers, "_decode", real_decode)
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
    command = [
        sys.executable,
        "-m",
        "cxrres.cli",
        "prepare",
        "--data",
        str(real_root),
        "--resolutions",
        "32",
        "--workers",
        "1",
        "--quiet",
    ]
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


# ---- concurrent prepare on one cache ----

#: Runs `cxrres prepare` (cxrres.cli.main) once the file argv[1] exists, each image's decode slowed by 50 ms, so that
#: processes started together really overlap inside prepare.
_SLOW_PREPARE = """
import sys, time
from pathlib import Path
from cxrres import cli
from cxrres.data import cache_workers as cache
real = cache._decode
def slow(task):
    time.sleep(0.05)
    return real(task)
cache._decode = slow
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
sys.exit(cli.main(sys.argv[2:]))
"""


def test_three_concurrent_prepares_agree_with_a_lone_build(mini: Path, tmp_path: Path) -> None:
    args = ["prepare", "--data", str(mini), "--resolutions", "16,32", "--workers", "1", "--quiet"]
    go = tmp_path / "go"
    shared = tmp_path / "shared-cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _SLOW_PREPARE, str(go), *args, "--cache", str(shared)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    time.sleep(3.0)  # let all three import cxrres and wait at the start line
    go.touch()
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in processes]  # type: ignore[union-attr]
    assert [rc for rc, _, _ in results] == [0, 0, 0], results
    outputs = [out for _, out, _ in results]
    assert (
        sum("built 16,32 px" in out for out in outputs) == 1 and sum("reused 16,32 px" in out for out in outputs) == 2
    )
    assert sum("waiting for it" in err for _, _, err in results) >= 1  # they really overlapped
    lone = subprocess.run(
        [sys.executable, "-m", "cxrres.cli", *args, "--cache", str(tmp_path / "lone")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert lone.returncode == 0, lone.stderr
    assert _files(shared) == _files(tmp_path / "lone") and set(_files(shared)) == {"r16.npy", "r32.npy"}
    assert (shared / "index.csv").read_bytes() == (tmp_path / "lone" / "index.csv").read_bytes()
    assert not (shared / ".work").exists()


# ---- the default cache lives outside the data root ----


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under `root` with its (mode, size, mtime ns): any write under the root changes it."""
    return {
        str(p.relative_to(root)): (p.lstat().st_mode, p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in [root, *root.rglob("*")]
    }


def _set_writable(root: Path, writable: bool) -> None:
    """chmod the tree: u+w back on, or a-w on every directory and file (links are left alone)."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if writable else mode & ~0o222)


def test_default_cache_dir_is_keyed_by_the_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert user_cache_home() == (tmp_path / "user-cache").resolve()
    first, second = default_cache_dir(tmp_path / "a" / "chestxray14"), default_cache_dir(tmp_path / "b" / "chestxray14")
    assert first.parent == second.parent == user_cache_home() and first != second
    assert (
        first.name.startswith("chestxray14-")
        and default_cache_dir(tmp_path / "a" / "x" / ".." / "chestxray14") == first
    )
    monkeypatch.delenv("CXRRES_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_home() == (tmp_path / "xdg" / "cxrres").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_home() == (tmp_path / "home" / ".cache" / "cxrres").resolve()


def test_prepare_writes_nothing_under_a_read_only_data_root(mini: Path, tmp_path: Path) -> None:
    """chmod -R a-w stops writes only for a non-root user; as root (tests here run as root) the snapshot of every
    path, mode, size and mtime under the root is what proves nothing was written there."""
    _set_writable(mini, False)
    try:
        before = _snapshot(mini)
        report = prepare_cache(mini, [16], workers=1, progress=False)
        again = prepare_cache(mini, [16, 32], workers=1, progress=False)
        after = _snapshot(mini)
    finally:
        _set_writable(mini, True)
    assert after == before
    assert report.cache_dir == default_cache_dir(mini) and report.cache_dir.is_relative_to(tmp_path / "user-cache")
    assert again.reused_px == (16,) and again.built_px == (32,)
    _assert_round_trip(mini, report.cache_dir, 16)


# ---- a damaged cache is refused by open and rebuilt by prepare ----


def _flip_byte(path: Path, offset_from_end: int) -> None:
    """Invert one byte of a file in place (same size)."""
    with open(path, "r+b") as handle:
        handle.seek(-offset_from_end, os.SEEK_END)
        value = handle.read(1)[0]
        handle.seek(-offset_from_end, os.SEEK_END)
        handle.write(bytes([value ^ 0xFF]))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_array_is_refused_by_open_and_rebuilt_by_prepare(
    mini: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cache_dir = tmp_path / "c"
    prepare_cache(mini, [16, 32], cache_dir, workers=1, progress=False)
    good = _files(cache_dir)
    array = cache_dir / array_name(16)
    if damage == "truncate":
        os.truncate(array, array.stat().st_size - 256)
        expected = (
            r"r16\.npy: damaged cache file \(3,\d+ bytes, expected 3,\d+ \(truncated or overwritten\)\); not used"
        )
    else:
        _flip_byte(array, 1000)
        expected = (
            r"r16\.npy: damaged cache file \(CRC-32 [0-9a-f]{8}, expected [0-9a-f]{8} \(bytes changed after prepare\)\)"
        )
    with pytest.raises(CacheError, match=expected):
        ResolutionCache.open(cache_dir, 16)
    ResolutionCache.open(cache_dir, 32)  # the intact resolution still opens
    report = prepare_cache(mini, [16, 32], cache_dir, workers=1, progress=False)
    assert report.built_px == (16,) and report.reused_px == (32,)
    assert "r16.npy: damaged" in capsys.readouterr().err
    assert _files(cache_dir) == good
    ResolutionCache.open(cache_dir, 16)


def test_damaged_index_is_refused(mini: Path, tmp_path: Path) -> None:
    prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    index = tmp_path / "c" / "index.csv"
    index.write_text(index.read_text().replace("00000002_000.png", "00000003_000.png", 1))
    with pytest.raises(CacheError, match=r"index\.csv: damaged cache file \(CRC-32"):
        ResolutionCache.open(tmp_path / "c", 16)


def test_a_remembered_check_does_not_hide_a_later_change(
    mini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A passed check is remembered per (inode, size, mtime, ctime); restoring the mtime after a change does not
    restore the ctime, so the change is still seen."""
    monkeypatch.setattr(cache_store, "VERIFIED_MIN_AGE_S", 0.0)
    prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    ResolutionCache.open(tmp_path / "c", 16)
    array = tmp_path / "c" / array_name(16)
    stat = array.stat()
    time.sleep(0.05)
    _flip_byte(array, 10)
    os.utime(array, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(CacheError, match="bytes changed after prepare"):
        ResolutionCache.open(tmp_path / "c", 16)


def test_cache_of_an_older_format_is_refused(mini: Path, tmp_path: Path) -> None:
    prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    (tmp_path / "c" / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))
    with pytest.raises(CacheError, match="cache format 1 was written by another cxrres version"):
        ResolutionCache.open(tmp_path / "c", 16)
    assert prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False).built_px == (16,)


def test_chexpert_images_are_keyed_by_their_path_below_the_root(tmp_path: Path) -> None:
    from conftest import write_chexpert_small

    root = write_chexpert_small(tmp_path / "CheXpert-v1.0-small")
    (root / "valid/patient64548/study1/view1_frontal.jpg").unlink()  # listed, absent
    report = prepare_cache(root, [16], tmp_path / "c", workers=1, progress=False)
    assert (report.n_images, report.missing) == (37, ["valid/patient64548/study1/view1_frontal.jpg"])
    cache = ResolutionCache.open(tmp_path / "c", 16)
    first, second = "train/patient00001/study1/view1_frontal.jpg", "train/patient00001/study2/view1_frontal.jpg"
    assert len(cache.rows) == 37 and cache.rows[first] != cache.rows[second]
    assert cache.sources[second] == second and cache.source_hw[second] == (48, 40)
    reference = exact_area_resize(pad_to_square(read_grey(root / second)), 16)
    assert np.abs(cache.array()[cache.rows[second]].astype(float) - reference).max() <= 1.0


def _manifest(cache_dir: Path) -> dict:
    return json.loads((cache_dir / "manifest.json").read_text())


def test_16_bit_rule_change_rebuilds_only_caches_with_16_bit_sources(mini: Path, tmp_path: Path) -> None:
    from cxrres.data.images import SIXTEEN_BIT_RULE

    prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    assert _manifest(tmp_path / "c")["sixteen_bit"] == {"rule": SIXTEEN_BIT_RULE, "images": 1}  # 00000003_000.png
    old = {**_manifest(tmp_path / "c"), "sixteen_bit": {"rule": "value / 257", "images": 1}}
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(old))
    report = prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    assert (report.built_px, report.reused_px) == ((16,), ())
    assert _manifest(tmp_path / "c")["sixteen_bit"]["rule"] == SIXTEEN_BIT_RULE
    _assert_round_trip(mini, tmp_path / "c", 16, ["00000003_000.png"])
    (mini / "images" / "00000003_000.png").unlink()  # now every source is 8-bit: another rule does not matter
    prepare_cache(mini, [16], tmp_path / "eight", workers=1, progress=False)
    assert _manifest(tmp_path / "eight")["sixteen_bit"]["images"] == 0
    (tmp_path / "eight" / "manifest.json").write_text(
        json.dumps({**_manifest(tmp_path / "eight"), "sixteen_bit": {"rule": "value / 257", "images": 0}})
    )
    assert prepare_cache(mini, [16], tmp_path / "eight", workers=1, progress=False).reused_px == (16,)


def test_manifest_from_before_the_16_bit_record(mini: Path, tmp_path: Path) -> None:
    """A cache built by a cxrres that mapped 16-bit by value / 257 and recorded nothing: kept when no source is 16-bit
    (the record is added), rebuilt when one is."""
    for name, drop_sixteen in (("eight", True), ("mixed", False)):
        data = tmp_path / name
        shutil.copytree(mini, data)
        if drop_sixteen:
            (data / "images" / "00000003_000.png").unlink()
        prepare_cache(data, [16], tmp_path / f"c-{name}", workers=1, progress=False)
        manifest = _manifest(tmp_path / f"c-{name}")
        del manifest["sixteen_bit"]
        (tmp_path / f"c-{name}" / "manifest.json").write_text(json.dumps(manifest))
        report = prepare_cache(data, [16], tmp_path / f"c-{name}", workers=1, progress=False)
        assert report.reused_px == ((16,) if drop_sixteen else ())
        assert _manifest(tmp_path / f"c-{name}")["sixteen_bit"]["images"] == (0 if drop_sixteen else 1)
