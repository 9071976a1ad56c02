"""The `vindr` adapter (VinDr-CXR, Kaggle VinBigData and PhysioNet layouts): the real train.csv of ../shared (counts
recomputed here with the csv module; skipped when absent), small fixtures with exact labels and boxes, refusals of bad
rows or, with skip_bad, their exact listing, and the any/majority reader rule through describe and the run settings."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from cxrres.data.datasets import DataOptions, detect_dataset, open_dataset
from cxrres.data.datasets import vindr
from cxrres.data.source import open_table
from cxrres.errors import DataFormatError

from conftest import SHARED_DATA

REAL = SHARED_DATA / "vinbigdata"
HEAD = ",".join(vindr.COLUMNS)
#: a: three readers, two mark Cardiomegaly (one with two boxes), one says No finding; b: No finding by all three;
#: c: one reader marks Nodule/Mass and Pneumothorax, two say No finding.
ROWS = [
    "a,Cardiomegaly,3,R1,10,20,110,70",
    "a,Cardiomegaly,3,R2,12,22,100,60",
    "a,Cardiomegaly,3,R2,200,200,210,230",
    "a,No finding,14,R3,,,,",
    "b,No finding,14,R1,,,,",
    "b,No finding,14,R2,,,,",
    "b,No finding,14,R4,,,,",
    "c,Nodule/Mass,8,R5,0,0,5,5",
    "c,Pneumothorax,12,R5,1.5,2.5,11.5,22.5",
    "c,No finding,14,R1,,,,",
    "c,No finding,14,R2,,,,",
] + [f"d{i},No finding,14,R1,,,," for i in range(7)]


def write_fixture(root: Path, rows: list[str] = ROWS) -> Path:
    """A VinBigData root holding only `train.csv` with `rows`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.csv").write_text(HEAD + "\n" + "\n".join(rows) + "\n")
    return root


def test_fixture_table(tmp_path: Path) -> None:
    root = write_fixture(tmp_path / "v")
    assert detect_dataset(root) == "vindr"
    table = open_dataset(root)
    frame = table.frame
    assert len(frame) == 10 and table.classes == vindr.CLASSES and table.source_px is None
    assert frame.loc["a.dicom", "path"] == "train/a.dicom" and frame.loc["a.dicom", "patient_id"] == "a"
    assert Counter(frame["part"]) == {"train": 7, "val": 1, "test": 2}
    positive = {c: sorted(frame.index[frame[c] == 1]) for c in vindr.CLASSES if (frame[c] == 1).any()}
    assert positive == {"Cardiomegaly": ["a.dicom"], "Nodule/Mass": ["c.dicom"], "Pneumothorax": ["c.dicom"]}
    assert len(table.boxes) == 5 and Counter(table.boxes["label"]) == {
        "Cardiomegaly": 3,
        "Nodule/Mass": 1,
        "Pneumothorax": 1,
    }
    last = table.boxes.iloc[4]
    assert (last["image"], last["x"], last["y"], last["w"], last["h"]) == ("c.dicom", 1.5, 2.5, 10.0, 20.0)
    assert any("5 readers" in n for n in table.notes) and any("image-wise" in n for n in table.notes)


def test_fixture_majority_of_readers(tmp_path: Path) -> None:
    root = write_fixture(tmp_path / "v")
    labels = vindr.image_labels(vindr.read_rows(root / "train.csv")[0], "majority")
    assert labels.loc["a", "Cardiomegaly"] == 1.0  # 2 of 3 readers
    assert labels.loc["c", "Nodule/Mass"] == 0.0 and labels.loc["c", "Pneumothorax"] == 0.0  # 1 of 3
    table = vindr.read(root, DataOptions(), readers="majority")
    assert int(table.frame[list(vindr.CLASSES)].to_numpy().sum()) == 1 and len(table.boxes) == 5


@pytest.mark.parametrize(
    "row, line, words",
    [
        ("e,Cardiomegaly,3,R1,,,,", 2, "blank on exactly"),
        ("e,No finding,14,R1,1,2,3,4", 2, "blank on exactly"),
        ("e,Cardiomegaly,4,R1,1,2,3,4", 2, "does not match"),
        ("e,Heart,3,R1,1,2,3,4", 2, "not a VinDr-CXR class"),
        ("e,Cardiomegaly,3,R1,5,2,3,4", 2, "x_max > x_min"),
        ("e,Cardiomegaly,3,R1,a,2,3,4", 2, "x_max > x_min"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, row: str, line: int, words: str) -> None:
    root = write_fixture(tmp_path / "v", [row] + ROWS)
    with pytest.raises(DataFormatError) as caught:
        open_dataset(root, "vindr")
    assert caught.value.line == line and words in str(caught.value) and "\n" not in str(caught.value)


def test_real_train_csv() -> None:
    path = REAL / "train.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path}: absent")
    with gzip.open(path, "rt") as handle:
        rows = list(csv.DictReader(handle))
    boxed = [r for r in rows if r["x_min"] != ""]
    marked: dict[str, set[str]] = defaultdict(set)
    for r in boxed:
        marked[r["class_name"]].add(r["image_id"])
    assert len({r["image_id"] for r in rows}) == 15_000 and len(boxed) == 36_096
    assert len({r["rad_id"] for r in rows}) == 17
    assert detect_dataset(REAL) == "vindr"
    table = open_dataset(REAL)
    assert len(table.frame) == 15_000 and len(table.boxes) == 36_096 and any("17 readers" in n for n in table.notes)
    assert {c: int((table.frame[c] == 1).sum()) for c in vindr.CLASSES} == {c: len(marked[c]) for c in vindr.CLASSES}
    assert Counter(table.boxes["label"]) == Counter(r["class_name"] for r in boxed)
    assert Counter(table.frame["part"]) == {"test": 3_000, "val": 1_200, "train": 10_800}
    in_test = set(table.frame.index[table.frame["part"] == "test"])
    assert sum(r["image_id"] + ".dicom" in in_test for r in boxed) == int(table.boxes["image"].isin(in_test).sum())


LABEL_HEAD = "image_id,rad_id,Cardiomegaly,Nodule/Mass,Other diseases,No finding"
TRAIN_LABELS = [
    "t1,R1,1,0,0,0",
    "t1,R2,1,0,0,0",
    "t1,R3,0,0,0,1",
    "t2,R1,0,1,0,0",
    "t2,R2,0,0,0,1",
    "t2,R3,0,0,0,1",
] + [f"n{i},R{r},0,0,0,1" for i in range(8) for r in (1, 2, 3)]
TRAIN_BOXES = [
    "t1,R1,Cardiomegaly,10,20,110,70",
    "t1,R2,Cardiomegaly,12,22,100,60",
    "t1,R3,No finding,,,,",
    "t2,R1,Nodule/Mass,5,5,15,25",
    "t2,R2,No finding,,,,",
    "t2,R3,No finding,,,,",
]
TEST_LABELS = ["s1,R_consensus,1,1,0,0", "s2,R_consensus,0,0,1,0", "s3,R_consensus,0,0,0,1"]
TEST_BOXES = [
    "s1,R_consensus,Cardiomegaly,0,0,50,40",
    "s1,R_consensus,Nodule/Mass,1,1,3,3",
    "s1,R_consensus,Nodule/Mass,7,7,9,10",
    "s3,R_consensus,No finding,,,,",
]


def write_physionet(
    root: Path,
    train_boxes: list[str] = TRAIN_BOXES,
    train_labels: list[str] = TRAIN_LABELS,
    test_boxes: list[str] = TEST_BOXES,
    test_labels: list[str] = TEST_LABELS,
) -> Path:
    """A PhysioNet VinDr-CXR 1.0.0 root (annotations/ only); the test label file says 'Other disease'."""
    folder = root / "annotations"
    folder.mkdir(parents=True, exist_ok=True)
    box_head = "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n"
    (folder / "annotations_train.csv").write_text(box_head + "\n".join(train_boxes) + "\n")
    (folder / "annotations_test.csv").write_text(box_head + "\n".join(test_boxes) + "\n")
    (folder / "image_labels_train.csv").write_text(LABEL_HEAD + "\n" + "\n".join(train_labels) + "\n")
    test_head = LABEL_HEAD.replace("Other diseases", "Other disease")
    (folder / "image_labels_test.csv").write_text(test_head + "\n" + "\n".join(test_labels) + "\n")
    return root


def test_physionet_fixture(tmp_path: Path) -> None:
    root = write_physionet(tmp_path / "p")
    assert detect_dataset(root) == "vindr"
    table = open_dataset(root)
    frame = table.frame
    assert table.classes == ("Cardiomegaly", "Nodule/Mass", "Other diseases")
    assert sorted(frame.index[frame["part"] == "test"]) == ["s1.dicom", "s2.dicom", "s3.dicom"]
    assert Counter(frame["part"]) == {"train": 9, "val": 1, "test": 3}
    assert frame.loc["s2.dicom", "path"] == "test/s2.dicom" and frame.loc["t1.dicom", "path"] == "train/t1.dicom"
    assert frame.loc["t2.dicom", "Nodule/Mass"] == 1.0 and frame.loc["s2.dicom", "Other diseases"] == 1.0
    assert int(frame[list(table.classes)].to_numpy().sum()) == 5
    assert len(table.boxes) == 6 and Counter(table.boxes["image"]) == {"t1.dicom": 2, "t2.dicom": 1, "s1.dicom": 3}
    assert table.boxes.iloc[-1][["x", "y", "w", "h"]].tolist() == [7.0, 7.0, 2.0, 3.0]
    majority = vindr.read(root, DataOptions(), readers="majority").frame
    assert majority.loc["t1.dicom", "Cardiomegaly"] == 1.0 and majority.loc["t2.dicom", "Nodule/Mass"] == 0.0


def test_physionet_box_of_unknown_image_is_refused(tmp_path: Path) -> None:
    root = write_physionet(tmp_path / "p", TRAIN_BOXES + ["zz,R1,Cardiomegaly,1,1,2,2"])
    with pytest.raises(DataFormatError) as caught:
        open_dataset(root)
    assert caught.value.line == len(TRAIN_BOXES) + 2 and "'zz'" in str(caught.value)


#: One bad row of each kind after ROWS (file lines 20-25), and a box reaching exactly to the edge of j's 40 x 40 image.
BAD_ROWS = [
    ("e,Heart,3,R1,1,2,3,4", "column 'class_name': 'Heart' is not a VinDr-CXR class"),
    ("f,Cardiomegaly,4,R1,1,2,3,4", "class_id '4' does not match class_name 'Cardiomegaly'"),
    ("g,Cardiomegaly,3,R1,,,,", "box fields must be blank on exactly the 'No finding' rows"),
    ("h,Cardiomegaly,3,R1,5,2,3,4", "box 5,2,3,4 is not numbers with x_max > x_min >= 0 and y_max > y_min >= 0"),
    ("a,Cardiomegaly,3,R1,10,20,110,70", "duplicate of line 2"),
    ("i,Cardiomegaly,3,R1,1,1,50,30", "box 1,1,50,30 is outside the 40 x 40 image (DICOM Columns x Rows)"),
]


def test_skip_bad_lists_exactly_the_bad_rows_and_leaves_their_images_out(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    from conftest import write_dicom

    root = write_fixture(tmp_path / "v", ROWS + [row for row, _ in BAD_ROWS] + ["j,Cardiomegaly,3,R1,0,0,40,40"])
    for name in ("i", "j"):
        write_dicom(root / "train" / f"{name}.dicom", np.zeros((40, 40), np.uint8))
    path = root.resolve() / "train.csv"
    with pytest.raises(DataFormatError) as caught:
        open_dataset(root)
    assert (
        caught.value.line == 20 and "(and 5 more bad rows)" in str(caught.value) and "--skip-bad" in str(caught.value)
    )
    table = open_dataset(root, options=DataOptions(skip_bad=True))
    assert table.skipped == tuple(f"{path}:{line}: {problem}" for line, (_, problem) in enumerate(BAD_ROWS, 20))
    assert sorted(table.frame.index) == sorted(["b.dicom", "c.dicom", "j.dicom"] + [f"d{i}.dicom" for i in range(7)])
    assert Counter(table.boxes["image"]) == {"c.dicom": 2, "j.dicom": 1}
    assert f"--skip-bad: 6 bad rows skipped, their images left out (first: {table.skipped[0]})" in table.notes


def test_physionet_skip_bad(tmp_path: Path) -> None:
    extra = ["zz,R1,Cardiomegaly,1,1,2,2", "t2,R1,Nodule/Mass,5,5,15,25", "t1,R1,Pneumonia,1,1,2,2"]
    root = write_physionet(tmp_path / "p", TRAIN_BOXES + extra)
    path = root.resolve() / "annotations" / "annotations_train.csv"
    table = open_dataset(root, options=DataOptions(skip_bad=True))
    assert table.skipped == (
        f"{path}:8: image 'zz' is not in image_labels_train.csv",
        f"{path}:9: duplicate of line 5",
        f"{path}:10: column 'class_name': 'Pneumonia' is not a label column of image_labels_train.csv",
    )
    assert not {"t1.dicom", "t2.dicom"} & set(table.frame.index) and len(table.frame) == 11
    assert Counter(table.boxes["image"]) == {"s1.dicom": 3}


def test_readers_any_or_majority_from_describe_and_train_settings(tmp_path: Path, capsys) -> None:
    from cxrres.cli import main
    from cxrres.config import TrainConfig, identity, train_argv

    root = write_fixture(tmp_path / "v")
    positives = {}
    for rule in ("any", "majority"):
        assert main(["describe", "--data", str(root), "--readers", rule, "--json"]) == 0
        classes = json.loads(capsys.readouterr().out)["classes"]
        positives[rule] = {c: sum(v["positive"].values()) for c, v in classes.items() if sum(v["positive"].values())}
    # by hand: a is marked Cardiomegaly by R1 and R2 of its 3 readers; c Nodule/Mass and Pneumothorax by 1 of 3
    assert positives == {
        "any": {"Cardiomegaly": 1, "Nodule/Mass": 1, "Pneumothorax": 1},
        "majority": {"Cardiomegaly": 1},
    }
    config = TrainConfig(data=str(root), resolution_px=32, readers="majority")
    assert identity(config)["readers"] == "majority" and "readers" not in identity(
        TrainConfig(data="d", resolution_px=32)
    )
    assert train_argv(config)[-2:] == ["--readers", "majority"]
    majority = open_table(root, config.data_options())
    assert int(majority.frame[list(vindr.CLASSES)].to_numpy().sum()) == 1


def test_majority_is_refused_without_readers(tmp_path: Path, capsys) -> None:
    from cxrres.cli import main
    from cxrres.config import TrainConfig
    from cxrres.data.source import DataSource
    from cxrres.errors import CxrresError
    from conftest import MINI
    from test_rsna_dataset import write_fixture as write_rsna

    rsna = write_rsna(tmp_path / "rsna")
    assert main(["describe", "--data", str(rsna), "--readers", "majority"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--readers majority: the rsna data set has one label per image" in err
    with pytest.raises(CxrresError, match="the nih data set has one label per image"):
        DataSource.prepare(MINI, TrainConfig(readers="majority").data_options(), [32], tmp_path / "c", progress=False)
