"""MIMIC-CXR-JPG 2.x (Johnson et al., 2019): `mimic-cxr-2.0.0-split.csv.gz` (`dicom_id,study_id,subject_id,split`,
split train/validate/test: the official split), `mimic-cxr-2.0.0-chexpert.csv.gz` (study-level labels in CheXpert
coding; `-negbio.csv.gz` with `DataOptions(labeler="negbio")`, i.e. `--labeler negbio`),
`mimic-cxr-2.0.0-metadata.csv.gz` (`ViewPosition`), and images at `files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg`. A study's
labels apply to each of its images; a study absent from the label file is all blank. Frontal = `ViewPosition` PA or AP.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrres.data.datasets.common import (
    LABELERS,
    DatasetTable,
    DataOptions,
    assemble,
    finish_split,
    parse_labels,
    read_columns,
    select_views,
)
from cxrres.data.paths import file_names, refuse_duplicates
from cxrres.errors import DataFormatError

NAME = "mimic"
PREFIX = "mimic-cxr-2.0.0-"
SPLIT_FILE, METADATA_FILE = PREFIX + "split.csv.gz", PREFIX + "metadata.csv.gz"
LABEL_FILES = {labeler: f"{PREFIX}{labeler}.csv.gz" for labeler in LABELERS}
#: The 14 CheXpert observations in the label files' (alphabetical) column order.
CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
FRONTAL_VIEWS = ("PA", "AP")
PARTS = {"train": "train", "validate": "val", "test": "test"}
EXPECTS = f"mimic: {SPLIT_FILE}, {LABEL_FILES['chexpert']}, {METADATA_FILE} and files/pXX/pSUBJECT/sSTUDY/*.jpg"


def detect(root: Path) -> bool:
    """Whether `root` holds MIMIC-CXR-JPG's split and label files."""
    return (root / SPLIT_FILE).is_file() and (root / LABEL_FILES["chexpert"]).is_file()


def _ids(path: Path, cells: pd.Series, column: str) -> np.ndarray:
    """A column's stripped cells, 1-9 digit IDs, as int64; DataFormatError at file:line for anything else. Each
    distinct ID is checked and converted once (a subject's ID repeats on each of its images)."""
    rows, distinct = pd.factorize(cells, use_na_sentinel=False)
    distinct = pd.Index(distinct)
    bad = np.asarray(~distinct.str.fullmatch(r"\d{1,9}"), bool)[rows]
    if bad.any():
        line = int(cells.index[np.argmax(bad)])
        raise DataFormatError(path, f"column {column!r}: not an ID of 1 to 9 digits: {cells[line]!r}", line)
    return distinct.astype(np.int64).to_numpy()[rows]


def read(root: Path, options: DataOptions = DataOptions()) -> DatasetTable:
    """MIMIC-CXR-JPG in the common form: the official split, study labels (of `options.labeler`) on every image,
    ViewPosition views."""
    split_path, label_path, meta_path = root / SPLIT_FILE, root / LABEL_FILES[options.labeler], root / METADATA_FILE
    if not label_path.is_file():
        raise DataFormatError(label_path, f"label file not found (--labeler {options.labeler})")
    split = read_columns(split_path, ("dicom_id", "study_id", "subject_id", "split"))
    subject_text, study_text, dicom = (split[c].str.strip() for c in ("subject_id", "study_id", "dicom_id"))
    dicom = file_names(split_path, dicom, "dicom_id")
    refuse_duplicates(split_path, dicom, "dicom_id")
    subject, study = _ids(split_path, subject_text, "subject_id"), _ids(split_path, study_text, "study_id")
    part = split["split"].str.strip().map(PARTS)
    if part.isna().any():
        line = int(part.isna().idxmax())
        raise DataFormatError(
            split_path, f"column 'split': {split['split'][line]!r} is not train, validate or test", line
        )
    labels_frame = read_columns(label_path, ("subject_id", "study_id") + CLASSES)
    label_rows = parse_labels(label_path, labels_frame, CLASSES)
    label_study = _ids(label_path, labels_frame["study_id"].str.strip(), "study_id")
    if len(np.unique(label_study)) != len(label_study):
        line = int(labels_frame.index[np.flatnonzero(labels_frame["study_id"].duplicated().to_numpy())[0]])
        raise DataFormatError(label_path, f"duplicate study_id {labels_frame['study_id'][line]}", line)
    order = np.argsort(label_study)
    at = np.searchsorted(label_study[order], study).clip(0, max(len(label_study) - 1, 0))
    found = label_study[order][at] == study if len(label_study) else np.zeros(len(study), bool)
    labels = np.full((len(study), len(CLASSES)), np.nan, np.float32)
    labels[found] = label_rows[order][at[found]]
    view = np.full(len(dicom), "", object)
    if meta_path.is_file():
        meta = read_columns(meta_path, ("dicom_id", "ViewPosition"))
        meta_dicom = meta["dicom_id"].str.strip()
        last = ~meta_dicom.duplicated(keep="last").to_numpy()  # a dicom_id listed twice: its last row, as a dict
        where = pd.Index(meta_dicom[last]).get_indexer(dicom)
        view = np.where(where >= 0, meta["ViewPosition"].str.strip().to_numpy(object)[last][where], "")
    paths = [
        f"files/p{s[:2]}/p{s}/s{t}/{d}.jpg"
        for s, t, d in zip(subject_text.tolist(), study_text.tolist(), dicom.tolist())
    ]
    columns = {
        "path": np.asarray(paths, object),
        "patient_id": subject,
        "view": view,
        "frontal": np.isin(view, FRONTAL_VIEWS),
        "part": part.to_numpy(object),
    }
    table = assemble(paths, columns, CLASSES, labels)
    table = select_views(table, options.views)
    table, notes = finish_split(table, f"{root} (mimic)", options)
    return DatasetTable(NAME, root, CLASSES, table, notes=(f"split: {SPLIT_FILE}; labels: {label_path.name}",) + notes)
