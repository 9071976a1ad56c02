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
from cxrres.evaluation.adjudicated import google2019_file
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
    assert frame["set_id"].value_counts().to_dict() == {
        "val": sum(r["Set Id"] == "val" for r in rows),
        "test": sum(r["Set Id"] == "test" for r in rows),
    }


HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Fracture,Pneumothorax,Airspace opacity,"
    "Nodule or mass,Set Id"
)
GOOD = "00000013_008.png,No Finding,8,13,60,M,AP,3056,2544,0.139,0.139,NO,NO,YES,NO,test"


@pytest.mark.parametrize(
    "row, line, message",
    [
        (
            "00000013_009.png,No Finding,9,13,60,M,AP,3056,2544,0.139,0.139,NO,MAYBE,YES,NO,test",
            3,
            "column 'Pneumothorax': expected YES or NO, found 'MAYBE'",
        ),
        (
            "00000013_009.png,No Finding,9,13,60,M,AP,3056,2544,0.139,0.139,NO,NO,YES,NO",
            3,
            "expected 16 fields, found 15 (truncated or malformed row)",
        ),
        (
            "00000013_009.png,No Finding,9,14,60,M,AP,3056,2544,0.139,0.139,NO,NO,YES,NO,val",
            3,
            "Patient ID 14 is not the patient of image 00000013_009.png",
        ),
        (
            "00000013_009.png,No Finding,9,13,60,M,AP,3056,2544,0.139,0.139,NO,NO,YES,NO,train",
            3,
            "column 'Set Id': expected test or val, found 'train'",
        ),
        (
            "scan13.png,No Finding,9,13,60,M,AP,3056,2544,0.139,0.139,NO,NO,YES,NO,val",
            3,
            "not an NIH image name (PPPPPPPP_FFF.png): 'scan13.png'",
        ),
        (GOOD, 3, "duplicate image 00000013_008.png (first on line 2)"),
    ],
)
def test_a_bad_row_is_one_line_naming_file_and_line(tmp_path: Path, row: str, line: int, message: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n{row}\n")
    with pytest.raises(DataFormatError) as error:
        read_google2019(path)
    assert str(error.value) == f"{path}:{line}: {message}"
    path.write_text(HEADER.replace("Set Id", "Split") + f"\n{GOOD}\n")
    with pytest.raises(DataFormatError, match=rf"^{path}:1: unexpected header"):
        read_google2019(path)


def write_nih_root(root: Path, extra: list[str] = (), change: dict[str, dict[int, str]] | None = None) -> Path:
    """A data root whose Data_Entry is Google's copy of NIH's record of its 4,376 images (the first 11 fields of each
    row), plus `extra` NIH-style names; `change` {name: {field index: value}} alters some rows' fields."""
    rows = [[r["Image Index"], *list(r.values())[1:11]] for r in google_rows()]
    rows += [
        [name, "No Finding", "0", str(int(name[:8])), "40", "F", "PA", "2048", "2500", "0.143", "0.143"]
        for name in extra
    ]
    for row in rows:
        for index, value in (change or {}).get(row[0], {}).items():
            row[index] = value
    root.mkdir(parents=True)
    (root / "Data_Entry_2017_v2020.csv").write_text(
        HEADER.split(",Fracture")[0] + "\n" + "\n".join(map(",".join, rows)) + "\n"
    )
    return root


def write_run(
    run: Path, images: list[str], classes: list[str], dataset: str = "nih", seed: int = 0, data: Path | None = None
) -> pd.DataFrame:
    """A run directory with config.yaml and a predictions_test.csv of random scores and 0/1 labels; returns the file.
    Its data root is `data`, else one beside it whose Data_Entry agrees with Google's record (`write_nih_root`)."""
    rng = np.random.default_rng(seed)
    if data is None:
        data = write_nih_root(run.parent / f"{run.name}-data", [n for n in images if n.startswith("9")])
    run.mkdir(parents=True)
    (run / runs.CONFIG).write_text(
        yaml.safe_dump(
            {"settings": {"data": str(data), "resolution_px": 64, "dataset": dataset, "class_names": ",".join(classes)}}
        )
    )
    runs.write_predictions(
        run / runs.PREDICTIONS,
        runs.Predictions(
            images,
            classes,
            rng.random((len(images), len(classes))),
            (rng.random((len(images), len(classes))) < 0.3).astype(np.int8),
        ),
    )
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


@pytest.mark.parametrize(
    "dataset, images, classes, message",
    [
        ("chexpert", "google", ["Pneumothorax"], "the run was trained on chexpert; --reference google2019 labels NIH"),
        (
            "nih",
            "other",
            ["Pneumothorax"],
            "none of the run's 20 test images has a google2019 label (the labels cover 4,376",
        ),
        (
            "nih",
            "google",
            ["Cardiomegaly"],
            "no google2019 finding can be scored from the run's classes (Cardiomegaly)",
        ),
    ],
)
def test_refusals_are_one_line_and_write_nothing(tmp_path: Path, capsys, dataset, images, classes, message) -> None:
    names = (
        [r["Image Index"] for r in google_rows()[:20]]
        if images == "google"
        else [f"{90000000 + i:08d}_000.png" for i in range(20)]
    )
    write_run(tmp_path / "run", names, classes, dataset)
    assert main(["evaluate", str(tmp_path / "run"), "--reference", "google2019"]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / runs.AUC_GOOGLE2019).exists()


def test_the_real_nih_record_is_accepted(tmp_path: Path, capsys, real_root: Path) -> None:
    names = [r["Image Index"] for r in google_rows()][::40]  # 110 images spread over the file (v2020: other ages)
    write_run(tmp_path / "run", names, list(CLASSES), data=real_root)
    assert main(["evaluate", str(tmp_path / "run"), "--reference", "google2019"]) == 0
    assert pd.read_csv(tmp_path / "run" / runs.AUC_GOOGLE2019)["images"].tolist() == [len(names)] * 2


def test_a_phantom_named_like_nih_is_refused(tmp_path: Path, capsys) -> None:
    """An 80-image phantom names one image as Google's file does (00000032_002.png): same name, not the same image."""
    assert (
        main(
            ["synth", "--out", str(tmp_path / "phantom"), "--images", "80", "--size", "64", "--workers", "1", "--quiet"]
        )
        == 0
    )
    entry = pd.read_csv(tmp_path / "phantom" / "Data_Entry_2017_v2020.csv")
    google = {r["Image Index"] for r in google_rows()}
    shared = [name for name in entry["Image Index"] if name in google]
    assert shared == ["00000032_002.png"]
    capsys.readouterr()
    write_run(
        tmp_path / "run",
        [n for n in entry["Image Index"] if n not in google][-20:] + shared,
        ["Pneumothorax"],
        data=tmp_path / "phantom",
    )
    assert main(["evaluate", str(tmp_path / "run"), "--reference", "google2019"]) == 1
    err = capsys.readouterr().err.strip()
    phantom = entry.set_index("Image Index").loc["00000032_002.png"]
    first = "sex" if phantom["Patient Gender"] != "F" else "width"
    assert len(err.splitlines()) == 1
    assert (
        "1 of 1 images differ from Google's record of the NIH image (patient/sex/view/width/height; first: "
        "00000032_002.png: " + first in err
    )
    assert f"this run's data ({tmp_path / 'phantom'}) is not NIH ChestX-ray14" in err
    assert not (tmp_path / "run" / runs.AUC_GOOGLE2019).exists()


@pytest.mark.parametrize(
    "change, shown",
    [
        ({"00000032_002.png": {5: "M"}}, "00000032_002.png: sex M (Google: F)"),
        ({"00000032_002.png": {7: "1024", 8: "1024"}}, "00000032_002.png: width 1024 (Google: 2500)"),
        ({"00000032_009.png": {6: "PA"}}, "00000032_009.png: view PA (Google: AP)"),
    ],
)
def test_one_image_that_differs_from_googles_record_is_refused(tmp_path: Path, capsys, change, shown) -> None:
    names = [r["Image Index"] for r in google_rows()[:30]]
    data = write_nih_root(tmp_path / "data", change=change)
    write_run(tmp_path / "run", names, ["Pneumothorax"], data=data)
    assert main(["evaluate", str(tmp_path / "run"), "--reference", "google2019"]) == 1
    err = capsys.readouterr().err
    assert (
        f"1 of 30 images differ from Google's record of the NIH image (patient/sex/view/width/height; first: {shown})"
        in err
    )
    assert not (tmp_path / "run" / runs.AUC_GOOGLE2019).exists()


def test_a_run_whose_data_root_is_gone_is_refused(tmp_path: Path, capsys) -> None:
    write_run(
        tmp_path / "run", [r["Image Index"] for r in google_rows()[:10]], ["Pneumothorax"], data=tmp_path / "moved"
    )
    assert main(["evaluate", str(tmp_path / "run"), "--reference", "google2019"]) == 1
    err = capsys.readouterr().err
    assert f"cannot check that the run's images are NIH's ({tmp_path / 'moved'}: data directory not found)" in err
