"""Google's adjudicated labels of NIH images as a reference standard (`cxrres evaluate RUN --reference google2019`): the
shipped file, its reader's checks, and the scores of a synthetic NIH run computed independently."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from cxrres import runs
from cxrres.adjudicated import google2019_file
from cxrres.cli import main
from cxrres.data.labels import CLASSES
from cxrres.data.metadata import GOOGLE2019_FINDINGS, read_google2019
from cxrres.errors import DataFormatError

from conftest import SHARED_DATA


def google_rows() -> list[dict[str, str]]:
    """The shipped file's rows by the csv module alone (its header's bracketed names span two fields, as in NIH's)."""
    with gzip.open(google2019_file(), "rt", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return [dict(zip(header, row)) for row in reader]


def test_shipped_file_is_the_published_one_and_reads_with_exact_counts() -> None:
    shared = SHARED_DATA / "nih-google" / "google2019_nih-chest-xray-labels.csv.gz"
    if shared.is_file():
        assert google2019_file().read_bytes() == shared.read_bytes()
    rows = google_rows()
    frame = read_google2019(google2019_file())
    assert len(frame) == len(rows) == 4376 and frame.index.tolist() == [r["Image Index"] for r in rows]
    for finding in GOOGLE2019_FINDINGS:
        assert int(frame[finding].sum()) == sum(r[finding] == "YES" for r in rows)
    assert frame["set_id"].value_counts().to_dict() == {"val": sum(r["Set Id"] == "val" for r in rows),
                                                        "test": sum(r["Set Id"] == "test" for r in rows)}


HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Fracture,Pneumothorax,Airspace opacity,Nodule or mass,Set Id")
GOOD = "00000013_008.png,No Finding,8,13,60,M,AP,3056,2544,0.139,0.139,NO,NO,YES,NO,test"


@pytest.mark.parametrize("row, line, message", [
    ("00000013_009.png,No Finding,9,13,60,M,AP,3056,2544,0.139,0.139,NO,MAYBE,YES,NO,test", 3,
     "column 'Pneumothorax': expected YES or NO, found 'MAYBE'"),
    ("00000013_009.png,No Finding,9,13,60,M,AP,3056,2544,0.139,0.139,NO,NO,YES,NO", 3, "expected 16 fields, found 15 (truncated or malformed row)"),
    ("00000013_009.png,No Finding,9,14,60,M,AP,3056,2544,0.139,0.139,NO,NO,YES,NO,val", 3,
     "Patient ID 14 is not the patient of image 00000013_009.png"),
    ("00000013_009.png,No Finding,9,13,60,M,AP,3056,2544,0.139,0.139,NO,NO,YES,NO,train", 3,
     "column 'Set Id': expected test or val, found 'train'"),
    ("scan13.png,No Finding,9,13,60,M,AP,3056,2544,0.139,0.139,NO,NO,YES,NO,val", 3, "not an NIH image name (PPPPPPPP_FFF.png): 'scan13.png'"),
    (GOOD, 3, "duplicate image 00000013_008.png (first on line 2)"),
])
def test_a_bad_row_is_one_line_naming_file_and_line(tmp_path: Path, row: str, line: int, message: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n{row}\n")
    with pytest.raises(DataFormatError) as error:
        read_google2019(path)
    assert str(error.value) == f"{path}:{line}: {message}"
    path.write_text(HEADER.replace("Set Id", "Split") + f"\n{GOOD}\n")
    with pytest.raises(DataFormatError, match=rf"^{path}:1: unexpected header"):
        read_google2019(path)


def write_run(run: Path, images: list[str], classes: list[str], dataset: str = "nih", seed: int = 0) -> pd.DataFrame:
    """A run directory with config.yaml and a predictions_test.csv of random scores and 0/1 labels; returns the file."""
    rng = np.random.default_rng(seed)
    run.mkdir(parents=True)
    (run / runs.CONFIG).write_text(yaml.safe_dump({"settings": {"data": "/nih", "resolution_px": 64, "dataset": dataset,
                                                                "class_names": ",".join(classes)}}))
    runs.write_predictions(run / runs.PREDICTIONS, runs.Predictions(
        images, classes, rng.random((len(images), len(classes))), (rng.random((len(images), len(classes))) < 0.3).astype(np.int8)))
    return pd.read_csv(run / runs.PREDICTIONS)


def test_scores_against_google_beside_nih_labels_on_the_same_images(tmp_path: Path, capsys) -> None:
    rows = google_rows()
    test = [r["Image Index"] for r in rows if r["Set Id"] == "test"][:60]
    val = [r["Image Index"] for r in rows if r["Set Id"] == "val"][:40]
    unlabelled = [f"{90000000 + i:08d}_000.png" for i in range(30)]  # NIH-style names the file does not label
    predictions = write_run(tmp_path / "run", test + unlabelled + val, list(CLASSES))
    assert main(["evaluate", str(tmp_path / "run"), "--reference", "google2019"]) == 0
    out = capsys.readouterr().out
    assert "not scored: Fracture (NIH ChestX-ray14 has no fracture label)" in out
    assert "not scored: Airspace opacity (no NIH class is airspace opacity" in out
    table = pd.read_csv(tmp_path / "run" / runs.AUC_GOOGLE2019, keep_default_na=False).set_index("finding")
    assert table.index.tolist() == ["Pneumothorax", "Nodule or mass"]
    assert table["scored_by"].tolist() == ["Pneumothorax", "max(Nodule, Mass)"]
    google = {r["Image Index"]: r for r in rows}
    labelled = predictions[predictions["image"].isin(google)]
    assert len(labelled) == 100
    for finding, columns in (("Pneumothorax", ["Pneumothorax"]), ("Nodule or mass", ["Nodule", "Mass"])):
        row = table.loc[finding]
        y = np.array([google[name][finding] == "YES" for name in labelled["image"]], dtype=int)
        scores = labelled[columns].max(axis=1).to_numpy()
        nih = labelled[["label_" + c for c in columns]].max(axis=1).to_numpy()
        assert (row["images"], row["images_google_test"], row["images_google_val"]) == (100, 60, 40)
        assert (row["n_pos"], row["n_neg"]) == (y.sum(), 100 - y.sum())
        assert (row["nih_n_pos"], row["nih_n_neg"]) == (nih.sum(), 100 - nih.sum())
        assert row["auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-5)
        assert row["nih_auc"] == pytest.approx(roc_auc_score(nih, scores), abs=1e-5)
        assert row["ci_low"] < row["auc"] < row["ci_high"]
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--reference", "google2019", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["finding"] for r in records] == ["Pneumothorax", "Nodule or mass"]
    assert records[1]["auc"] == pytest.approx(table.loc["Nodule or mass", "auc"], abs=1e-5)


def test_a_finding_needs_every_class_it_is_scored_by(tmp_path: Path, capsys) -> None:
    names = [r["Image Index"] for r in google_rows()[:50]]
    write_run(tmp_path / "run", names, ["Nodule", "Pneumothorax"])
    assert main(["evaluate", str(tmp_path / "run"), "--reference", "google2019"]) == 0
    out = capsys.readouterr().out
    assert "not scored: Nodule or mass (the run does not predict Nodule and Mass)" in out
    assert pd.read_csv(tmp_path / "run" / runs.AUC_GOOGLE2019)["finding"].tolist() == ["Pneumothorax"]


@pytest.mark.parametrize("dataset, images, classes, message", [
    ("chexpert", "google", ["Pneumothorax"], "the run was trained on chexpert; --reference google2019 labels NIH"),
    ("nih", "other", ["Pneumothorax"], "none of the run's 20 test images has a google2019 label (the labels cover 4,376"),
    ("nih", "google", ["Cardiomegaly"], "no google2019 finding can be scored from the run's classes (Cardiomegaly)"),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path: Path, capsys, dataset, images, classes, message) -> None:
    names = [r["Image Index"] for r in google_rows()[:20]] if images == "google" else [f"{90000000 + i:08d}_000.png" for i in range(20)]
    write_run(tmp_path / "run", names, classes, dataset)
    assert main(["evaluate", str(tmp_path / "run"), "--reference", "google2019"]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / runs.AUC_GOOGLE2019).exists()
