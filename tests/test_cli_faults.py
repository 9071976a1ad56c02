"""Bad environments end in one line, never a traceback: --out in the way or read-only, a damaged run.json;
reading a run never requires writing it (evaluate on a read-only run directory, --out elsewhere)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from cxrres import runs
from cxrres.cli import main
from cxrres.errors import DataFormatError
from cxrres.synthetic import synthesize

from conftest import read_only_bind


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("clifaults")
    data = root / "data"
    synthesize(data, n_images=40, size_px=64, seed=4, workers=1, progress=False)
    run = root / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--resolution",
                "32",
                "--weights",
                "none",
                "--arch",
                "resnet34",
                "--max-epochs",
                "1",
                "--batch-size",
                "8",
                "--out",
                str(run),
                "--cache",
                str(root / "cache"),
                "--quiet",
            ]
        )
        == 0
    )
    return str(data), run


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith(f"cxrres {command}: error: "), err
    return lines[0]


def test_out_in_the_way_is_one_line(finished, tmp_path: Path, capsys) -> None:
    data, run = finished
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    capsys.readouterr()
    assert main(["synth", "--out", str(blocker), "--images", "10", "--size", "64", "--workers", "1"]) == 1
    assert str(blocker) in _one_line(capsys, "synth")
    assert (
        main(
            [
                "train",
                "--data",
                data,
                "--resolution",
                "32",
                "--weights",
                "none",
                "--max-epochs",
                "1",
                "--out",
                str(blocker),
                "--cache",
                str(tmp_path / "c"),
                "--quiet",
            ]
        )
        == 1
    )
    assert str(blocker) in _one_line(capsys, "train")
    assert main(["export", str(run), "--out", str(blocker / "model.onnx")]) == 1
    assert str(blocker) in _one_line(capsys, "export")
    assert main(["study", "--data", data, "--resolutions", "32", "--out", str(blocker)]) == 1
    assert str(blocker) in _one_line(capsys, "study")
    assert blocker.read_text() == "not a directory\n"


@pytest.mark.parametrize(
    "content, field",
    [
        ("{not json", "not valid JSON"),
        ('{"status": "finished", "epochs": "lots"}', "`epochs`"),
        ('["finished"]', "not a JSON object"),
        ('{"status": "done"}', "`status`"),
    ],
)
def test_damaged_run_json_is_named_in_one_line(finished, tmp_path: Path, capsys, content: str, field: str) -> None:
    _, run = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    (copy / runs.STATUS).write_text(content)
    with pytest.raises(DataFormatError, match=field):
        runs.read_status(copy)
    capsys.readouterr()
    assert main(["export", str(copy), "--out", str(tmp_path / "m.onnx")]) == 1
    line = _one_line(capsys, "export")
    assert str(copy / runs.STATUS) in line and field in line
    assert not list(tmp_path.glob("m.onnx*"))  # neither the network nor its card


def test_export_card_failure_removes_the_network(finished, tmp_path: Path, monkeypatch) -> None:
    from cxrres.deploy import export

    def broken(*args, **kwargs) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "model_card", broken)
    with pytest.raises(OSError):
        export.export_run(finished[1], "onnx", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_evaluate_read_only_run_prints_and_writes_elsewhere(finished, tmp_path: Path, capsys) -> None:
    _, run = finished
    copy = tmp_path / "ro"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock", runs.AUC))
    with read_only_bind(copy):
        capsys.readouterr()
        assert main(["evaluate", str(copy), "--n-boot", "20"]) == 0
        captured = capsys.readouterr()
        assert "mean" in captured.out and "wrote" not in captured.out
        warning = captured.err.strip().splitlines()
        assert len(warning) == 1 and "cannot write here" in warning[0] and "--out DIR" in warning[0], captured.err
        assert not (copy / runs.AUC).exists()
        assert main(["evaluate", str(copy), "--n-boot", "20", "--out", str(tmp_path / "tables")]) == 0
        assert f"wrote {tmp_path / 'tables' / runs.AUC}" in capsys.readouterr().out
        assert pd.read_csv(tmp_path / "tables" / runs.AUC)["class"].iloc[-1] == "mean"
