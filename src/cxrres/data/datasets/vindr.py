"""VinDr-CXR in the Kaggle "VinBigData Chest X-ray Abnormalities Detection" layout: `train.csv` (or `.gz`) as the
common form.

`train.csv` has `image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max`: one row per reader and finding (a
box in source pixels), or one "No finding" row (class_id 14) with blank box fields. Images are
`train/<image_id>.dicom`, frontal, of varying size (`source_px` None). Classes: the 14 findings in class_id order; an
image is positive for a finding when any reader marks it (`readers="majority"`: more than half of its readers).
Boxes: every reader's box is ground truth for its image. The Kaggle test images carry no labels and the CSV no
patient ids, so test and val are carved image-wise (seeded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrres.data.datasets.common import (DatasetTable, ReadOptions, assemble, finish_split, header, read_columns,
                                         select_views)
from cxrres.errors import CxrresError, DataFormatError

NAME = "vindr"
#: The 14 boxed findings, by class_id 0..13; class_id 14 is "No finding" (no box, no class column).
CLASSES: tuple[str, ...] = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "ILD", "Infiltration",
    "Lung Opacity", "Nodule/Mass", "Other lesion", "Pleural effusion", "Pleural thickening", "Pneumothorax",
    "Pulmonary fibrosis",
)
NO_FINDING = "No finding"
COLUMNS: tuple[str, ...] = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")
FILE_NAMES = ("train.csv", "train.csv.gz")
IMAGES_DIR = "train"
READER_RULES = ("any", "majority")
EXPECTS = "vindr: train.csv (image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max; Kaggle VinBigData)"


def _file(root: Path) -> Path | None:
    return next((root / n for n in FILE_NAMES if (root / n).is_file()), None)


def detect(root: Path) -> bool:
    """Whether `root` holds a VinBigData train.csv (its header starts image_id,class_name,class_id,rad_id)."""
    path = _file(root)
    try:
        return path is not None and tuple(header(path)[:4]) == COLUMNS[:4]
    except DataFormatError:
        return False


def read_rows(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows: image_id, class_name, rad_id; boxes: image, label, rad_id, x, y, w, h in source px) of one train.csv.

    Checks, each one DataFormatError at file:line: class_name one of the 14 findings or "No finding" and matching
    class_id; box fields blank exactly on "No finding" rows; numbers with x_max > x_min >= 0 and y_max > y_min >= 0.
    """
    frame = read_columns(path, COLUMNS)
    names = frame["class_name"]
    known = {name: str(i) for i, name in enumerate(CLASSES + (NO_FINDING,))}
    bad = ~names.isin(list(known))
    if bad.any():
        line = int(bad.idxmax())
        raise DataFormatError(path, f"column 'class_name': {names[line]!r} is not a VinDr-CXR class", line)
    bad = frame["class_id"].str.strip().str.replace(r"\.0$", "", regex=True) != names.map(known)
    if bad.any():
        line = int(bad.idxmax())
        raise DataFormatError(path, f"class_id {frame['class_id'][line]!r} does not match class_name {names[line]!r}", line)
    corners = frame[list(COLUMNS[4:])]
    blank = (corners == "").all(axis=1)
    bad = blank != (names == NO_FINDING)
    if bad.any():
        line = int(bad.idxmax())
        raise DataFormatError(path, "box fields must be blank on exactly the 'No finding' rows", line)
    numbers = corners[~blank].apply(pd.to_numeric, errors="coerce")
    x0, y0, x1, y1 = (numbers[c] for c in COLUMNS[4:])
    bad = numbers.isna().any(axis=1) | (x0 < 0) | (y0 < 0) | (x1 <= x0) | (y1 <= y0)
    if bad.any():
        line = int(bad.idxmax())
        raise DataFormatError(path, f"box {','.join(corners.loc[line])} is not numbers with x_max > x_min >= 0 and "
                                    "y_max > y_min >= 0", line)
    boxes = pd.DataFrame({"image": frame.loc[~blank, "image_id"] + ".dicom", "label": names[~blank],
                          "rad_id": frame.loc[~blank, "rad_id"], "x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0})
    return frame[["image_id", "class_name", "rad_id"]], boxes.reset_index(drop=True)


def image_labels(rows: pd.DataFrame, readers: str = "any") -> pd.DataFrame:
    """(images, 14) 0/1 float32 by image_id (sorted): positive when any reader (or more than half) marks the finding."""
    if readers not in READER_RULES:
        raise CxrresError(f"unknown reader rule {readers!r}; choose one of {', '.join(READER_RULES)}")
    votes = (rows[rows["class_name"] != NO_FINDING].drop_duplicates(["image_id", "class_name", "rad_id"])
             .groupby(["image_id", "class_name"]).size().unstack(fill_value=0))
    images = np.sort(rows["image_id"].unique())
    votes = votes.reindex(index=images, columns=list(CLASSES), fill_value=0)
    if readers == "any":
        return (votes > 0).astype(np.float32)
    n_readers = rows.groupby("image_id")["rad_id"].nunique().reindex(images)
    return votes.gt(n_readers / 2, axis=0).astype(np.float32)


def read(root: Path, options: ReadOptions = ReadOptions(), readers: str = "any") -> DatasetTable:
    """The VinBigData root in the common form: labels by `readers`, all readers' boxes, test and val carved image-wise."""
    path = _file(root)
    if path is None:
        raise DataFormatError(root / FILE_NAMES[0], "file not found")
    rows, boxes = read_rows(path)
    labels = image_labels(rows, readers)
    ids = labels.index.to_numpy(str)
    names = [i + ".dicom" for i in ids]
    columns = {"path": [f"{IMAGES_DIR}/{n}" for n in names], "patient_id": ids, "view": np.full(len(ids), "", object),
               "frontal": np.ones(len(ids), bool), "part": np.full(len(ids), "", object)}
    frame = select_views(assemble(names, columns, CLASSES, labels.to_numpy(np.float32)), options.views)
    frame, notes = finish_split(frame, f"{root} (vindr)", options)
    boxes = boxes[boxes["image"].isin(frame.index)].reset_index(drop=True)
    notes = (f"labels: a finding is positive when {'any reader' if readers == 'any' else 'most readers'} marks it; "
             f"{rows['rad_id'].nunique()} readers; boxes of all readers",
             "no patient ids in train.csv: test and val carved image-wise (patient = image)") + notes
    return DatasetTable(NAME, root, CLASSES, frame, boxes[["image", "label", "x", "y", "w", "h"]], notes=notes)
