"""VinDr-CXR as the common form, in both published layouts: Kaggle "VinBigData Chest X-ray Abnormalities Detection"
(`train.csv`, below) and PhysioNet 1.0.0 (`annotations/`, see `read_physionet`).

`train.csv` has `image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max`: one row per reader and finding (a
box in source pixels), or one "No finding" row (class_id 14) with blank box fields. Images are
`train/<image_id>.dicom`, frontal, of varying size (`source_px` None). Classes: the 14 findings in class_id order; an
image is positive for a finding when any reader marks it (`readers="majority"`: more than half of its readers).
Boxes: every reader's box is ground truth for its image. The Kaggle test images carry no labels and the CSV no
patient ids, so test and val are carved (seeded) patient-wise by the DICOM headers' PatientID where the images are
present and nearly all carry one (`data.dicom_headers.patients_from_headers`), else image-wise.

Each annotation row is checked (`row_problems`); a bad one is one DataFormatError at file:line, or under
`options.skip_bad` its image is left out (all its rows: its labels are in doubt) and the row is listed in
`DatasetTable.skipped`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrres.data.datasets.common import (
    DatasetTable,
    DataOptions,
    assemble,
    finish_split,
    header,
    read_columns,
    refuse_or_skip,
    select_views,
    skipped_note,
)
from cxrres.data.dicom_headers import patients_from_headers, read_headers
from cxrres.data.paths import not_file_name
from cxrres.errors import CxrresError, DataFormatError

NAME = "vindr"
#: The 14 boxed findings, by class_id 0..13; class_id 14 is "No finding" (no box, no class column).
CLASSES: tuple[str, ...] = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
)
NO_FINDING = "No finding"
COLUMNS: tuple[str, ...] = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")
FILE_NAMES = ("train.csv", "train.csv.gz")
IMAGES_DIR = "train"
READER_RULES = ("any", "majority")
EXPECTS = (
    "vindr: train.csv (image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max; Kaggle VinBigData) or "
    "annotations/annotations_train.csv + image_labels_train.csv (PhysioNet)"
)
ANNOTATIONS_DIR = "annotations"
#: PhysioNet's test label file spells one column differently from the train one.
LABEL_ALIASES = {"Other disease": "Other diseases"}
BINARY = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0}


def _physionet_files(root: Path, part: str) -> tuple[Path, Path]:
    """(annotations_PART.csv, image_labels_PART.csv) under root/annotations."""
    return (root / ANNOTATIONS_DIR / f"annotations_{part}.csv", root / ANNOTATIONS_DIR / f"image_labels_{part}.csv")


def _file(root: Path) -> Path | None:
    return next((root / n for n in FILE_NAMES if (root / n).is_file()), None)


def detect(root: Path) -> bool:
    """Whether `root` holds PhysioNet's annotations/ train files or a VinBigData train.csv (header image_id,class_name,
    class_id,rad_id,...)."""
    if all(p.is_file() for p in _physionet_files(root, "train")):
        return True
    path = _file(root)
    return path is not None and tuple(header(path)[:4]) == COLUMNS[:4]  # an unreadable train.csv: its own error


def _first_problem(problems: pd.Series, mask: pd.Series, message) -> None:
    """Set `message(row_index)` on the rows of `mask` that have no problem yet (in place; first problem wins)."""
    todo = mask & (problems == "")
    for line in problems.index[todo.to_numpy()]:
        problems[line] = message(line)


def row_problems(
    frame: pd.DataFrame,
    known_classes: set[str],
    sizes: pd.DataFrame | None = None,
    images: set[str] | None = None,
    label_file: str = "",
) -> pd.Series:
    """What is wrong with each annotation row ('' when nothing; indexed by file line), first problem only: class not
    known (or, with `class_id`, not matching it), image not in `images` (the part's label file), box fields not blank
    exactly on "No finding" rows, not numbers with x_max > x_min >= 0 and y_max > y_min >= 0, outside the image where
    `sizes` (image_id -> rows, columns px; 0 unknown) knows it, or a duplicate of an earlier row."""
    problems = pd.Series("", index=frame.index, dtype=object)
    _first_problem(
        problems,
        not_file_name(frame["image_id"]),
        lambda i: f"column 'image_id': not a file name: {frame['image_id'][i]!r}",
    )
    names = frame["class_name"]
    known = f"a label column of {label_file}" if label_file else "a VinDr-CXR class"
    _first_problem(
        problems,
        ~names.isin(known_classes | {NO_FINDING}),
        lambda i: f"column 'class_name': {names[i]!r} is not {known}",
    )
    if "class_id" in frame:
        ids = {name: str(i) for i, name in enumerate(CLASSES + (NO_FINDING,))}
        mismatch = frame["class_id"].str.strip().str.replace(r"\.0$", "", regex=True) != names.map(ids)
        _first_problem(
            problems, mismatch, lambda i: f"class_id {frame['class_id'][i]!r} does not match class_name {names[i]!r}"
        )
    if images is not None:
        _first_problem(
            problems,
            ~frame["image_id"].isin(images),
            lambda i: f"image {frame['image_id'][i]!r} is not in {label_file}",
        )
    corners = frame[list(COLUMNS[4:])]
    blank = (corners == "").all(axis=1)
    _first_problem(
        problems, blank != (names == NO_FINDING), lambda i: "box fields must be blank on exactly the 'No finding' rows"
    )
    numbers = corners.apply(pd.to_numeric, errors="coerce")
    x0, y0, x1, y1 = (numbers[c] for c in COLUMNS[4:])
    bad = ~blank & (numbers.isna().any(axis=1) | (x0 < 0) | (y0 < 0) | (x1 <= x0) | (y1 <= y0))
    _first_problem(
        problems,
        bad,
        lambda i: f"box {','.join(corners.loc[i])} is not numbers with x_max > x_min >= 0 and y_max > y_min >= 0",
    )
    if sizes is not None:
        height, width = (frame["image_id"].map(sizes[c]).fillna(0).astype(int) for c in ("rows", "columns"))
        outside = ~blank & (((width > 0) & (x1 > width)) | ((height > 0) & (y1 > height)))
        _first_problem(
            problems,
            outside,
            lambda i: (
                f"box {','.join(corners.loc[i])} is outside the {width[i]} x {height[i]} image (DICOM Columns x Rows)"
            ),
        )
    repeated = frame.duplicated(keep="first")
    if repeated.any():
        first = (
            pd.Series(frame.index, index=frame.index)
            .groupby([frame[c] for c in frame.columns], sort=False)
            .transform("min")
        )
        _first_problem(problems, repeated, lambda i: f"duplicate of line {int(first[i])}")
    return problems


def keep_good(
    path: Path, frame: pd.DataFrame, problems: pd.Series, skip_bad: bool
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """(the rows of the images without a bad row, the bad rows as 'file:line: problem'); DataFormatError at the first
    bad row unless `skip_bad`."""
    skipped = refuse_or_skip(path, problems, skip_bad)
    bad_images = set(frame.loc[problems != "", "image_id"])
    return frame[~frame["image_id"].isin(bad_images)], skipped


def boxes_of(frame: pd.DataFrame) -> pd.DataFrame:
    """Boxes (image, label, rad_id, x, y, w, h; source px) of checked annotation rows (`COLUMNS`' box fields)."""
    boxed = frame[frame["class_name"] != NO_FINDING]
    x0, y0, x1, y1 = (boxed[c].astype(float) for c in COLUMNS[4:])
    return pd.DataFrame(
        {
            "image": boxed["image_id"] + ".dicom",
            "label": boxed["class_name"],
            "rad_id": boxed["rad_id"],
            "x": x0,
            "y": y0,
            "w": x1 - x0,
            "h": y1 - y0,
        }
    ).reset_index(drop=True)


def read_rows(
    path: Path, sizes: pd.DataFrame | None = None, skip_bad: bool = False, frame: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """(rows: image_id, class_name, rad_id; boxes: image, label, rad_id, x, y, w, h in source px; skipped rows) of one
    train.csv (or its `frame` already read), checked by `row_problems` (one DataFormatError at file:line, or with
    `skip_bad` the images of bad rows left out and the rows listed)."""
    frame = read_columns(path, COLUMNS) if frame is None else frame
    rows, skipped = keep_good(path, frame, row_problems(frame, set(CLASSES), sizes), skip_bad)
    return rows[["image_id", "class_name", "rad_id"]], boxes_of(rows), skipped


def image_labels(rows: pd.DataFrame, readers: str = "any") -> pd.DataFrame:
    """(images, 14) 0/1 float32 by image_id (sorted): positive when any reader (or more than half) marks the finding."""
    check_readers(readers)
    votes = (
        rows[rows["class_name"] != NO_FINDING]
        .drop_duplicates(["image_id", "class_name", "rad_id"])
        .groupby(["image_id", "class_name"])
        .size()
        .unstack(fill_value=0)
    )
    images = np.sort(rows["image_id"].unique())
    votes = votes.reindex(index=images, columns=list(CLASSES), fill_value=0)
    if readers == "any":
        return (votes > 0).astype(np.float32)
    n_readers = rows.groupby("image_id")["rad_id"].nunique().reindex(images)
    return votes.gt(n_readers / 2, axis=0).astype(np.float32)


def check_readers(readers: str) -> None:
    """CxrresError unless `readers` is one of READER_RULES."""
    if readers not in READER_RULES:
        raise CxrresError(f"unknown reader rule {readers!r}; choose one of {', '.join(READER_RULES)}")


def dicom_headers(root: Path, image_ids: np.ndarray) -> pd.DataFrame | None:
    """PatientID, Rows, Columns of `train/<image_id>.dicom` (see `data.dicom_headers`); None without a train/ folder."""
    folder = root / IMAGES_DIR
    if not folder.is_dir():
        return None
    return read_headers([folder / f"{i}.dicom" for i in image_ids], image_ids)


def read(root: Path, options: DataOptions = DataOptions(), readers: str | None = None) -> DatasetTable:
    """The VinBigData root in the common form: labels by `readers` (default `options.readers`), all readers' boxes,
    test and val carved patient-wise when the DICOM headers give patient ids (`patients_from_headers`), else
    image-wise."""
    readers = readers or options.readers
    check_readers(readers)
    if all(p.is_file() for p in _physionet_files(root, "train")):
        return read_physionet(root, options, readers)
    path = _file(root)
    if path is None:
        raise DataFormatError(root / FILE_NAMES[0], "file not found")
    frame = read_columns(path, COLUMNS)
    headers = dicom_headers(root, np.sort(frame["image_id"].unique()))
    rows, boxes, skipped = read_rows(path, headers, options.skip_bad, frame)
    labels = image_labels(rows, readers)
    ids = labels.index.to_numpy(str)
    names = [i + ".dicom" for i in ids]
    patients, how = None, f"no {IMAGES_DIR}/ folder of DICOM files to read patient ids from"
    if headers is not None:
        patients, how = patients_from_headers(ids, headers["patient_id"].reindex(ids).fillna("").to_numpy(object))
    wise = "image-wise (patient = image)" if patients is None else "patient-wise"
    patients = ids.astype(object) if patients is None else patients
    columns = {
        "path": [f"{IMAGES_DIR}/{n}" for n in names],
        "patient_id": patients,
        "view": np.full(len(ids), "", object),
        "frontal": np.ones(len(ids), bool),
        "part": np.full(len(ids), "", object),
    }
    frame = select_views(assemble(names, columns, CLASSES, labels.to_numpy(np.float32)), options.views)
    frame, notes = finish_split(frame, f"{root} (vindr)", options, "patient" if wise == "patient-wise" else "image")
    boxes = boxes[boxes["image"].isin(frame.index)].reset_index(drop=True)
    patient_note = f"train.csv has no patient ids; {how}: test and val carved {wise}"
    notes = (
        (
            f"labels: a finding is positive when {'any reader marks' if readers == 'any' else 'most readers mark'} it; "
            f"{rows['rad_id'].nunique()} readers; boxes of all readers",
            patient_note,
        )
        + skipped_note(skipped)
        + notes
    )
    return DatasetTable(
        NAME, root, CLASSES, frame, boxes[["image", "label", "x", "y", "w", "h"]], notes=notes, skipped=skipped
    )


def read_image_labels(path: Path, readers: str = "any") -> pd.DataFrame:
    """PhysioNet `image_labels_*.csv` (`image_id, rad_id` or `rad_ID`, then 0/1 per label, one row per reader) ->
    (images, labels) 0/1 float32 by image_id (sorted): positive when any reader (or more than half) marks it."""
    check_readers(readers)
    columns = header(path)
    reader = next((c for c in columns if c.lower() == "rad_id"), None)
    if "image_id" not in columns or reader is None:
        raise DataFormatError(path, "missing column 'image_id' or 'rad_id'")
    names = [c for c in columns if c not in ("image_id", reader)]
    frame = read_columns(path, ["image_id", reader] + names)
    values = frame[names].apply(lambda c: c.str.strip().map(BINARY))
    bad = values.isna().any(axis=1)
    if bad.any():
        line = int(bad.idxmax())
        column = names[int(np.argmax(values.loc[line].isna().to_numpy()))]
        raise DataFormatError(path, f"column {column!r}: {frame.loc[line, column]!r} is not 0 or 1", line)
    values = values.rename(columns=LABEL_ALIASES)
    grouped = values.groupby(frame["image_id"].to_numpy())
    labels = grouped.max() if readers == "any" else (grouped.mean() > 0.5)
    return labels.sort_index().astype(np.float32)


def read_physionet(root: Path, options: DataOptions = DataOptions(), readers: str = "any") -> DatasetTable:
    """PhysioNet VinDr-CXR 1.0.0: official train/test (images `train/`, `test/<image_id>.dicom`), val carved
    image-wise from train; classes = the label columns of image_labels_train.csv but "No finding"; boxes of all readers
    (annotations_*.csv: image_id, rad_id, class_name, x_min, y_min, x_max, y_max in source px)."""
    labels, boxes, skipped = {}, [], ()
    for part in ("train", "test"):
        box_path, label_path = _physionet_files(root, part)
        if not label_path.is_file() or not box_path.is_file():
            if part == "train":
                raise DataFormatError(label_path if not label_path.is_file() else box_path, "file not found")
            continue
        table = read_image_labels(label_path, readers)
        rows = read_columns(box_path, ("image_id", "rad_id", "class_name") + COLUMNS[4:])
        problems = row_problems(
            rows, set(table.columns) - {NO_FINDING}, images=set(table.index), label_file=label_path.name
        )
        bad_images = set(rows.loc[problems != "", "image_id"])
        rows, bad = keep_good(box_path, rows, problems, options.skip_bad)
        labels[part], skipped = table[~table.index.isin(bad_images)], skipped + bad
        boxes.append(boxes_of(rows))
    classes = tuple(c for c in labels["train"].columns if c != NO_FINDING)
    if "test" in labels and set(labels["test"].columns) != set(labels["train"].columns):
        raise DataFormatError(_physionet_files(root, "test")[1], "label columns differ from image_labels_train.csv")
    pieces = {part: table.reindex(columns=list(classes)) for part, table in labels.items()}
    ids = np.concatenate([t.index.to_numpy(str) for t in pieces.values()])
    part = np.concatenate([np.full(len(t), p if p == "test" else "", object) for p, t in pieces.items()])
    folder = np.concatenate([np.full(len(t), p, object) for p, t in pieces.items()])
    names = [i + ".dicom" for i in ids]
    columns = {
        "path": [f"{f}/{n}" for f, n in zip(folder, names)],
        "patient_id": ids,
        "view": np.full(len(ids), "", object),
        "frontal": np.ones(len(ids), bool),
        "part": part,
    }
    values = np.concatenate([t.to_numpy(np.float32) for t in pieces.values()])
    frame = select_views(assemble(names, columns, classes, values), options.views)
    frame, split_notes = finish_split(frame, f"{root} (vindr, PhysioNet)", options, "image")
    box_table = pd.concat(boxes, ignore_index=True)
    n_readers = box_table["rad_id"].nunique()
    box_table = box_table[box_table["image"].isin(frame.index)].reset_index(drop=True)
    notes = (
        (
            f"labels: a finding is positive when {'any reader marks' if readers == 'any' else 'most readers mark'} it; "
            f"boxes of all readers ({n_readers} with boxes)",
        )
        + (("test: annotations/image_labels_test.csv",) if "test" in labels else ())
        + ("no patient ids: val (and a missing test) carved image-wise",)
    )
    return DatasetTable(
        NAME,
        root,
        classes,
        frame,
        box_table[["image", "label", "x", "y", "w", "h"]],
        notes=notes + skipped_note(skipped) + split_notes,
        skipped=skipped,
    )
