"""The `rsna` adapter: the real stage-2 label file of ../shared (counts and the seeded patient-wise carve recomputed
here with the csv and hashlib modules; skipped when absent) and a small fixture written by the test."""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
from collections import Counter
from pathlib import Path

import pytest

from cxrres.data.datasets import ReadOptions, detect_dataset, open_dataset
from cxrres.data.rsna import FINDING, LABELS_FILE, find_file

from conftest import SHARED_DATA, real_rsna_label_rows

REAL = SHARED_DATA / "rsna-pneumonia"
HEADERS = REAL / "stage_2_train_images_dicom_headers.csv.gz"

#: Fixture label rows: p1 two boxes, p2 none, p3 one box, p4 three boxes, p5 none.
FIXTURE_ROWS = [
    "p1,100,200,50,40,1", "p1,600,300,100,200,1", "p2,,,,,0", "p3,0,0,1024,1024,1",
    "p4,10,10,10,10,1", "p4,20,20,20,30,1", "p4,500,500,100,100,1", "p5,,,,,0",
]


def write_fixture(root: Path) -> Path:
    """An RSNA root holding only `stage_2_train_labels.csv` with FIXTURE_ROWS."""
    root.mkdir(parents=True, exist_ok=True)
    (root / LABELS_FILE).write_text("patientId,x,y,width,height,Target\n" + "\n".join(FIXTURE_ROWS) + "\n")
    return root


def _carved(patients: list[str], fraction: float, seed: int) -> set[str]:
    """Patients (one image each) taken first in sha256(f"{seed}:{p}") order until >= fraction of them."""
    order = sorted(patients, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    return set(order[:math.ceil(fraction * len(patients))])


def test_fixture_table(tmp_path: Path) -> None:
    root = write_fixture(tmp_path / "rsna")
    assert detect_dataset(root) == "rsna"
    table = open_dataset(root, options=ReadOptions(test_fraction=0.2, val_fraction=0.25, split_seed=3))
    assert table.dataset == "rsna" and table.classes == (FINDING,) and table.source_px == (1024, 1024)
    frame = table.frame
    assert sorted(frame.index) == [f"p{i}.dcm" for i in range(1, 6)]
    assert frame.loc["p4.dcm", "path"] == "stage_2_train_images/p4.dcm"
    assert frame.loc["p4.dcm", "patient_id"] == "p4" and frame["frontal"].all() and (frame["view"] == "").all()
    assert dict(frame[FINDING]) == {"p1.dcm": 1.0, "p2.dcm": 0.0, "p3.dcm": 1.0, "p4.dcm": 1.0, "p5.dcm": 0.0}
    assert list(table.boxes.columns) == ["image", "label", "x", "y", "w", "h"]
    assert Counter(table.boxes["image"]) == {"p1.dcm": 2, "p3.dcm": 1, "p4.dcm": 3}
    assert (table.boxes["label"] == FINDING).all()
    assert table.boxes.iloc[1][["x", "y", "w", "h"]].tolist() == [600.0, 300.0, 100.0, 200.0]
    patients = [f"p{i}" for i in range(1, 6)]
    test = _carved(patients, 0.2, 3)
    val = _carved(sorted(set(patients) - test), 0.25, 3)
    assert set(frame.index[frame["part"] == "test"]) == {p + ".dcm" for p in test} and len(test) == 1
    assert set(frame.index[frame["part"] == "val"]) == {p + ".dcm" for p in val} and len(val) == 1
    assert (frame["part"] == "train").sum() == 3
    assert any("no labelled test part" in n for n in table.notes)


def test_fixture_seed_changes_carve_deterministically(tmp_path: Path) -> None:
    root = write_fixture(tmp_path / "rsna")
    parts = {seed: open_dataset(root, "rsna", ReadOptions(split_seed=seed)).frame["part"].sort_index().tolist()
             for seed in range(6)}
    assert parts[0] == open_dataset(root, "rsna", ReadOptions(split_seed=0)).frame["part"].sort_index().tolist()
    assert len({tuple(p) for p in parts.values()}) > 1


def test_real_label_file_as_common_form() -> None:
    rows = real_rsna_label_rows()
    patients = sorted({r["patientId"] for r in rows})
    positive = {r["patientId"] for r in rows if r["Target"] == "1"}
    boxes = Counter(r["patientId"] for r in rows if r["Target"] == "1")
    assert detect_dataset(REAL) == "rsna"
    table = open_dataset(REAL)
    frame = table.frame
    assert len(frame) == len(patients) == 26_684
    assert int(frame[FINDING].sum()) == len(positive) == 6_012
    assert len(table.boxes) == sum(boxes.values()) == 9_555
    assert Counter(table.boxes["image"]) == Counter({p + ".dcm": n for p, n in boxes.items()})
    assert frame["patient_id"].nunique() == len(frame)
    test = _carved(patients, 0.2, 0)
    val = _carved(sorted(set(patients) - test), 0.1, 0)
    assert set(frame.index[frame["part"] == "test"]) == {p + ".dcm" for p in test}
    assert set(frame.index[frame["part"] == "val"]) == {p + ".dcm" for p in val}
    assert Counter(frame["part"]) == {"test": 5_337, "val": 2_135, "train": 19_212}
    assert (frame["path"] == "stage_2_train_images/" + frame.index.to_series()).all()


def test_real_views_from_dicom_headers() -> None:
    if find_file(REAL, LABELS_FILE) is None or not HEADERS.is_file():
        pytest.skip(f"{REAL}: no RSNA label or header file")
    with gzip.open(HEADERS, "rt") as handle:
        views = {r["PatientID"]: r["ViewPosition"] for r in csv.DictReader(handle)}
    table = open_dataset(REAL, "rsna", ReadOptions(views="all"))
    expected = Counter(views[p] for p in table.frame["patient_id"])
    assert Counter(table.frame["view"]) == expected
    pa = open_dataset(REAL, "rsna", ReadOptions(views="PA"))
    assert len(pa.frame) == expected["PA"] and set(pa.boxes["image"]) <= set(pa.frame.index)
