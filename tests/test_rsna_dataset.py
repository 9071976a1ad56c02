"""The `rsna` adapter: the real stage-2 label file of ../shared (counts and the seeded patient-wise carve recomputed
here with the csv and hashlib modules; skipped when absent) and a small fixture written by the test."""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrres.data.datasets import DataOptions, detect_dataset, open_dataset
from cxrres.data.rsna_labels import FINDING, LABELS_FILE, find_file

from conftest import SHARED_DATA, real_rsna_label_rows

REAL = SHARED_DATA / "rsna-pneumonia"
HEADERS = REAL / "stage_2_train_images_dicom_headers.csv.gz"

#: Fixture label rows: p1 two boxes, p2 none, p3 one box, p4 three boxes, p5 none.
FIXTURE_ROWS = [
    "p1,100,200,50,40,1",
    "p1,600,300,100,200,1",
    "p2,,,,,0",
    "p3,0,0,1024,1024,1",
    "p4,10,10,10,10,1",
    "p4,20,20,20,30,1",
    "p4,500,500,100,100,1",
    "p5,,,,,0",
]


def write_fixture(root: Path, rows: list[str] = FIXTURE_ROWS) -> Path:
    """An RSNA root holding only `stage_2_train_labels.csv` with `rows` (FIXTURE_ROWS by default)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / LABELS_FILE).write_text("patientId,x,y,width,height,Target\n" + "\n".join(rows) + "\n")
    return root


def _carved(patients: list[str], fraction: float, seed: int) -> set[str]:
    """Patients (one image each) taken first in sha256(f"{seed}:{p}") order until >= fraction of them."""
    order = sorted(patients, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    return set(order[: math.ceil(fraction * len(patients))])


def test_fixture_table(tmp_path: Path) -> None:
    root = write_fixture(tmp_path / "rsna")
    assert detect_dataset(root) == "rsna"
    table = open_dataset(root, options=DataOptions(test_fraction=0.2, val_fraction=0.25, split_seed=3))
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
    parts = {
        seed: open_dataset(root, "rsna", DataOptions(split_seed=seed)).frame["part"].sort_index().tolist()
        for seed in range(6)
    }
    assert parts[0] == open_dataset(root, "rsna", DataOptions(split_seed=0)).frame["part"].sort_index().tolist()
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
    table = open_dataset(REAL, "rsna", DataOptions(views="all"))
    expected = Counter(views[p] for p in table.frame["patient_id"])
    assert Counter(table.frame["view"]) == expected
    pa = open_dataset(REAL, "rsna", DataOptions(views="PA"))
    assert len(pa.frame) == expected["PA"] and set(pa.boxes["image"]) <= set(pa.frame.index)


def test_skip_bad_through_the_adapter_describe_and_prepare(tmp_path: Path, capsys) -> None:
    """Two bad rows (lines 10 and 11): refused in one line by default; with --skip-bad their patients are left out of
    the table and the cache, and the rows are listed by describe and prepare."""
    pytest.importorskip("pydicom")
    from conftest import write_dicom
    from cxrres.cli import main
    from cxrres.data.cache import INDEX
    from cxrres.errors import CxrresError

    root = write_fixture(tmp_path / "rsna", FIXTURE_ROWS + ["p6,1000,2,30,4,1", "p1,100,200,50,40,1"])
    for i in range(1, 7):
        write_dicom(root / "stage_2_train_images" / f"p{i}.dcm", np.full((8, 8), 10 * i, np.uint8))
    path = root.resolve() / LABELS_FILE
    bad = (f"{path}:10: box outside the 1024 x 1024 image", f"{path}:11: duplicate of an earlier row")
    with pytest.raises(CxrresError, match=f"^{bad[0]} \\(and 1 more\\); --skip-bad leaves such rows' patients out$"):
        open_dataset(root)
    table = open_dataset(root, options=DataOptions(skip_bad=True))
    assert table.skipped == bad and sorted(table.frame.index) == ["p2.dcm", "p3.dcm", "p4.dcm", "p5.dcm"]
    assert Counter(table.boxes["image"]) == {"p3.dcm": 1, "p4.dcm": 3}
    assert f"--skip-bad: 2 bad rows skipped, their images left out (first: {bad[0]})" in table.notes
    assert main(["describe", "--data", str(root), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert f"  skipped {bad[0]}\n  skipped {bad[1]}\n" in out
    cache = tmp_path / "cache"
    assert (
        main(
            ["prepare", "--data", str(root), "--cache", str(cache), "--resolutions", "16", "--workers", "1", "--quiet"]
        )
        == 1
    )
    assert capsys.readouterr().err.count("\n") == 1
    assert (
        main(
            [
                "prepare",
                "--data",
                str(root),
                "--cache",
                str(cache),
                "--resolutions",
                "16",
                "--workers",
                "1",
                "--quiet",
                "--skip-bad",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.endswith(f"  skipped {bad[0]}\n  skipped {bad[1]}\n")
    assert sorted(pd.read_csv(cache / INDEX)["image"]) == ["p2.dcm", "p3.dcm", "p4.dcm", "p5.dcm"]
