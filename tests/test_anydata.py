"""Data sets other than ChestX-ray14 through the whole pipeline on the command line: a tiny CheXpert-v1.0-small and a
plain labels.csv go through prepare, train (32 px, one epoch, no pretrained weights), evaluate and predict."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cxrres import runs
from cxrres.cli import main
from cxrres.data.datasets import chexpert
from cxrres.inference.network import load_run_model

from conftest import MINI, write_chexpert_small

TRAIN = ["--resolution", "32", "--max-epochs", "1", "--weights", "none", "--batch-size", "8", "--quiet"]


def test_chexpert_small_prepare_train_evaluate_predict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_chexpert_small(tmp_path / "CheXpert-v1.0-small")
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert (
        main(
            ["prepare", "--data", str(root), "--resolutions", "32", "--cache", str(cache), "--workers", "1", "--quiet"]
        )
        == 0
    )
    assert "38 images; built 32 px" in capsys.readouterr().out  # every listed image, lateral ones too
    assert main(["train", "--data", str(root), "--cache", str(cache), "--out", str(run), *TRAIN]) == 0
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    # frontal only: 20 train.csv frontal images (val carved patient-wise from them), the 8 frontal of valid.csv as test
    assert config["data"]["images"] == {"train": 18, "val": 2, "test": 8}
    assert config["data"]["dataset"] == config["settings"]["dataset"] == "chexpert"
    assert config["data"]["classes"] == list(chexpert.CLASSES) and config["settings"]["uncertain"] == "ignore"
    _, settings, classes = load_run_model(run)
    assert classes == list(chexpert.CLASSES) and runs.read_settings(run).classes == list(chexpert.CLASSES)
    predictions = runs.read_predictions(run)
    assert predictions.images == [f"valid/patient{p}/study1/view1_frontal.jpg" for p in range(64541, 64549)]
    edema = predictions.labels[:, chexpert.CLASSES.index("Edema")]
    assert edema.tolist() == [-1, 0, 1, 0, -1, 0, 1, 0]  # patients 64541 and 64545 uncertain: masked out
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--n-boot", "20"]) == 0
    payload = json.loads(capsys.readouterr().out)["auc"]
    table = pd.read_csv(run / runs.AUC).set_index("class")
    assert (table.loc["Edema", "n_pos"], table.loc["Edema", "n_neg"]) == (2, 4)
    assert (table.loc["Pleural Effusion", "n_pos"], table.loc["Pleural Effusion", "n_neg"]) == (
        4,
        4,
    )  # blank = negative
    assert (table.loc["Cardiomegaly", "n_pos"], table.loc["Cardiomegaly", "n_neg"]) == (3, 5)
    defined = [c for c in chexpert.CLASSES if payload[c]["auc"] is not None]
    assert defined == ["Cardiomegaly", "Edema", "Pleural Effusion"]
    assert payload["mean"]["auc"] == pytest.approx(np.mean([payload[c]["auc"] for c in defined]), abs=1e-6)
    out = tmp_path / "predicted"
    assert main(["predict", str(run), str(root / "valid"), "--out", str(out), "--workers", "0", "--quiet"]) == 0
    scored = pd.read_csv(out / "predictions.csv")
    assert len(scored) == 10 and set(chexpert.CLASSES) <= set(scored.columns)  # every image under valid/, laterals too
    points = pd.read_csv(run / runs.OPERATING_POINTS).set_index("class")
    assert (points.loc["Cardiomegaly", "n_pos"], points.loc["Cardiomegaly", "n_neg"]) == (1, 1)  # val: patients 7, 15
    capsys.readouterr()
    assert main(["localize", str(run), "--quiet"]) == 1  # CheXpert has no boxes: one line, no traceback
    assert "localization needs ground-truth boxes" in capsys.readouterr().err


def test_operating_points_leave_masked_labels_out() -> None:
    from cxrres.evaluation.operating import OperatingRule, operating_points

    labels = np.array([[1], [0], [-1], [1], [0]])
    scores = np.array([[0.9], [0.2], [0.95], [0.6], [0.4]])
    row = operating_points(labels, scores, ["A"], OperatingRule.parse("youden")).iloc[0]
    assert (row["n_pos"], row["n_neg"], row["threshold"], row["sensitivity"], row["specificity"]) == (
        2,
        2,
        0.6,
        1.0,
        1.0,
    )


def test_plain_csv_layout_trains_with_its_own_classes(tmp_path: Path) -> None:
    root = write_chexpert_small(tmp_path / "any")
    frontal = sorted(str(p.relative_to(root)) for p in root.glob("*/*/*/view1_frontal.jpg"))
    rows = []
    for i, image in enumerate(frontal):
        patient = image.split("/")[1]
        part = (
            "test"
            if image.startswith("valid/")
            else ("val" if patient in ("patient00015", "patient00016") else "train")
        )
        rows.append(
            {
                "image": image,
                "patient": patient,
                "split": part,
                "Effusion": i % 2,
                "Mass": "-1" if i % 5 == 0 else i % 3 == 0,
            }
        )
    pd.DataFrame(rows).replace({True: 1, False: 0}).to_csv(root / "labels.csv", index=False)
    for name in ("train.csv", "valid.csv"):
        (root / name).unlink()
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--cache", str(tmp_path / "cache"), "--out", str(run), *TRAIN]) == 0
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    assert config["data"]["dataset"] == "csv" and config["data"]["classes"] == ["Effusion", "Mass"]
    assert config["data"]["images"] == {"train": 18, "val": 2, "test": 8}
    predictions = runs.read_predictions(run)
    assert predictions.classes == ["Effusion", "Mass"] and len(predictions.images) == 8
    assert main(["evaluate", str(run), "--n-boot", "20"]) == 0
    table = pd.read_csv(run / runs.AUC).set_index("class")
    assert predictions.labels[:, 1].tolist().count(-1) == 2  # rows 20 and 25 of labels.csv
    assert table.loc["Mass", "n_pos"] + table.loc["Mass", "n_neg"] == 6


def test_mimic_labeler_reaches_the_reader_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cxrres.config import identity
    from cxrres.data.datasets import mimic

    from test_datasets import write_mimic

    root = write_mimic(tmp_path / "mimic", negbio=True, images=True, n_subjects=14)
    assert main(["describe", "--data", str(root), "--labeler", "negbio", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["classes"]["Edema"]["positive"] == {"train": 3, "val": 2, "test": 2}  # negbio: 2, 7, 12; 3, 13; 4, 6
    assert "labels: mimic-cxr-2.0.0-negbio.csv.gz" in " ".join(summary["notes"])
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(root),
                "--cache",
                str(tmp_path / "cache"),
                "--out",
                str(run),
                "--labeler",
                "negbio",
                *TRAIN,
            ]
        )
        == 0
    )
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    assert config["settings"]["labeler"] == "negbio" and config["data"]["images"] == {"train": 7, "val": 3, "test": 4}
    predictions = runs.read_predictions(run)
    assert predictions.images == [f"files/p10/p1000000{s}/s5000000{s}/d{s}p.jpg" for s in (4, 5, 6)] + [
        "files/p10/p10000010/s50000010/d10p.jpg"
    ]
    assert predictions.labels[:, mimic.CLASSES.index("Edema")].tolist() == [1, 0, 1, 0]  # CheXpert's file: all 0
    settings = runs.read_settings(run)
    assert identity(settings)["labeler"] == "negbio"
    assert "labeler" not in identity(
        dataclasses.replace(settings, labeler="chexpert")
    )  # older runs keep their identity
    for other in (write_chexpert_small(tmp_path / "cx"), tmp_path / "mini"):
        if other.name == "mini":
            shutil.copytree(MINI, other)
        capsys.readouterr()
        assert main(["describe", "--data", str(other), "--labeler", "negbio"]) == 1
        assert (
            main(
                [
                    "train",
                    "--data",
                    str(other),
                    "--labeler",
                    "negbio",
                    "--cache",
                    str(tmp_path / "c2"),
                    "--out",
                    str(tmp_path / "r2"),
                    *TRAIN,
                ]
            )
            == 1
        )
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and all("--labeler negbio: only MIMIC-CXR-JPG has a choice of labeler" in e for e in err)
    assert not (tmp_path / "r2").exists() and not (tmp_path / "c2").exists()
    (root / "mimic-cxr-2.0.0-negbio.csv.gz").unlink()
    assert main(["describe", "--data", str(root), "--labeler", "negbio"]) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("mimic-cxr-2.0.0-negbio.csv.gz: label file not found (--labeler negbio)")
    )


def _roots_with_absent_images(tmp_path: Path) -> list[tuple[Path, list[str], int, int]]:
    """(root, deleted images, images listed (all views), frontal images in the run's split) for CheXpert, MIMIC and a
    plain CSV, each with two listed frontal images deleted (one train, one test)."""
    from test_datasets import write_mimic

    cx = write_chexpert_small(tmp_path / "cx")
    mimic_root = write_mimic(tmp_path / "mimic", images=True, n_subjects=14)
    plain = write_chexpert_small(tmp_path / "plain")
    frontal = sorted(str(p.relative_to(plain)) for p in plain.glob("*/*/*/view1_frontal.jpg"))
    pd.DataFrame(
        {
            "image": frontal,
            "patient": [f.split("/")[1] for f in frontal],
            "split": ["test" if f.startswith("valid/") else "" for f in frontal],
            "Effusion": [i % 2 for i in range(len(frontal))],
        }
    ).to_csv(plain / "labels.csv", index=False)
    for name in ("train.csv", "valid.csv"):
        (plain / name).unlink()
    roots = [
        (cx, ["train/patient00003/study1/view1_frontal.jpg", "valid/patient64542/study1/view1_frontal.jpg"], 38, 28),
        (mimic_root, ["files/p10/p10000007/s50000007/d7p.jpg", "files/p10/p10000004/s50000004/d4p.jpg"], 28, 14),
        (plain, ["train/patient00003/study1/view1_frontal.jpg", "valid/patient64542/study1/view1_frontal.jpg"], 28, 28),
    ]
    for root, deleted, _, _ in roots:
        for name in deleted:
            (root / name).unlink()
    return roots


def test_listed_images_absent_on_any_data_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """prepare warns and train refuses in one line with the count, the first names and --allow-missing; train
    --allow-missing trains on the present images; describe reads the metadata only and counts every listed image."""
    for root, deleted, listed, frontal in _roots_with_absent_images(tmp_path):
        cache = tmp_path / f"cache-{root.name}"
        capsys.readouterr()
        assert main(["prepare", "--data", str(root), "--resolutions", "32", "--cache", str(cache), "--quiet"]) == 0
        out, err = capsys.readouterr()
        assert f"{listed - 2} images; built 32 px" in out and "2 missing" in out
        assert err.splitlines() == [
            f"warning: 2 of {listed} listed images are missing on disk (first: "
            f"{', '.join(sorted(deleted))}); caching the {listed - 2} present (train on them "
            "with --allow-missing)"
        ]
        assert main(["train", "--data", str(root), "--cache", str(cache), "--out", str(tmp_path / "r"), *TRAIN]) == 1
        last = capsys.readouterr().err.splitlines()[-1]
        assert f"2 of the run's {frontal} images are not in the cache" in last and "Traceback" not in last
        assert all(name in last for name in deleted) and last.endswith(
            f"--allow-missing trains on the {frontal - 2} present"
        )
        assert not (tmp_path / "r").exists()
        assert (
            main(["describe", "--data", str(root), "--json"]) == 0
        )  # the metadata alone: deleted images still counted
        assert sum(json.loads(capsys.readouterr().out)["images"].values()) == frontal
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "mimic"),
                "--cache",
                str(tmp_path / "cache-mimic"),
                "--out",
                str(run),
                "--allow-missing",
                *TRAIN,
            ]
        )
        == 0
    )
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    assert config["data"]["images"] == {"train": 6, "val": 3, "test": 3}
    assert config["data"]["dropped_not_in_cache"] == {"train": 1, "val": 0, "test": 1}
    assert "files/p10/p10000004/s50000004/d4p.jpg" not in runs.read_predictions(run).images
