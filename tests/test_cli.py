"""The command line: help texts, the describe JSON contract, one-line errors with a non-zero exit."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cxrres.cli import build_parser, main
from cxrres.config import (
    DATA_SETTINGS,
    TrainConfig,
    add_data_arguments,
    data_options,
    flag_of,
    merge_settings,
    settings_from_args,
)
from cxrres.data import BOX_CLASSES, CLASSES, DataRoot, datasets, source
from cxrres.data.datasets import ADAPTERS, DataOptions
from cxrres.data.source import read_table

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


#: The commands that read a data root, and the data settings each takes as flags (localize and study read a run's or a
#: study file's: no data flag of their own; predict reads image files, its --skip-bad is theirs).
DATA_FLAGS: dict[str, tuple[str, ...]] = {
    "describe": DATA_SETTINGS,
    "train": DATA_SETTINGS,
    "prepare": ("dataset", "skip_bad"),
    "evaluate": ("dataset", "views"),
    "localize": (),
    "study": (),
}
#: A value other than the default for every data setting (as flags give them).
GIVEN: dict[str, object] = {
    "dataset": "vindr",
    "views": "PA,AP",
    "split": "official",
    "split_dir": "/splits",
    "val_fraction": 0.25,
    "split_seed": 3,
    "labeler": "negbio",
    "readers": "majority",
    "skip_bad": True,
}


def _command(name: str) -> argparse.ArgumentParser:
    """The subparser of one command."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def _flags(names: tuple[str, ...]) -> list[str]:
    """The flags giving GIVEN's value of each data setting in `names`."""
    return [arg for n in names for arg in ([flag_of(n)] if GIVEN[n] is True else [flag_of(n), str(GIVEN[n])])]


def test_every_data_flag_comes_from_the_one_generator() -> None:
    """Each command's data flags are `add_data_arguments`' (spelling, help, choices, type), with DataOptions'
    defaults (train: None, filled from TrainConfig's, which are DataOptions'); no command spells one by hand."""
    assert (
        set(GIVEN)
        == set(DATA_SETTINGS)
        == {f.name for f in dataclasses.fields(DataOptions)}
        - {
            "test_fraction",
            "classes",
        }
    )
    reference = argparse.ArgumentParser()
    add_data_arguments(reference)
    generated = {a.dest: a for a in reference._actions if a.dest in DATA_SETTINGS}
    defaults = DataOptions()
    for command, names in DATA_FLAGS.items():
        actions = {a.dest: a for a in _command(command)._actions if a.dest in DATA_SETTINGS}
        assert set(actions) == set(names), command
        taken = {s for a in _command(command)._actions for s in a.option_strings}
        assert taken.isdisjoint(flag_of(n) for n in set(DATA_SETTINGS) - set(names)), command
        for name, action in actions.items():
            made = generated[name]
            assert action.option_strings == made.option_strings == [flag_of(name)]
            assert type(action) is type(made), (command, name)
            same = ("help", "choices", "metavar", "type", "const")
            assert [getattr(action, k) for k in same] == [getattr(made, k) for k in same], (command, name)
            default = getattr(TrainConfig(), name) if command == "train" else action.default
            assert default == made.default == getattr(defaults, name), (command, name)
    assert TrainConfig().data_options() == defaults


def test_each_data_setting_goes_from_flags_through_data_options_to_the_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser, given = build_parser(), DataOptions(**GIVEN)
    describe = parser.parse_args(["describe", "--data", str(tmp_path), *_flags(DATA_SETTINGS)])
    assert data_options(describe) == given
    assert data_options(parser.parse_args(["describe", "--data", str(tmp_path)])) == DataOptions()
    train = parser.parse_args(["train", "--data", str(tmp_path), "--resolution", "32", *_flags(DATA_SETTINGS)])
    assert merge_settings(settings_from_args(train)).data_options() == given
    for command, before in (("prepare", ["--data", str(tmp_path)]), ("evaluate", ["RUN", "--data", str(tmp_path)])):
        names = DATA_FLAGS[command]
        args = parser.parse_args([command, *before, *_flags(names)])
        assert data_options(args) == DataOptions(**{n: GIVEN[n] for n in names}), command
    # the adapter reads with that object: every setting arrives (the per-data-set checks set aside here)
    seen: list[DataOptions] = []
    monkeypatch.setitem(ADAPTERS, "vindr", SimpleNamespace(read=lambda root, options: seen.append(options) or root))
    monkeypatch.setattr(datasets, "check_options", lambda name, options: None)
    monkeypatch.setattr(source, "check_options", lambda name, options: None)
    assert read_table(DataRoot.at(tmp_path), data_options(describe)) == tmp_path.resolve()
    assert len(seen) == 1 and {n: getattr(seen[0], n) for n in DATA_SETTINGS} == GIVEN
