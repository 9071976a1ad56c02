"""Test-time resolution: `cxrres evaluate RUN --test-resolution`, the study's `test_resolutions` (checked at load,
scored per run, shown in the report as a train x test heat map), and refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cxrres import runs
from cxrres.cli import main
from cxrres.evaluation.cross_resolution import COLUMNS, parse_test_resolutions, score_at_resolutions
from cxrres.errors import CxrresError
from cxrres.report.calibration import auc_matrix, best_test_sentences
from cxrres.synthetic import synthesize

RUN = "runs/densenet121_32px_seed0"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A one-run study (32 px, 1 epoch) on a 60-image phantom, scored at test resolutions 32 and 48."""
    base = tmp_path_factory.mktemp("testres")
    synthesize(base / "phantom", n_images=60, size_px=64, seed=3, workers=1, progress=False)
    config = base / "study.yaml"
    config.write_text(
        "train:\n  weights: none\n  max_epochs: 1\n  batch_size: 8\nlocalize:\n  examples: 1\nn_boot: 50\n"
        "test_resolutions: [48, 32]\n"
    )
    assert (
        main(
            [
                "study",
                "--data",
                str(base / "phantom"),
                "--resolutions",
                "32",
                "--out",
                str(base / "s"),
                "--config",
                str(config),
                "--quiet",
            ]
        )
        == 0
    )
    return base / "s"


def test_study_scores_every_run_at_its_test_resolutions(study: Path) -> None:
    run = study / RUN
    table = pd.read_csv(run / runs.AUC_BY_TEST_RESOLUTION)
    assert table.columns.tolist()[: len(COLUMNS)] == list(COLUMNS)
    assert sorted(set(table["test_resolution_px"])) == [32, 48]
    assert (run / runs.CALIBRATION).is_file() and (study / "comparison/calibration_long.csv").is_file()
    long = pd.read_csv(study / "comparison/test_resolution_long.csv")
    assert long["test_resolution_px"].tolist() == [32, 48] and long["resolution_px"].tolist() == [32, 32]
    html = (study / runs.REPORT_HTML).read_text()
    assert "<h2>Test-time resolution</h2>" in html and "<h2>Precision and calibration</h2>" in html
    assert "best tested at" in html
    assert yaml.safe_load((study / runs.STUDY_FILE).read_text())["test_resolutions"] == [32, 48]
    stamp = (run / runs.AUC_BY_TEST_RESOLUTION).stat().st_mtime_ns
    assert (
        main(
            [
                "study",
                "--config",
                str(study / runs.STUDY_FILE),
                "--data",
                str(study.parent / "phantom"),
                "--resolutions",
                "32",
                "--out",
                str(study),
                "--quiet",
            ]
        )
        == 0
    )
    assert (run / runs.AUC_BY_TEST_RESOLUTION).stat().st_mtime_ns == stamp  # a rerun skips what is done


def test_train_resolution_rows_equal_auc_csv(study: Path, tmp_path: Path, capsys) -> None:
    run = study / RUN
    assert main(["evaluate", str(run), "--test-resolution", "64,32", "--n-boot", "50", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test    32 px: mean AUC" in out and "test    64 px: mean AUC" in out
    table = pd.read_csv(tmp_path / runs.AUC_BY_TEST_RESOLUTION)
    assert sorted(set(table["test_resolution_px"])) == [32, 64]
    own = table[table["test_resolution_px"] == 32].set_index("class")
    auc = pd.read_csv(run / runs.AUC).set_index("class")  # the study evaluated with n_boot 50 as well
    assert own.index.tolist() == auc.index.tolist()
    for column in ("auc", "ci_low", "ci_high"):
        assert np.allclose(own[column], auc[column], atol=1e-6, equal_nan=True), column
    assert own["n_pos"].iloc[:-1].tolist() == auc["n_pos"].iloc[:-1].tolist()
    other = table[table["test_resolution_px"] == 64]
    assert not np.allclose(other["auc"], own["auc"].to_numpy(), equal_nan=True)  # 64 px is a different input


@pytest.mark.parametrize(
    "value, message",
    [("16", "16 px out of range [32, 1024]"), ("64,abc", "'abc' is not a whole"), ("2048", "2048 px out of range")],
)
def test_bad_test_resolutions_are_refused_in_one_line(
    study: Path, tmp_path: Path, capsys, value: str, message: str
) -> None:
    assert main(["evaluate", str(study / RUN), "--test-resolution", value, "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / runs.AUC_BY_TEST_RESOLUTION).exists()


def test_a_vit_refuses_a_size_off_its_patch_grid(study: Path, tmp_path: Path) -> None:
    run = tmp_path / "vit"
    shutil.copytree(study / RUN, run, ignore=shutil.ignore_patterns("checkpoints", "logs", runs.AUC_BY_TEST_RESOLUTION))
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    config["settings"]["arch"] = "timm:vit_tiny_patch16_224"
    (run / runs.CONFIG).write_text(yaml.safe_dump(config))
    with pytest.raises(CxrresError, match="40 px is not a multiple of its 16-px patches"):
        score_at_resolutions(run, [40])  # refused before any data or checkpoint is read
    assert not (run / runs.AUC_BY_TEST_RESOLUTION).exists()


def test_study_file_test_resolutions_checked_at_load(tmp_path: Path, capsys) -> None:
    for bad, message in (("[64, 8]", "8 px out of range"), ("64", "give a list"), ("[64, 1.5]", "1.5 is not a whole")):
        config = tmp_path / "study.yaml"
        config.write_text(f"test_resolutions: {bad}\n")
        assert main(["study", "--data", str(tmp_path), "--config", str(config), "--dry-run"]) != 0
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {config}") or str(config) in err, err
        assert message in err and len(err.splitlines()) == 1
    assert parse_test_resolutions([256, 64, 64]) == (64, 256)


def test_best_test_size_sentences() -> None:
    long = pd.DataFrame(
        {
            "heading": ["A 64 px"] * 3 + ["A 128 px"] * 3,
            "resolution_px": [64] * 3 + [128] * 3,
            "test_resolution_px": [64, 128, 256] * 2,
            "auc": [0.70, 0.72, 0.65, 0.60, 0.75, 0.75],
        }
    )
    matrix = auc_matrix(long)
    assert matrix.index.tolist() == ["A 64 px", "A 128 px"] and matrix.columns.tolist() == [64, 128, 256]
    assert best_test_sentences(long) == [
        "A 64 px: best tested at 128 px, mean AUC 0.720 (at its train size 64 px: 0.700).",
        "A 128 px: best tested at 128 px, mean AUC 0.750 (its train size).",
    ]


def test_run_status_with_threads_and_kernels_reads_back(tmp_path: Path) -> None:
    """run.json records threads and CPU kernels; reading it back (as a study does after training) must not fail."""
    status = runs.RunStatus(status="finished", epochs=1, threads=2, cpu_kernels="AVX2", onednn_max_cpu_isa="AVX2")
    runs.write_status(tmp_path, status)
    assert runs.read_status(tmp_path) == status
