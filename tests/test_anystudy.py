"""compare, study and report on data sets other than ChestX-ray14: masked labels (-1) in the paired tests, the
bootstrap by the patients the predictions record, the data set's own class names as study labels, and a whole
`cxrres study` on a tiny CheXpert-v1.0-small (uncertain labels) through to report.html."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrres import runs
from cxrres.evaluation import bootstrap
from cxrres.cli import main
from cxrres.evaluation.compare import compare_runs
from cxrres.data.datasets import chexpert
from cxrres.errors import CxrresError, DataFormatError
from cxrres.evaluation.evaluate import auc_table
from cxrres.report.document import runs_data
from cxrres.report.reference import detect_reference
from cxrres.study.grid import make_study

from conftest import MINI, write_chexpert_small

CLASSES = ["A", "B", "C"]


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUC from every (positive, negative) pair, ties counting one half; NaN without both."""
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return np.nan
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def write_run(path: Path, resolution_px: int, predictions: runs.Predictions) -> Path:
    """A run directory holding config.yaml and the given test predictions."""
    path.mkdir(parents=True)
    runs.write_yaml_atomic(
        path / runs.CONFIG,
        {"settings": {"arch": "densenet121", "resolution_px": resolution_px, "seed": 0, "label": None}},
    )
    runs.write_predictions(path / runs.PREDICTIONS, predictions)
    return path


def synthetic(n: int = 60, signal: float = 1.0, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image names, 0/1 labels (n, 3) the same for every seed, scores separating them by `signal`, 2 decimals)."""
    labels = (np.random.default_rng(99).random((n, len(CLASSES))) < 0.4).astype(np.int8)
    scores = 1 / (1 + np.exp(-(signal * labels + np.random.default_rng(seed).normal(size=labels.shape))))
    return [f"img{i:03d}.png" for i in range(n)], labels, np.round(scores, 2)


def test_compare_on_masked_labels_equals_the_unmasked_copy_on_the_kept_rows(tmp_path: Path) -> None:
    images, labels, _ = synthetic()
    masked = labels.copy()
    masked[::4, 1] = -1  # class B: every 4th image masked out (uncertain under `uncertain: ignore`)
    kept = masked[:, 1] != -1
    scores = {64: synthetic(signal=0.5, seed=1)[2], 128: synthetic(signal=1.5, seed=2)[2]}
    dirs = [write_run(tmp_path / f"m{r}", r, runs.Predictions(images, CLASSES, s, masked)) for r, s in scores.items()]
    rows = np.flatnonzero(kept)  # the unmasked copy restricted to B's kept rows
    copies = [
        write_run(tmp_path / f"c{r}", r, runs.Predictions([images[i] for i in rows], CLASSES, s[rows], labels[rows]))
        for r, s in scores.items()
    ]
    n_boot = 40
    got, ref = compare_runs(dirs, n_boot=n_boot, seed=3), compare_runs(copies, n_boot=n_boot, seed=3)
    assert got.test_labels.set_index("class").loc["B"].tolist() == [
        int(labels[kept, 1].sum()),
        int((labels[kept, 1] == 0).sum()),
        15,
    ]
    columns = ["auc", "ci_low", "ci_high"]
    for frame_got, frame_ref in ((got.auc, ref.auc), (got.delong, ref.delong)):
        b_got, b_ref = frame_got[frame_got["class"] == "B"], frame_ref[frame_ref["class"] == "B"]
        cols = columns if "auc" in frame_got.columns else ["auc_a", "auc_b", "z", "p"]
        assert len(b_got) == len(b_ref) > 0
        assert b_got[cols].to_numpy() == pytest.approx(b_ref[cols].to_numpy(), abs=1e-12)
    per_run = got.auc.set_index(["heading", "class"])["auc"]
    for r, s in scores.items():  # every class against brute force: B on its kept rows, A and C on all
        expected = [
            brute_auc(labels[:, 0], s[:, 0]),
            brute_auc(labels[kept, 1], s[kept, 1]),
            brute_auc(labels[:, 2], s[:, 2]),
        ]
        assert [per_run[(f"DenseNet-121 {r} px", c)] for c in CLASSES] == pytest.approx(expected, abs=1e-12)
        assert per_run[(f"DenseNet-121 {r} px", "mean")] == pytest.approx(np.mean(expected), abs=1e-12)
    # the paired bootstrap of the mean and the best-resolution shares, replicate by replicate as repeated cases
    weights = bootstrap.patient_weights(np.arange(len(images)), n_boot, 3)  # no patients recorded, no NIH names: images
    replicates = np.full((2, n_boot, 3), np.nan)
    for r, s in enumerate(scores.values()):
        for b in range(n_boot):
            for c in range(3):
                keep = np.flatnonzero(masked[:, c] != -1)
                idx = np.repeat(keep, weights[b, keep].astype(int))
                replicates[r, b, c] = brute_auc(masked[idx, c], s[idx, c])
    diffs = np.nanmean(replicates[0], axis=1) - np.nanmean(replicates[1], axis=1)
    pair = replicates[:, :, 1]  # class B in both runs
    valid = ~np.isnan(pair).any(axis=0)
    top = pair[:, valid] == pair[:, valid].max(axis=0)
    wins, counted = (top / top.sum(axis=0)).sum(axis=1), int(valid.sum())
    boot = got.bootstrap.iloc[0]
    low, high = np.percentile(diffs, [2.5, 97.5])
    p = min(1.0, 2 * (1 + min(np.sum(diffs <= 0), np.sum(diffs >= 0))) / (n_boot + 1))  # (1 + count) / (B + 1), doubled
    assert (boot["ci_low"], boot["ci_high"], boot["p"]) == pytest.approx((low, high, p), abs=1e-12)
    best = got.best[got.best["class"] == "B"].sort_values("resolution_px")
    assert best["share"].tolist() == pytest.approx((wins / counted).tolist(), abs=1e-12)
    assert (best["n_replicates"] == counted).all()


def test_a_masked_label_is_not_an_unfilled_one(tmp_path: Path) -> None:
    images, labels, scores = synthetic(n=20)
    masked = labels.copy()
    masked[3, 1] = -1
    a = write_run(tmp_path / "a", 64, runs.Predictions(images, CLASSES, scores, masked))
    b = write_run(tmp_path / "b", 128, runs.Predictions(images, CLASSES, scores, labels))  # B of image 3 not masked
    with pytest.raises(CxrresError, match=r"labels of B differ from another run's"):
        compare_runs([a, b], n_boot=10)
    c = write_run(tmp_path / "c", 256, runs.Predictions(images, ["B", "C"], scores[:, 1:], masked[:, 1:]))
    comparison = compare_runs([a, c], n_boot=10)  # c lacks A: A's labels come from a alone
    assert comparison.test_labels["n_masked"].tolist() == [0, 1, 0]
    assert comparison.test_labels["n_pos"].tolist() == (labels.sum(axis=0) - [0, labels[3, 1], 0]).tolist()


def chexpert_like(n_patients: int = 30, copies: int = 12) -> runs.Predictions:
    """Test predictions on CheXpert-like names, one image per patient, except patient 1 with `copies` identical ones."""
    rng = np.random.default_rng(5)
    patients = [1] * copies + list(range(2, n_patients + 1))
    images = [f"valid/patient{p:05d}/study{k + 1}/view1_frontal.jpg" for k, p in enumerate(patients)]
    labels = (rng.random((n_patients, 2)) < 0.5).astype(np.int8)
    labels[0] = [1, 0]
    scores = np.clip(0.3 * labels + rng.random((n_patients, 2)) * 0.7, 0, 1)
    labels, scores = (
        labels[[0] * (copies - 1) + list(range(n_patients))],
        scores[[0] * (copies - 1) + list(range(n_patients))],
    )
    scores[:copies, 0] = 0.05  # patient 1, positive for A, scored lowest: its weight moves the mean AUC a lot
    return runs.Predictions(images, ["A", "B"], scores, labels, [str(p) for p in patients])


def test_the_bootstrap_resamples_the_recorded_patients(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = chexpert_like()
    run = write_run(tmp_path / "run", 64, p)
    again = runs.read_predictions(run)
    assert again.patient_ids == p.patient_ids and pd.read_csv(run / runs.PREDICTIONS).columns[1] == runs.PATIENT_COLUMN
    table = auc_table(again, n_boot=300).set_index("class")
    patients = [int(re.search(r"patient(\d+)/", name).group(1)) for name in p.images]  # independent of the column
    by_patient = bootstrap.bootstrap_mean_auc(p.labels, p.scores, np.array(patients), 300, 0)
    by_image = bootstrap.bootstrap_mean_auc(p.labels, p.scores, np.arange(len(p.images)), 300, 0)
    assert tuple(table.loc["mean", ["auc", "ci_low", "ci_high"]]) == pytest.approx(by_patient, abs=1e-12)
    assert table.loc["mean", "note"] == "mean of 2 classes; 300 bootstrap replicates by patient"
    assert by_patient[2] - by_patient[1] > 1.3 * (
        by_image[2] - by_image[1]
    )  # 12 copies of one patient: a wider interval
    old = runs.Predictions(p.images, p.classes, p.scores, p.labels)  # a file from before patients were recorded
    table_old = auc_table(old, n_boot=300).set_index("class")
    assert tuple(table_old.loc["mean", ["ci_low", "ci_high"]]) == pytest.approx(by_image[1:], abs=1e-12)
    assert table_old.loc["mean", "note"].endswith("by image")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--n-boot", "300"]) == 0
    assert "(mean of 2 classes; 300 bootstrap replicates by patient)" in capsys.readouterr().out
    comparison = compare_runs([run], n_boot=300)  # the same patients, so the same interval in compare
    mean = comparison.auc.set_index("class").loc["mean"]
    assert comparison.unit == "patient" and (mean["ci_low"], mean["ci_high"]) == pytest.approx(
        by_patient[1:], abs=1e-12
    )


def test_nih_patients_recorded_as_text_draw_the_same_replicates(tmp_path: Path) -> None:
    images = [f"{p:08d}_{k:03d}.png" for p in (2, 10, 9, 100, 11, 1) for k in range(3)]  # numeric vs text order differ
    rng = np.random.default_rng(1)
    labels = np.tile([[1, 0], [0, 1], [0, 0]], (6, 1)).astype(np.int8)
    scores = rng.random(labels.shape)
    ids = [str(int(name[:8])) for name in images]
    plain = auc_table(runs.Predictions(images, ["A", "B"], scores, labels), n_boot=200)
    recorded = auc_table(runs.Predictions(images, ["A", "B"], scores, labels, ids), n_boot=200)
    pd.testing.assert_frame_equal(plain, recorded)


def test_predictions_patient_column_must_not_be_blank(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", 64, chexpert_like(n_patients=5, copies=2))
    frame = pd.read_csv(run / runs.PREDICTIONS, dtype={runs.PATIENT_COLUMN: str})
    frame.loc[3, runs.PATIENT_COLUMN] = None
    frame.to_csv(run / runs.PREDICTIONS, index=False)
    with pytest.raises(DataFormatError, match=r"predictions_test.csv:5: patient_id is empty"):
        runs.read_predictions(run)


def test_study_labels_are_the_data_sets_own_names(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_chexpert_small(tmp_path / "CheXpert-v1.0-small")
    study = make_study(
        {"data": str(root), "labels": "Pleural Effusion,all", "resolutions": "32", "out": str(tmp_path / "s")}
    )
    assert study.labels == ("Pleural Effusion", None)
    with pytest.raises(
        CxrresError,
        match=r"unknown label 'Effusion'; choose from all, No Finding, Enlarged Cardiomediastinum, "
        r".*, Support Devices$",
    ):
        make_study({"data": str(root), "labels": "Effusion"})
    assert make_study({"data": str(MINI), "labels": "Infiltrate,Nodule"}).labels == (
        "Infiltration",
        "Nodule",
    )  # NIH alias
    with pytest.raises(
        CxrresError, match=r"unknown label 'Pleural Effusion'; choose from all, Atelectasis, .*, Pneumothorax$"
    ):
        make_study({"data": str(MINI), "labels": "Pleural Effusion"})
    assert (
        main(
            [
                "study",
                "--data",
                str(root),
                "--labels",
                "Pleural Effusion",
                "--resolutions",
                "32",
                "--out",
                str(tmp_path / "s"),
                "--dry-run",
            ]
        )
        == 0
    )
    assert "densenet121_32px_seed0_Pleural Effusion" in capsys.readouterr().out
    assert main(["study", "--data", str(root), "--labels", "Effusion", "--out", str(tmp_path / "s"), "--dry-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cxrres study: error:") and "Pleural Effusion" in err[0]


@pytest.fixture(scope="module")
def chexpert_study(tmp_path_factory) -> Path:
    """A finished study on the tiny CheXpert-v1.0-small: 32 and 48 px, one seed, one epoch, no pretrained weights."""
    base = tmp_path_factory.mktemp("anystudy")
    root = write_chexpert_small(base / "CheXpert-v1.0-small")
    config = base / "study.yaml"
    config.write_text("train:\n  weights: none\n  max_epochs: 1\n  batch_size: 8\n  precision: 32-true\nn_boot: 20\n")
    # the study's default cache, built in this process (no worker start-up) and then reused by the study
    assert main(["prepare", "--data", str(root), "--resolutions", "32,48", "--workers", "1", "--quiet"]) == 0
    assert (
        main(
            [
                "study",
                "--data",
                str(root),
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
    return base


def test_chexpert_study_runs_through_to_the_report(chexpert_study: Path) -> None:
    s = chexpert_study / "s"
    for name in (
        "report.html",
        "report.md",
        "key_results.md",
        "comparison/compare.md",
        "comparison/auc_table.csv",
        "comparison/test_labels.csv",
        "comparison/bootstrap_tests.csv",
        "comparison/delong_tests.csv",
        "report_files/auc_vs_resolution.png",
        "runs/densenet121_48px_seed0/auc.csv",
    ):
        assert (s / name).is_file(), name
    assert not list(s.glob("runs/*/localization.csv"))  # CheXpert has no boxes: not localized
    table = pd.read_csv(s / "comparison" / "auc_table.csv")
    assert table["class"].tolist() == [*chexpert.CLASSES, "mean"]
    # masked counts: the test part is valid.csv's frontal images; uncertain Edema (-1.0) is masked under `ignore`
    with open(chexpert_study / "CheXpert-v1.0-small" / "valid.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["Frontal/Lateral"] == "Frontal"]
    counts = pd.read_csv(s / "comparison" / "test_labels.csv").set_index("class")
    for name in chexpert.CLASSES:
        cells = [r[name] for r in rows]
        expected = [cells.count("1.0"), len(cells) - cells.count("1.0") - cells.count("-1.0"), cells.count("-1.0")]
        assert counts.loc[name, ["n_pos", "n_neg", "n_masked"]].tolist() == expected, name
    assert counts.loc["Edema", "n_masked"] == 2
    predictions = runs.read_predictions(s / "runs" / "densenet121_32px_seed0")
    assert predictions.patient_ids == [re.search(r"patient(\d+)/", n).group(1).lstrip("0") for n in predictions.images]
    assert pd.read_csv(s / "runs/densenet121_32px_seed0/auc.csv").iloc[-1]["note"].endswith("by patient")
    html = (s / "report.html").read_text()
    for text in (
        "<h2>Key results</h2>",
        "<h2>Test AUC</h2>",
        "<h2>Best resolution per class</h2>",
        "Paired tests against",
        "data set chexpert",
        "The runs are on the chexpert data set",
        "no published reference applies",
        "<td>Edema</td><td>2</td><td>4</td><td>2</td>",
        "<td>Pleural Effusion</td>",
        "patient-bootstrap",
    ):
        assert text in html, text
    assert "<h2>Localization</h2>" not in html and not (s / "comparison" / "published_comparison.csv").exists()
    data = runs_data(runs.read_settings(s / "runs/densenet121_32px_seed0"))  # as `cxrres report` reads it
    table = data.table
    assert (data.root.root, table.split, table.dataset) == (
        (chexpert_study / "CheXpert-v1.0-small").resolve(),
        None,
        "chexpert",
    )
    assert "The runs are on the chexpert data set" in detect_reference(table, 8).reason
