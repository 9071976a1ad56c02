"""`describe` on box data sets: boxes per part, per class in the test part, images by number of boxes and the mean
box area in source pixels and as a share of the frame, with exact numbers on a table written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrres.cli import main
from cxrres.data.datasets.common import DatasetTable, assemble, no_boxes
from cxrres.data.datasets.summary import describe_boxes, describe_table, format_table_summary
from test_rsna_dataset import FIXTURE_ROWS, write_fixture

PARTS = {"a": "train", "b": "val", "p1": "test", "p2": "test", "p4": "test"}
BOXES = [
    ("p1", "Lung Opacity", 100, 200, 50, 40),
    ("p1", "Lung Opacity", 600, 300, 100, 200),
    ("a", "Lung Opacity", 0, 0, 10, 10),
    ("b", "Nodule", 5, 5, 2, 2),
    ("p4", "Nodule", 10, 10, 10, 10),
    ("p4", "Nodule", 20, 20, 20, 30),
    ("p4", "Nodule", 500, 500, 100, 100),
]


def box_table(source_px: tuple[int, int] | None = (1024, 1024)) -> DatasetTable:
    """Five images (train a, val b, test p1 p2 p4), two classes, seven boxes (five in test)."""
    names = list(PARTS)
    columns = {
        "path": names,
        "patient_id": names,
        "view": [""] * 5,
        "frontal": [True] * 5,
        "part": list(PARTS.values()),
    }
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0], [0, 1]], np.float32)
    frame = assemble(names, columns, ("Lung Opacity", "Nodule"), labels)
    boxes = pd.DataFrame(BOXES, columns=["image", "label", "x", "y", "w", "h"]).astype({c: float for c in "xywh"})
    return DatasetTable("test", Path("."), ("Lung Opacity", "Nodule"), frame, boxes, source_px=source_px)


def test_box_summary_exact() -> None:
    summary = describe_boxes(box_table())
    frame_px = 1024 * 1024
    assert summary["per_part"] == {"train": 1, "val": 1, "test": 5}
    assert summary["classes"]["Lung Opacity"] == {
        "boxes": 2,
        "images": 1,
        "mean_area_px": 11_000.0,
        "mean_area_share": pytest.approx(11_000 / frame_px, rel=1e-12),
    }
    nodule = summary["classes"]["Nodule"]
    assert (nodule["boxes"], nodule["images"]) == (3, 1)
    assert nodule["mean_area_px"] == pytest.approx(10_700 / 3, rel=1e-12)
    assert nodule["mean_area_share"] == pytest.approx(10_700 / 3 / frame_px, rel=1e-12)
    assert summary["images_by_boxes"] == {0: 1, 2: 1, 3: 1}
    assert summary["mean_per_image"] == pytest.approx(5 / 3) and summary["mean_per_boxed_image"] == 2.5
    assert summary["mean_area_px"] == 6_540.0 and summary["mean_area_share"] == pytest.approx(6_540 / frame_px)
    text = format_table_summary(describe_table(box_table()))
    assert "boxes per part: train 1, val 1, test 5; source frame 1024x1024 px" in text
    assert (
        "11,000 px^2 (1.05% of the image)" in text
        and "0: 1, 2: 1, 3: 1; mean 1.67 per image, 2.50 per boxed image" in text
    )


def test_box_summary_without_frame_size_or_boxes() -> None:
    summary = describe_boxes(box_table(source_px=None))
    assert summary["mean_area_px"] == 6_540.0 and summary["mean_area_share"] is None
    assert summary["classes"]["Nodule"]["mean_area_share"] is None
    assert "image size unknown" in format_table_summary(describe_table(box_table(source_px=None)))
    table = box_table()
    empty = DatasetTable("test", Path("."), table.classes, table.frame, no_boxes())
    assert describe_boxes(empty) is None and describe_table(empty)["box_summary"] is None


def test_describe_cli_on_rsna_fixture(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_fixture(tmp_path / "rsna")
    assert main(["describe", "--data", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    boxes = summary["box_summary"]
    assert summary["dataset"] == "rsna" and summary["boxes"] == len([r for r in FIXTURE_ROWS if r.endswith(",1")])
    assert sum(boxes["per_part"].values()) == 6 and boxes["source_px"] == [1024, 1024]
    assert sum(boxes["images_by_boxes"].values()) == summary["images"]["test"]
    assert boxes["classes"]["Lung Opacity"]["boxes"] == boxes["per_part"]["test"]
    assert main(["describe", "--data", str(root)]) == 0
    assert "test images by number of boxes" in capsys.readouterr().out
