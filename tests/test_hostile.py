"""Hostile files: each refused with one line naming the file and what is wrong (or skipped with --skip-bad), in
bounded memory. Images: a decompression bomb, an empty file, truncated and pixel-less DICOM, a directory named like
an image. Metadata: non-UTF-8 text, a line with a million fields. Settings: YAML with Python tags, a checkpoint that
carries code. Each CLI case runs `python -m cxrres.cli` (or `cxrres.cli.main`) in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from cxrres.data.cache import ResolutionCache, prepare_cache
from cxrres.data.images import image_size, read_grey
from cxrres.data.pixel_rules import MAX_SOURCE_PIXELS, ImageReadError
from cxrres.data.metadata import MAX_LINE_BYTES, read_data_entry, read_image_list
from cxrres.errors import CacheError, DataFormatError

from conftest import MINI

#: Peak resident memory allowed for refusing a bomb (MB): the interpreter with numpy, OpenCV, Pillow, pandas and
#: cxrres imported is ≈ 110 MB here; decoding the 12,000-px bomb would take ≈ 940 MB.
BOMB_PEAK_LIMIT_MB = 250
#: What `cxrres prepare` on a bomb may take beyond the same command on the intact root (the decoded bomb: 10 GB).
BOMB_EXTRA_LIMIT_MB = 150
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.fixture(autouse=True)
def _user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default caches go to a temporary directory, never ~/.cache (subprocesses inherit it)."""
    home = tmp_path / "user-cache"
    monkeypatch.setenv("CXRRES_CACHE_DIR", str(home))
    ENV["CXRRES_CACHE_DIR"] = str(home)
    return home


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, width_px: int, height_px: int, rows: int | None = None) -> Path:
    """An 8-bit grey PNG whose header claims width x height pixels; its IDAT holds `rows` zero rows (all if None),
    compressed as a stream, so the file is small (≈ 140 kB for 12,000 x 12,000) and never held uncompressed."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width_px + 1)
    idat = b"".join(compressor.compress(row) for _ in range(height_px if rows is None else rows)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width_px, height_px, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def dicom(path: Path, with_pixels: bool = True) -> Path:
    """A small 12-bit MONOCHROME2 DICOM (64 x 64), or one with no pixel data at all (e.g. a structured report)."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.PatientName = "Hostile^Test"
    if with_pixels:
        pixels = (np.arange(64 * 64) % 4096).astype(np.uint16).reshape(64, 64)
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


#: Runs cxrres.cli.main(argv[1:]) or read_grey(argv[2]) in a fresh interpreter and prints, as the last stdout line,
#: JSON with the exit code and the process's peak resident memory: VmHWM of /proc/self/status, the high-water mark
#: of this program's own memory (ru_maxrss would not do: Linux carries the forking parent's RSS, here pytest's, over
#: into it).
_MEASURED = """
import json, re, sys
from pathlib import Path
if sys.argv[1] == "read_grey":
    from cxrres.data.images import read_grey
    from cxrres.data.pixel_rules import ImageReadError
    try:
        read_grey(sys.argv[2])
        rc = 0
    except ImageReadError as exc:
        print(exc, file=sys.stderr)
        rc = 1
else:
    from cxrres import cli
    rc = cli.main(sys.argv[1:])
peak_kib = int(re.search(r"VmHWM:\\s*(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"rc": rc, "peak_mb": peak_kib / 1024}))
"""


def _measured(*argv: str) -> tuple[int, float, str, str]:
    """(exit code, peak RSS in MB, stdout without the measurement line, stderr) of `_MEASURED argv`."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("peak memory is read from /proc (Linux)")
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, *argv], capture_output=True, text=True, env=ENV, timeout=300
    )
    *out, last = done.stdout.strip().splitlines() or [""]
    result = json.loads(last)
    return result["rc"], result["peak_mb"], "\n".join(out), done.stderr


def _one_line(stderr: str) -> str:
    """The single line of a refusal (fails if there is none, several, or a traceback)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ---- images ----


@pytest.mark.parametrize("width_px, height_px", [(100_000, 100_000), (12_000, 12_000)])
def test_png_bomb_is_refused_before_decoding_in_bounded_memory(
    tmp_path: Path, width_px: int, height_px: int, record_property
) -> None:
    """100,000² is over Pillow's own limit; 12,000² (144 Mpx) is under it, so Pillow alone would decode it
    (≈ 940 MB)."""
    bomb = png_bomb(tmp_path / "bomb.png", width_px, height_px, rows=None if width_px <= 12_000 else 50)
    assert bomb.stat().st_size < 1_000_000
    rc, peak_mb, _, stderr = _measured("read_grey", str(bomb))
    record_property(f"bomb_{width_px}_peak_mb", round(peak_mb, 1))
    assert rc == 1 and peak_mb < BOMB_PEAK_LIMIT_MB, (peak_mb, stderr)
    line = _one_line(stderr)
    assert (
        str(bomb) in line
        and "refused before decoding" in line
        and f"{width_px:,}" in line.replace("pixels", f"{width_px:,}")
    )
    with pytest.raises(ImageReadError, match="refused before decoding"):
        image_size(bomb)


def test_png_bomb_in_a_data_root_stops_prepare_in_bounded_memory(mini: Path, tmp_path: Path, record_property) -> None:
    # the same command on the intact data root: what the CLI costs by itself (it loads torch for the train flags)
    _, baseline_mb, _, _ = _measured(
        "prepare",
        "--data",
        str(mini),
        "--resolutions",
        "16",
        "--workers",
        "1",
        "--quiet",
        "--cache",
        str(tmp_path / "intact"),
    )
    png_bomb(mini / "images" / "00000004_001.png", 100_000, 100_000, rows=50)
    argv = [
        "prepare",
        "--data",
        str(mini),
        "--resolutions",
        "16",
        "--workers",
        "1",
        "--quiet",
        "--cache",
        str(tmp_path / "c"),
    ]
    rc, peak_mb, _, stderr = _measured(*argv)
    record_property("bomb_prepare_peak_mb", round(peak_mb, 1))
    record_property("intact_prepare_peak_mb", round(baseline_mb, 1))
    assert rc == 1 and peak_mb < baseline_mb + BOMB_EXTRA_LIMIT_MB, (peak_mb, baseline_mb, stderr)
    line = _one_line(stderr)
    assert (
        line.startswith("cxrres prepare: error: ") and "00000004_001.png" in line and "refused before decoding" in line
    )
    rc, peak_mb, stdout, _ = _measured(*argv, "--skip-bad")
    assert rc == 0 and "skipped 00000004_001.png: " in stdout and peak_mb < baseline_mb + BOMB_EXTRA_LIMIT_MB
    assert "00000004_001.png" not in ResolutionCache.open(tmp_path / "c", 16).rows


def test_empty_file_and_directory_named_like_an_image(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageReadError, match=r"empty\.png: empty file \(0 bytes\)$"):
        read_grey(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match=r"folder\.png: is a directory, not an image file$"):
        read_grey(tmp_path / "folder.png")
    with pytest.raises(ImageReadError, match=r"missing\.png: file not found$"):
        read_grey(tmp_path / "missing.png")


def test_dicom_truncated_or_without_pixels(tmp_path: Path) -> None:
    good = dicom(tmp_path / "good.dcm")
    assert read_grey(good).shape == (64, 64)
    data = good.read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(data[: len(data) - 3000])
    with pytest.raises(ImageReadError, match=r"truncated\.dcm: DICOM pixel data truncated: 5,192 of 8,192 bytes$"):
        read_grey(tmp_path / "truncated.dcm")
    (tmp_path / "header_only.dcm").write_bytes(data[:200])
    with pytest.raises(ImageReadError, match=r"header_only\.dcm: DICOM file has no pixel data"):
        read_grey(tmp_path / "header_only.dcm")
    with pytest.raises(ImageReadError, match=r"report\.dcm: DICOM file has no pixel data \(not an image"):
        read_grey(dicom(tmp_path / "report.dcm", with_pixels=False))
    (tmp_path / "text.dcm").write_text("this is not DICOM\n")
    with pytest.raises(ImageReadError, match=r"text\.dcm: not a readable DICOM file"):
        read_grey(tmp_path / "text.dcm")


def test_dicom_bomb_is_refused_before_its_pixels_are_read(tmp_path: Path) -> None:
    path = dicom(tmp_path / "huge.dcm")
    import pydicom

    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 60_000  # header claims 3.6 Gpx; the pixel data stays 8 kB
    ds.save_as(path)
    with pytest.raises(
        ImageReadError, match=r"huge\.dcm: header claims 60,000 x 60,000 pixels.*refused before decoding"
    ):
        read_grey(path)
    assert 60_000 * 60_000 > MAX_SOURCE_PIXELS


def test_hostile_images_stop_prepare_with_one_line_or_are_skipped(tmp_path: Path) -> None:
    """A data root without Data_Entry (every file on disk is used): each hostile file stops `cxrres prepare` with a
    line naming it, and --skip-bad caches the good images and lists the bad ones."""
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    shutil.copy(MINI / "images" / "00000001_000.png", root / "images" / "a_good.png")
    dicom(root / "images" / "b_good.dcm")
    hostile = {
        "c_empty.png": "empty file (0 bytes)",
        "d_folder.png": "is a directory, not an image file",
        "e_truncated.dcm": "DICOM pixel data truncated",
        "f_report.dcm": "DICOM file has no pixel data",
    }
    for name in hostile:
        target = root / "images" / name
        if name == "c_empty.png":
            target.write_bytes(b"")
        elif name == "d_folder.png":
            target.mkdir()
        elif name == "e_truncated.dcm":
            target.write_bytes((root / "images" / "b_good.dcm").read_bytes()[:-3000])
        else:
            dicom(target, with_pixels=False)
    base = [
        sys.executable,
        "-m",
        "cxrres.cli",
        "prepare",
        "--data",
        str(root),
        "--resolutions",
        "16",
        "--workers",
        "1",
        "--quiet",
        "--cache",
        str(tmp_path / "c"),
    ]
    for name, problem in hostile.items():
        done = subprocess.run(base, capture_output=True, text=True, env=ENV, timeout=120)
        line = _one_line(done.stderr)
        assert done.returncode == 1 and f"{name}: {problem}" in line and "--skip-bad" in line, line
        # move the refused file aside, so the next run meets the next hostile file
        (root / "images" / name).rename(tmp_path / name)
    for name in hostile:
        (tmp_path / name).rename(root / "images" / name)
    done = subprocess.run(base + ["--skip-bad"], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0].strip() for line in done.stdout.splitlines() if line.startswith("  skipped")] == [
        f"skipped {name}" for name in hostile
    ]
    assert set(ResolutionCache.open(tmp_path / "c", 16).rows) == {"a_good.png", "b_good.dcm"}


def test_directory_named_like_a_listed_image_is_not_silently_missing(mini: Path, tmp_path: Path) -> None:
    image = mini / "images" / "00000003_000.png"
    image.unlink()
    image.mkdir()
    with pytest.raises(CacheError, match=r"00000003_000\.png: is a directory, not an image file"):
        prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    report = prepare_cache(mini, [16], tmp_path / "c", workers=1, skip_bad=True, progress=False)
    assert [s["image"] for s in report.skipped] == ["00000003_000.png"] and not report.missing


# ---- metadata ----


def test_csv_that_is_not_utf8_names_line_and_byte(tmp_path: Path) -> None:
    lines = (MINI / "Data_Entry_2017.csv").read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b",F,", b",F\xfc,")  # a Latin-1 byte (\xfc, u-umlaut) in line 5
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_bytes(b"".join(lines))
    with pytest.raises(
        DataFormatError, match=r"Data_Entry_2017\.csv:5: not UTF-8 text: byte 0xfc at column 33$"
    ) as info:
        read_data_entry(path)
    assert info.value.line == 5
    data = tmp_path / "data"
    shutil.copytree(MINI, data)
    shutil.copy(path, data / "Data_Entry_2017.csv")
    done = subprocess.run(
        [sys.executable, "-m", "cxrres.cli", "describe", "--data", str(data), "--split-dir", str(data / "splits")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    line = _one_line(done.stderr)
    assert done.returncode == 1 and "Data_Entry_2017.csv:5: not UTF-8 text" in line


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (MINI / "Data_Entry_2017.csv").read_bytes())
    assert read_data_entry(path).equals(read_data_entry(MINI / "Data_Entry_2017.csv"))


def test_csv_line_with_a_million_fields_is_refused_in_bounded_memory(tmp_path: Path, record_property) -> None:
    lines = (MINI / "Data_Entry_2017.csv").read_text().splitlines(keepends=True)
    lines.insert(2, ",".join(["x"] * 1_000_000) + "\n")
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text("".join(lines))
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match=r"Data_Entry_2017\.csv:3: line longer than 65,536 bytes") as info:
            read_data_entry(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    record_property("million_fields_peak_bytes", peak)
    assert len(str(info.value)) < 200
    assert peak < 4 * MAX_LINE_BYTES + 2**20, (
        peak
    )  # a few copies of one 64 KiB line, not the 2 MB line's million fields
    list_path = tmp_path / "test_list.txt"
    list_path.write_text("00000001_000.png\n" + " ".join(["00000002_000.png"] * 1_000_000) + "\n")
    with pytest.raises(DataFormatError, match=r"test_list\.txt:2: line longer than"):
        read_image_list(list_path)


# ---- settings and weights ----


def test_yaml_config_with_python_tags_is_refused_by_safe_loading(mini: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f"max_epochs: !!python/object/apply:os.system ['touch {marker}']\nresolution_px: 32\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxrres.cli",
            "train",
            "--config",
            str(config),
            "--data",
            str(mini),
            "--resolution",
            "32",
            "--weights",
            "none",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    line = _one_line(done.stderr)
    assert done.returncode == 1 and line.startswith("cxrres train: error: ") and f"{config}: not valid YAML" in line, (
        line
    )
    assert not marker.exists() and not (tmp_path / "run").exists()


class _RunsCode:
    """Pickles as a call to os.system: loading it with a full unpickler would create the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_carrying_code_is_refused_through_the_cli(mini: Path, tmp_path: Path) -> None:
    """The library-level refusal is tests/test_models.py::test_weights_only_refuses_code; this is the CLI's line."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "extra": _RunsCode(str(marker))}, weights)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxrres.cli",
            "train",
            "--data",
            str(mini),
            "--split-dir",
            str(mini / "splits"),
            "--resolution",
            "32",
            "--weights",
            str(weights),
            "--max-epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--quiet",
            "--cache",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    line = _one_line(done.stderr)
    assert done.returncode == 1 and "evil.pt: refused to load" in line, line
    assert not marker.exists()
