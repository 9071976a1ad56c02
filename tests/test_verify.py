"""`cxrres verify` on a tiny study: everything agrees as written; one changed value in any file is named."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from cxrres import runs
from cxrres.cli import main
from cxrres.synthetic import synthesize


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A two-run study (32 and 48 px, 1 epoch) on a 60-image phantom, evaluated, localized and reported, with one
    exported model (and its card) inside the study folder and one `cxrres predict` output."""
    base = tmp_path_factory.mktemp("verify")
    synthesize(base / "phantom", n_images=60, size_px=64, seed=3, workers=1, progress=False)
    config = base / "study.yaml"
    config.write_text(
        "train:\n  weights: none\n  max_epochs: 1\n  batch_size: 8\nlocalize:\n  examples: 0\nn_boot: 50\n"
    )
    assert (
        main(
            [
                "study",
                "--data",
                str(base / "phantom"),
                "--resolutions",
                "32,48",
                "--out",
                str(base / "s"),
                "--config",
                str(config),
                "--quiet",
            ]
        )
        == 0
    )
    run = base / "s" / "runs" / "densenet121_32px_seed0"
    assert main(["export", str(run), "--out", str(base / "s" / "export" / "model.onnx")]) == 0
    images = [base / "phantom" / "images" / n for n in runs.read_predictions(run).images[:6]]
    assert main(["predict", str(run), *map(str, images), "--out", str(base / "p"), "--workers", "0", "--quiet"]) == 0
    return base


def _copy(study, tmp_path):
    shutil.copytree(study / "s", tmp_path / "s", symlinks=True)
    return tmp_path / "s"


def test_a_study_as_written_verifies(study, capsys) -> None:
    assert main(["verify", str(study / "s"), str(study / "p")]) == 0
    out = capsys.readouterr().out
    assert "all agree" in out and "0 files" not in out
    checked = int(out.split("verify ")[1].split(": ")[1].split(" files")[0])
    assert checked >= 20  # 2 runs x (auc, operating points, 2 localization files) + comparison/ + key table + card


def test_one_changed_auc_is_named(study, tmp_path, capsys) -> None:
    s = _copy(study, tmp_path)
    path = s / "runs" / "densenet121_48px_seed0" / runs.AUC
    table = pd.read_csv(path)
    row = int(np.flatnonzero(table["auc"].notna().to_numpy() & (table["class"] != "mean").to_numpy())[0])
    name = table.loc[row, "class"]
    table.loc[row, "auc"] = min(1.0, table.loc[row, "auc"] + 0.01) if table.loc[row, "auc"] < 0.99 else 0.5
    table.to_csv(path, index=False)
    assert main(["verify", str(s)]) == 1
    captured = capsys.readouterr()
    assert f"{path}: class {name}, auc: written" in captured.err
    assert "disagreement" in captured.out


def test_changed_threshold_localization_and_key_table_are_named(study, tmp_path, capsys) -> None:
    s = _copy(study, tmp_path)
    run = s / "runs" / "densenet121_32px_seed0"
    ops = pd.read_csv(run / runs.OPERATING_POINTS)
    i = int(ops["threshold"].first_valid_index())
    ops.loc[i, "threshold"] = float(np.float32(ops.loc[i, "threshold"]) * np.float32(1.0000001) + np.float32(1e-7))
    ops.to_csv(run / runs.OPERATING_POINTS, index=False, float_format="%.9g")
    samples = pd.read_csv(run / runs.LOCALIZATION_SAMPLES)
    samples.loc[0, "hit"] = 1 - samples.loc[0, "hit"]
    samples.to_csv(run / runs.LOCALIZATION_SAMPLES, index=False)
    key = s / runs.KEY_TABLE
    key.write_text(key.read_text().replace("0.", "0.9", 1))
    assert main(["verify", str(s)]) == 1
    err = capsys.readouterr().err
    assert f"{run / runs.OPERATING_POINTS}: class {ops.loc[i, 'class']}, threshold" in err
    assert f"{run / runs.LOCALIZATION_SAMPLES}: line 2, hit: written" in err
    assert f"{key}: line " in err


def test_model_card_and_predict_calls(study, tmp_path, capsys) -> None:
    s = _copy(study, tmp_path)
    card = s / "export" / "model.onnx.md"
    card.write_text(card.read_text().replace("| youden |", "| youden  |", 1))
    predicted = tmp_path / "p"
    shutil.copytree(study / "p", predicted)
    table = pd.read_csv(predicted / "predictions.csv")
    column = next(c for c in table.columns if c.startswith("positive_") and table[c].notna().all())
    table.loc[0, column] = 1 - table.loc[0, column]
    table.to_csv(predicted / "predictions.csv", index=False, float_format="%.9g")
    assert main(["verify", str(card), str(predicted)]) == 1
    err = capsys.readouterr().err
    assert f"{card}: line " in err and f"{predicted / 'predictions.csv'}: line 2, {column}: written" in err


def test_nothing_to_verify_is_one_line(tmp_path, capsys) -> None:
    assert main(["verify", str(tmp_path)]) == 1
    assert "nothing to verify" in capsys.readouterr().err
