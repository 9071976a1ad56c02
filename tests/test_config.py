"""One source per fact: every TrainConfig field is a `cxrres train` flag, flags and study plans round-trip, and each
run- and study-directory file name is spelled once in the package."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

import cxrres
from cxrres import runs
from cxrres.cli import build_parser
from cxrres.data.labels import CLASSES
from cxrres.config import (
    NOT_IDENTITY,
    TrainConfig,
    add_train_arguments,
    flag_of,
    merge_settings,
    settings_from_args,
    train_argv,
)
from cxrres.study.grid import GRID_FLAGS, make_study, study_settings, write_study_file
from cxrres.study.plan import PLANNED_KINDS, plan_commands, study_plan

from conftest import MINI

PACKAGE = Path(cxrres.__file__).parent


def _parse_train(argv: list[str]) -> TrainConfig:
    args = build_parser().parse_args(["train", *argv])
    return merge_settings(settings_from_args(args))


def test_every_setting_is_a_flag_with_help() -> None:
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]  # noqa: SLF001 - argparse keeps subparsers there
    flags = {option: action for action in train._actions for option in action.option_strings}  # noqa: SLF001
    for f in dataclasses.fields(TrainConfig):
        assert flag_of(f.name) in flags, f.name
        assert flags[flag_of(f.name)].help, f.name
    assert flag_of("resolution_px") == "--resolution" and flag_of("num_workers") == "--workers"
    assert set(NOT_IDENTITY) == {"out", "cache", "num_workers", "progress"}


def test_train_flags_round_trip_every_setting() -> None:
    """A config with every field away from its default comes back identical from its own command line."""
    config = TrainConfig(
        data="/data/x",
        resolution_px=96,
        arch="resnet34",
        weights="/w/chexnet.pth",
        split="official",
        split_dir="/splits",
        val_fraction=0.2,
        split_seed=3,
        dataset="chexpert",
        views="all",
        uncertain="zeros",
        labeler="negbio",
        class_names="Edema,Pleural Effusion",
        label="Nodule",
        seed=7,
        max_epochs=5,
        batch_size=24,
        lr=1e-3,
        weight_decay=0.0,
        lr_factor=0.5,
        lr_patience=1,
        stop_patience=4,
        accelerator="cpu",
        devices=2,
        nodes=1,
        precision="32",
        channels_last=False,
        deterministic=True,
        allow_missing=True,
        out="/runs/a",
        cache="/cache",
        num_workers=3,
        progress=False,
        readers="majority",
        skip_bad=True,
    )
    changed = [f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) != f.default]
    assert set(changed) == {f.name for f in dataclasses.fields(TrainConfig)} - {"nodes"}
    assert _parse_train(train_argv(config)) == config
    default = TrainConfig(data="/d", resolution_px=64)
    assert train_argv(default) == ["--data", "/d", "--resolution", "64"]
    assert _parse_train(train_argv(default)) == default


def test_tri_state_flags() -> None:
    assert _parse_train(["--data", "d", "--resolution", "32", "--channels-last", "auto"]).channels_last is None
    assert _parse_train(["--data", "d", "--resolution", "32", "--deterministic", "off"]).deterministic is False
    with pytest.raises(SystemExit):
        _parse_train(["--data", "d", "--resolution", "32", "--deterministic", "maybe"])


def test_plan_final_command_keeps_every_study_option(tmp_path: Path) -> None:
    """The plan's last line, parsed as the CLI parses it, is the same study: labels, grid, train and localize
    settings."""
    config = tmp_path / "in.yaml"
    config.write_text(
        "train:\n  weights: none\n  lr_patience: 1\n  max_epochs: 3\nlocalize:\n  method: hirescam\n  iou: 0.3\n"
        "n_boot: 200\n"
    )
    study = study_settings(
        config,
        {
            "data": str(MINI),
            "resolutions": "32,48",
            "archs": "densenet121,resnet34",
            "seeds": "0,2",
            "labels": "Nodule,all,Mass",
            "out": str(tmp_path / "s"),
        },
    )
    assert study.labels == ("Nodule", None, "Mass")
    write_study_file(study)
    lines = plan_commands(study, study_plan(study, kinds=PLANNED_KINDS)).splitlines()
    trains = [line for line in lines if line.startswith("cxrres train ")]
    assert len(trains) == 2 * 2 * 2 * 3
    assert all("--lr-patience 1" in line and "--weights none" in line for line in trains)
    assert sum("--label Nodule" in line for line in trains) == 8
    final = shlex.split(lines[-1])
    assert final[:2] == ["cxrres", "study"] and "--labels" in final
    args = build_parser().parse_args(final[1:])
    again = study_settings(args.config, {name: getattr(args, name) for name in GRID_FLAGS})
    assert again == study
    for line in trains[:3]:  # each train command is the run the study would train
        parsed = _parse_train(shlex.split(line)[2:])
        assert parsed.out.startswith(str(tmp_path / "s" / runs.STUDY_RUNS)) and not parsed.progress


def test_study_file_round_trip(tmp_path: Path) -> None:
    study = make_study({"data": str(MINI), "out": str(tmp_path / "s"), "labels": "all", "resolutions": [64]})
    path = write_study_file(study)
    assert study_settings(path, {}) == study


#: Every file and folder name of the run- and study-directory schema.
SCHEMA = {
    name: getattr(runs, name)
    for name in (
        "CONFIG",
        "STATUS",
        "METRICS",
        "PREDICTIONS",
        "PREDICTIONS_VAL",
        "OPERATING_POINTS",
        "CHECKPOINTS",
        "BEST",
        "LAST",
        "AUC",
        "LOCALIZATION",
        "LOCALIZATION_SAMPLES",
        "LOCALIZATION_EXAMPLES",
        "SKIPPED_ROWS",
        "STUDY_FILE",
        "KEY_TABLE",
        "REPORT_HTML",
        "REPORT_MD",
        "REPORT_FILES",
        "SLURM_JOBS",
        "COMPARISON",
        "AUC_GOOGLE2019",
        "EXTERNAL_TEST",
    )
}


@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_each_file_name_is_spelled_once(name: str) -> None:
    literal = re.compile(r"""["']""" + re.escape(SCHEMA[name]) + r"""["']""")
    hits = [
        f"{path.relative_to(PACKAGE)}:{i}"
        for path in PACKAGE.rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line) and "torch.hub" not in line
    ]  # torch hub's own `checkpoints` folder is another fact
    assert hits == [f"runs.py:{_line_of(name)}"], hits


def _line_of(name: str) -> int:
    lines = (PACKAGE / "runs.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(f"{name} = "))


def test_no_module_over_450_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450
    }
    assert long == {}


def test_settings_without_lightning() -> None:
    """Reading settings must not need the training stack: config.py and study.py never import Lightning."""
    for module in (
        "config.py",
        "study/grid.py",
        "runs.py",
        "inference/network.py",
        "evaluation/evaluate.py",
        "evaluation/compare.py",
    ):
        text = (PACKAGE / module).read_text()
        assert not re.search(r"^\s*(import|from) lightning", text, re.M), module


def test_add_train_arguments_defaults_are_none() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    parsed = vars(parser.parse_args([]))
    assert all(parsed[f.name] is None for f in dataclasses.fields(TrainConfig))


def test_new_data_set_settings_keep_an_nih_run_identity() -> None:
    """dataset, views, uncertain, classes, readers and skip_bad are left out of the identity at the values NIH runs
    implied."""
    from cxrres.config import identity

    nih = TrainConfig(data="/d", resolution_px=64, dataset="nih")
    assert not {"dataset", "views", "uncertain", "class_names", "readers", "skip_bad"} & set(identity(nih))
    assert identity(TrainConfig(data="/d", resolution_px=64, skip_bad=True))["skip_bad"] is True
    assert nih.classes == list(CLASSES) and nih.data_options().dataset == "nih"
    chexpert = TrainConfig(
        data="/d", resolution_px=64, dataset="chexpert", uncertain="ones", class_names="Edema,Pleural Effusion"
    )
    assert {k: identity(chexpert)[k] for k in ("dataset", "uncertain", "class_names")} == {
        "dataset": "chexpert",
        "uncertain": "ones",
        "class_names": "Edema,Pleural Effusion",
    }
    assert chexpert.classes == ["Edema", "Pleural Effusion"]
    assert _parse_train(
        ["--data", "d", "--resolution", "32", "--classes", "Edema", "--uncertain", "zeros"]
    ).classes == ["Edema"]
