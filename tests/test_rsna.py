"""RSNA Pneumonia (stage 2) label reader: the real published label file (counts computed here with the csv module),
a detailed-class file written from it, and one-line refusals of bad rows with their line numbers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cxrres.data.rsna_labels import CLASS_INFO_FILE, FINDING, LABELS_FILE, find_file, read_rsna_labels, read_rsna_root
from cxrres.errors import CxrresError

from conftest import SHARED_DATA, real_rsna_label_rows

REAL = SHARED_DATA / "rsna-pneumonia"


def test_real_label_file_counts() -> None:
    rows = real_rsna_label_rows()
    patients = {r["patientId"] for r in rows}
    positive_rows = [r for r in rows if r["Target"] == "1"]
    per_image = Counter(r["patientId"] for r in positive_rows)
    result = read_rsna_root(REAL)
    assert result.problems == ()
    assert len(result.images) == len(patients) == 26_684
    assert result.images[FINDING].sum() == len(per_image) == 6_012
    assert len(result.boxes) == len(positive_rows) == 9_555
    assert Counter(result.images.loc[result.images[FINDING] == 1, "n_boxes"]) == Counter(per_image.values())
    assert max(per_image.values()) == result.images["n_boxes"].max() == 4
    assert (result.images["image"] == result.images["patient_id"] + ".dcm").all()
    assert result.images["patient_id"].is_unique and set(result.images["detailed_class"]) == {""}
    first = positive_rows[0]
    assert result.boxes.iloc[0].to_dict() == {
        "image": first["patientId"] + ".dcm",
        "label": FINDING,
        "x": float(first["x"]),
        "y": float(first["y"]),
        "w": float(first["width"]),
        "h": float(first["height"]),
    }
    assert list(result.boxes.columns) == ["image", "label", "x", "y", "w", "h"]


def test_detailed_class_file_as_published(tmp_path: Path) -> None:
    """The published class file has one row per label row; here written from the real labels (its own copy is not in
    shared/): Lung Opacity for Target 1, else Normal / No Lung Opacity alternating by patient."""
    rows = real_rsna_label_rows()
    labels = find_file(REAL, LABELS_FILE)
    other = ("Normal", "No Lung Opacity / Not Normal")
    order = {p: i for i, p in enumerate(dict.fromkeys(r["patientId"] for r in rows))}
    klass = {r["patientId"]: FINDING if r["Target"] == "1" else other[order[r["patientId"]] % 2] for r in rows}
    with open(tmp_path / CLASS_INFO_FILE, "w", newline="") as handle:
        handle.write("patientId,class\n" + "".join(f"{r['patientId']},{klass[r['patientId']]}\n" for r in rows))
    result = read_rsna_labels(labels, tmp_path / CLASS_INFO_FILE)
    assert Counter(result.images["detailed_class"]) == Counter(klass.values())
    assert (result.images.loc[result.images[FINDING] == 1, "detailed_class"] == FINDING).all()


def _write(path: Path, body: str) -> Path:
    path.write_text("patientId,x,y,width,height,Target\n" + body)
    return path


GOOD = "a,10,20,30,40,1\na,100,200,50,60,1\nb,,,,,0\n"


def test_small_file_two_boxes_one_image(tmp_path: Path) -> None:
    result = read_rsna_labels(_write(tmp_path / "l.csv", GOOD))
    assert result.images[["image", FINDING, "n_boxes"]].values.tolist() == [["a.dcm", 1, 2], ["b.dcm", 0, 0]]
    assert result.boxes[["x", "y", "w", "h"]].values.tolist() == [[10, 20, 30, 40], [100, 200, 50, 60]]


@pytest.mark.parametrize(
    "row, message",
    [
        ("c,1,2,3,x,1", "5: box fields are not numbers"),
        ("c,,,,,2", "5: Target is not 0 or 1"),
        ("c,,,,,1", "5: Target 1 without a box"),
        ("c,1,2,3,4,0", "5: Target 0 with a box"),
        ("c,1000,2,30,4,1", "5: box outside the 1024 x 1024 image"),
        ("c,1,2,0,4,1", r"5: empty box \(width or height <= 0\)"),
        ("a,10,20,30,40,1", "5: duplicate of an earlier row"),
        ("b,1,2,3,4,1", "4: patient has both Target 0 and Target 1 rows"),
    ],
)
def test_bad_rows_one_line_or_skipped(tmp_path: Path, row: str, message: str) -> None:
    path = _write(tmp_path / "l.csv", GOOD + row + "\n")
    with pytest.raises(CxrresError, match=rf"^{path}:{message}"):
        read_rsna_labels(path)
    result = read_rsna_labels(path, skip_bad=True)
    assert len(result.problems) >= 1 and str(path) in result.problems[0]
    bad = row.split(",")[0]
    assert bad not in set(result.images["patient_id"]) and not result.boxes["image"].eq(f"{bad}.dcm").any()


def test_class_file_contradicting_target(tmp_path: Path) -> None:
    labels = _write(tmp_path / "l.csv", GOOD)
    info = tmp_path / "c.csv"
    info.write_text("patientId,class\na,Lung Opacity\na,Lung Opacity\nb,Lung Opacity\n")
    with pytest.raises(CxrresError, match=rf"^{info}:4: class contradicts Target"):
        read_rsna_labels(labels, info)
    result = read_rsna_labels(labels, info, skip_bad=True)
    assert result.images["patient_id"].tolist() == ["a"] and result.images["detailed_class"].tolist() == [FINDING]
    info.write_text("patientId,class\na,Lung Opacity\nb,Sick\n")
    with pytest.raises(CxrresError, match=rf"^{info}:3: class is not one of"):
        read_rsna_labels(labels, info)
    with pytest.raises(CxrresError, match="not an RSNA Pneumonia root"):
        read_rsna_root(tmp_path / "empty")
