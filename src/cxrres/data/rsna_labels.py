"""RSNA Pneumonia Detection Challenge (stage 2, as published on Kaggle) label files -> images, patients and boxes.

Files: `stage_2_train_labels.csv` (`patientId,x,y,width,height,Target`: one row per box when Target is 1, one row with
empty box fields when it is 0; also read from the `.csv.zip` it is distributed as) and, optionally,
`stage_2_detailed_class_info.csv` (`patientId,class`, one row per label row: "Lung Opacity", "No Lung Opacity / Not
Normal" or "Normal"). Images are `stage_2_train_images/<patientId>.dcm`, 1024 x 1024 pixels; one image per patient.
Boxes are (x, y, w, h) in those source pixels. Pure functions of the files' contents: nothing here touches images.

Bad rows (unreadable numbers, Target other than 0/1, a positive row without a box or a negative one with a box, a box
outside the image or empty, a patient with both positive and negative rows, a duplicated row, a class that contradicts
Target) raise one CxrresError line naming the file and its line number, or with `skip_bad=True` drop that patient and
are listed in `RsnaLabels.problems`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres.data import strictcsv
from cxrres.data.paths import not_file_name
from cxrres.errors import CxrresError

LABELS_FILE = "stage_2_train_labels.csv"
CLASS_INFO_FILE = "stage_2_detailed_class_info.csv"
IMAGES_DIR = "stage_2_train_images"
#: The one boxed finding, and the column of the image table that says whether an image has it.
FINDING = "Lung Opacity"
DETAILED_CLASSES = ("Lung Opacity", "No Lung Opacity / Not Normal", "Normal")
#: Side of every RSNA stage-2 image, pixels.
IMAGE_SIDE_PX = 1024
_LABEL_COLUMNS = ["patientId", "x", "y", "width", "height", "Target"]


@dataclass(frozen=True)
class RsnaLabels:
    """images: image (`<patientId>.dcm`), patient_id, `Lung Opacity` (0/1), n_boxes, detailed_class (empty without
    the class file); boxes: image, label, x, y, w, h (source pixels); problems: the lines skipped with skip_bad."""

    images: pd.DataFrame
    boxes: pd.DataFrame
    problems: tuple[str, ...] = ()


def find_file(root: str | Path, name: str) -> Path | None:
    """`root/name`, or `root/name.zip` as Kaggle distributes it; None when neither exists."""
    for candidate in (Path(root) / name, Path(root) / f"{name}.zip"):
        if candidate.is_file():
            return candidate
    return None


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """The CSV at `path` (or the single CSV in a zip) as strings, with `line` = its 1-based line number in the file."""
    head, frame = strictcsv.read_table(path)  # UTF-8, distinct names, every row as wide as the header
    if head != columns:
        raise CxrresError(f"{path}: header is {','.join(head)}; expected {','.join(columns)}")
    frame["line"] = frame.index.to_numpy()
    return frame.reset_index(drop=True)


def _label_problems(labels: pd.DataFrame, side_px: int) -> pd.Series:
    """Per label row: what is wrong with it ('' when nothing), judged on that row alone."""
    numbers = labels[["x", "y", "width", "height"]].apply(pd.to_numeric, errors="coerce")
    blank = (labels[["x", "y", "width", "height"]] == "").all(axis=1)
    target = labels["Target"]
    problem = pd.Series("", index=labels.index)
    bad_number = numbers.isna().any(axis=1) & ~blank
    problem[bad_number] = "box fields are not numbers"
    problem[~target.isin(["0", "1"])] = "Target is not 0 or 1"
    problem[(target == "1") & blank] = "Target 1 without a box"
    problem[(target == "0") & ~blank] = "Target 0 with a box"
    boxed = (target == "1") & ~blank & ~bad_number
    x, y, w, h = (numbers[c] for c in ("x", "y", "width", "height"))
    empty = boxed & ((w <= 0) | (h <= 0))
    outside = boxed & ~empty & ((x < 0) | (y < 0) | (x + w > side_px) | (y + h > side_px))
    problem[empty] = "empty box (width or height <= 0)"
    problem[outside] = f"box outside the {side_px} x {side_px} image"
    duplicated = labels.duplicated(_LABEL_COLUMNS, keep="first") & (problem == "")
    problem[duplicated] = "duplicate of an earlier row"
    problem[(problem == "") & not_file_name(labels["patientId"])] = (
        "patientId is not a file name (it names <patientId>.dcm)"
    )
    mixed = labels["patientId"].map(labels.groupby("patientId")["Target"].nunique() > 1)
    problem[(problem == "") & mixed] = "patient has both Target 0 and Target 1 rows"
    return problem


def _class_problems(info: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """Per class-file row: what is wrong with it ('' when nothing), against the label file's Target per patient."""
    problem = pd.Series("", index=info.index)
    target = info["patientId"].map(labels.groupby("patientId")["Target"].first())
    problem[info["class"].eq(FINDING) != target.eq("1")] = "class contradicts Target (Lung Opacity if and only if 1)"
    problem[target.isna()] = "patient not in the label file"
    problem[info["patientId"].map(info.groupby("patientId")["class"].nunique() > 1)] = "patient has different classes"
    problem[~info["class"].isin(DETAILED_CLASSES)] = "class is not one of " + ", ".join(DETAILED_CLASSES)
    return problem


def read_rsna_labels(
    labels_path: str | Path,
    class_info_path: str | Path | None = None,
    skip_bad: bool = False,
    side_px: int = IMAGE_SIDE_PX,
) -> RsnaLabels:
    """Images, patients and boxes from the stage-2 label file (and the detailed class file when given); see the
    module docstring for the checks. Boxes keep the file's order; images are sorted by patient id."""
    labels_path = Path(labels_path)
    labels = _read_table(labels_path, _LABEL_COLUMNS)
    problem = _label_problems(labels, side_px)
    problems = [f"{labels_path}:{line}: {text}" for line, text in zip(labels["line"], problem) if text]
    bad_patients = set(labels.loc[problem != "", "patientId"])
    classes = None
    if class_info_path is not None:
        class_info_path = Path(class_info_path)
        info = _read_table(class_info_path, ["patientId", "class"])
        info_problem = _class_problems(info, labels)
        problems += [f"{class_info_path}:{line}: {text}" for line, text in zip(info["line"], info_problem) if text]
        bad_patients |= set(info.loc[info_problem != "", "patientId"])
        classes = info.drop_duplicates("patientId").set_index("patientId")["class"]
    if problems and not skip_bad:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CxrresError(problems[0] + more + "; --skip-bad leaves such rows' patients out")
    good = labels[~labels["patientId"].isin(bad_patients)]
    positive = good[good["Target"] == "1"]
    boxes = pd.DataFrame(
        {
            "image": positive["patientId"] + ".dcm",
            "label": FINDING,
            **{
                k: positive[c].astype(float).to_numpy()
                for k, c in (("x", "x"), ("y", "y"), ("w", "width"), ("h", "height"))
            },
        }
    ).reset_index(drop=True)
    patients = np.sort(good["patientId"].unique())
    n_boxes = positive.groupby("patientId").size()
    images = pd.DataFrame(
        {
            "image": [p + ".dcm" for p in patients],
            "patient_id": patients,
            FINDING: [int(p in n_boxes.index) for p in patients],
            "n_boxes": [int(n_boxes.get(p, 0)) for p in patients],
            "detailed_class": [str(classes.get(p, "")) if classes is not None else "" for p in patients],
        }
    )
    return RsnaLabels(images, boxes, tuple(problems))


def read_rsna_root(root: str | Path, skip_bad: bool = False) -> RsnaLabels:
    """`read_rsna_labels` on the files found in `root` (each as `.csv` or `.csv.zip`; the class file is optional)."""
    labels = find_file(root, LABELS_FILE)
    if labels is None:
        raise CxrresError(f"{root}: no {LABELS_FILE} (or {LABELS_FILE}.zip): not an RSNA Pneumonia root")
    return read_rsna_labels(labels, find_file(root, CLASS_INFO_FILE), skip_bad)
