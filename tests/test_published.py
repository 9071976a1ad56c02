"""cxrres.evaluation.published: the package CSV against the shared transcription, the reference rule, the comparison
table."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from cxrres.evaluation import published
from cxrres.errors import CxrresError

from conftest import SHARED_DATA

TABLES = {
    "3": ("auc", "wollek2023_table3_auc.csv"),
    "4": ("precision", "wollek2023_table4_precision.csv"),
    "5": ("accuracy", "wollek2023_table5_accuracy.csv"),
}


def shared_published_dir() -> Path | None:
    """../shared/data/published beside the repository (or beside CXRRES_DATA_ROOT's chestxray14), if it exists."""
    candidates = [SHARED_DATA / "published"]
    if os.environ.get("CXRRES_DATA_ROOT"):
        candidates.insert(0, Path(os.environ["CXRRES_DATA_ROOT"]).parent / "published")
    return next((c for c in candidates if (c / TABLES["3"][1]).is_file()), None)


@pytest.fixture(scope="module")
def shared_dir() -> Path:
    found = shared_published_dir()
    if found is None:
        pytest.skip("../shared/data/published not found (set CXRRES_DATA_ROOT)")
    return found


def package_rows() -> list[dict[str, str]]:
    """The package CSV as text, cell by cell (no float parsing)."""
    path = Path(published.__file__).parents[1] / "resources" / "published" / "published_results.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_package_csv_equals_the_shared_tables_exactly(shared_dir):
    rows = [r for r in package_rows() if r["source"] == "wollek2023"]
    for table, (metric, name) in TABLES.items():
        with open(shared_dir / name, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            expected = {(line[0], res): cell for line in reader for res, cell in zip(header[1:], line[1:])}
        got = {(r["class"], r["resolution_px"]): r["value"] for r in rows if r["table"] == table}
        assert got == expected, table
        assert {r["metric"] for r in rows if r["table"] == table} == {metric}
    assert len(rows) == 15 * 5 + 9 * 5 + 8 * 5
    assert {(r["dataset"], r["split"], r["arch"]) for r in rows} == {("chestxray14", "chexnet", "densenet121")}


def test_sabottke_rows_are_the_abstract_figures():
    rows = {(r["class"], r["resolution_px"]): r["value"] for r in package_rows() if r["source"] == "sabottke2020"}
    assert rows == {
        ("Nodule", "64"): "0.689",
        ("Nodule", "320"): "0.854",
        ("Mass", "64"): "0.767",
        ("Mass", "320"): "0.886",
    }


def test_published_results_types_and_filters():
    auc = published.published_results("auc", "wollek2023")
    assert list(auc.columns) == published.COLUMNS and len(auc) == 75
    assert auc["resolution_px"].dtype.kind == "i" and auc["value"].between(0, 1).all()
    row = auc[(auc["class"] == "Nodule") & (auc["resolution_px"] == 1024)]
    assert row["value"].tolist() == [0.803]
    assert set(published.published_results("accuracy")["class"]) == {
        "Nodule",
        "Atelectasis",
        "Mass",
        "Pneumothorax",
        "Effusion",
        "Infiltration",
        "Pneumonia",
        "Cardiomegaly",
    }
    assert len(published.published_results()) == 164
    with pytest.raises(CxrresError, match="unknown published metric"):
        published.published_results("f1")
    with pytest.raises(CxrresError, match="unknown source"):
        published.published_results(source="wang2017")


@pytest.mark.parametrize(
    "dataset,split,expected",
    [
        ("chestxray14", "chexnet", True),
        ("ChestX-ray14", "CheXNet", True),
        ("nih", "chexnet", True),
        ("chestxray14", "official", False),
        ("chexpert", "chexnet", False),
        ("padchest", "official", False),
    ],
)
def test_reference_only_for_chestxray14_with_the_chexnet_split(dataset, split, expected):
    reference = published.reference_for(dataset, split)
    assert (reference is not None) == expected
    if expected:
        assert set(reference["source"]) == {"wollek2023"} and set(reference["metric"]) == set(published.METRICS)


def test_compare_with_published_on_a_hand_made_table():
    reference = pd.DataFrame(
        {
            "metric": "auc",
            "class": ["Nodule", "Nodule", "Mass", "Mean"],
            "resolution_px": [256, 1024, 256, 256],
            "value": [0.761, 0.803, 0.830, 0.827],
        }
    )
    ours = pd.DataFrame(
        {
            "class": ["mean", "Nodule", "Nodule", "Mass", "Hernia"],
            "resolution_px": [256, 1024, 256, 256, 256],
            "auc": [0.820, 0.790, 0.700, 0.835, 0.9],
            "ci_low": [0.810, 0.770, 0.680, 0.830, 0.8],
            "ci_high": [0.830, 0.810, 0.720, 0.840, 1.0],
        }
    )
    got = published.compare_with_published(ours, reference)
    assert got["class"].tolist() == ["Nodule", "Nodule", "Mass", "mean"]  # published order, our spelling
    assert got["resolution_px"].tolist() == [256, 1024, 256, 256]
    assert got["ours"].tolist() == [0.700, 0.790, 0.835, 0.820]
    assert got["published"].tolist() == [0.761, 0.803, 0.830, 0.827]
    assert got["difference"].tolist() == pytest.approx([-0.061, -0.013, 0.005, -0.007])
    # 0.761 outside [0.68, 0.72]; 0.803 inside [0.77, 0.81]; 0.830 on the closed edge of [0.83, 0.84]; 0.827 inside
    assert got["inside"].tolist() == [False, True, True, True]


def test_compare_without_intervals_and_bad_input():
    reference = published.published_results("precision", "wollek2023")
    ours = pd.DataFrame({"class": ["Nodule", "Cardiomegaly"], "resolution_px": [512, 64], "precision": [0.2, 0.1]})
    got = published.compare_with_published(ours, reference, value="precision")
    assert got["published"].tolist() == [0.150, 0.114] and got["difference"].tolist() == pytest.approx([0.05, -0.014])
    assert got["inside"].isna().all() and math.isnan(got["ci_low"].iloc[0])
    with pytest.raises(CxrresError, match="one metric at a time"):
        published.compare_with_published(ours, published.published_results(source="wollek2023"), value="precision")
    twice = pd.concat([ours, ours])
    with pytest.raises(CxrresError, match="several rows for Nodule at 512 px"):
        published.compare_with_published(twice, reference, value="precision")
    with pytest.raises(CxrresError, match="no column"):
        published.compare_with_published(ours, reference)
