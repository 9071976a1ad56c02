"""The command line: help texts, the describe JSON contract, one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cxrres.cli import build_parser, main
from cxrres.data import BOX_CLASSES, CLASSES

from conftest import MINI


def test_every_command_has_help(capsys: pytest.CaptureFixture) -> None:
    for argv in (["--help"], ["describe", "--help"], ["prepare", "--help"]):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(argv)
        assert info.value.code == 0
    assert "--skip-bad" in capsys.readouterr().out


def test_describe_json_is_one_object_with_the_contract(capsys: pytest.CaptureFixture) -> None:
    assert main(["describe", "--data", str(MINI), "--split-dir", str(MINI / "splits"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"split", "images", "classes", "boxes", "symlinks_outside_root"}
    assert summary["symlinks_outside_root"] == {"count": 0, "first": []}
    assert summary["split"] == f"dir:{MINI / 'splits'}"  # named by its folder, not `chexnet` (issue 27)
    assert summary["images"] == {"train": 5, "val": 3, "test": 6}
    assert list(summary["classes"]) == list(CLASSES)
    assert summary["classes"]["Nodule"] == {"train": 1, "val": 1, "test": 1}
    assert list(summary["boxes"]) == list(BOX_CLASSES)
    assert summary["boxes"]["Nodule"] == {
        "count": 2,
        "mean_area_px2": pytest.approx(2512.0, abs=0.2),
    }  # 48-px boxes in the 1024 frame
    assert summary["boxes"]["Mass"] == {"count": 0, "mean_area_px2": None}


def test_a_split_dir_is_labelled_by_its_folder_in_text_and_json(capsys: pytest.CaptureFixture) -> None:
    folder = MINI / "splits"
    assert main(["describe", "--data", str(MINI), "--split-dir", str(folder)]) == 0
    assert capsys.readouterr().out.startswith(f"split dir:{folder}: train 5, val 3, test 6 images")
    assert main(["describe", "--data", str(MINI), "--split-dir", str(folder), "--views", "all"]) == 0
    assert f"  split: dir:{folder}\n" in capsys.readouterr().out
    assert main(["describe", "--data", str(MINI), "--split-dir", str(folder), "--views", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == [f"split: dir:{folder}"]


def test_describe_text(capsys: pytest.CaptureFixture) -> None:
    assert main(["describe", "--data", str(MINI), "--split", "official", "--val-fraction", "0.3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("split official: train 4, val 4, test 6 images")
    assert "Pleural_Thickening" in out and "official boxes in the test part (5)" in out


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`cxrres describe | head -1`: the pipe closes before cxrres flushes; exit 141 (as a shell reports SIGPIPE)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxrres.cli", "describe", "--data", str(MINI), "--split", "official"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the first line
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_bad_input_is_one_line_and_non_zero(mini: Path) -> None:
    entry = mini / "Data_Entry_2017.csv"
    entry.write_text(entry.read_text()[:-40])
    result = subprocess.run(
        [sys.executable, "-m", "cxrres.cli", "describe", "--data", str(mini), "--split", "official"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"cxrres describe: error: {entry}:15: expected 11 fields")


def test_prepare_command(mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [
        "prepare",
        "--data",
        str(mini),
        "--cache",
        str(tmp_path / "c"),
        "--resolutions",
        "8,16",
        "--workers",
        "1",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "14 images; built 8,16 px, reused none px" in capsys.readouterr().out
    assert main(argv) == 0
    assert "built none px, reused 8,16 px" in capsys.readouterr().out
    (mini / "images" / "00000008_000.png").write_bytes(b"broken")
    assert main(argv + ["--resolutions", "8"]) == 1
    assert "00000008_000.png: cannot decode image" in capsys.readouterr().err


def test_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["describe", "--data", str(tmp_path / "nowhere")]) == 1
    assert "data directory not found" in capsys.readouterr().err
