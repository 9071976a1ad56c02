"""MIMIC-CXR-JPG 2.x (Johnson et al., 2019): `mimic-cxr-2.0.0-split.csv.gz` (`dicom_id,study_id,subject_id,split`,
split train/validate/test: the official split), `mimic-cxr-2.0.0-chexpert.csv.gz` (study-level labels in CheXpert
coding; `-negbio` with `labeler="negbio"`), `mimic-cxr-2.0.0-metadata.csv.gz` (`ViewPosition`), and images at
`files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg`. A study's labels apply to each of its images; a study absent from the
label file is all blank. Frontal = `ViewPosition` PA or AP.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrres.data.datasets.common import DatasetTable, ReadOptions, assemble, finish_split, parse_labels, read_columns, select_views
from cxrres.errors import DataFormatError

NAME = "mimic"
PREFIX = "mimic-cxr-2.0.0-"
SPLIT_FILE, METADATA_FILE = PREFIX + "split.csv.gz", PREFIX + "metadata.csv.gz"
LABEL_FILES = {"chexpert": PREFIX + "chexpert.csv.gz", "negbio": PREFIX + "negbio.csv.gz"}
#: The 14 CheXpert observations in the label files' (alphabetical) column order.
CLASSES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion",
    "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices",
)
FRONTAL_VIEWS = ("PA", "AP")
PARTS = {"train": "train", "validate": "val", "test": "test"}
EXPECTS = f"mimic: {SPLIT_FILE}, {LABEL_FILES['chexpert']}, {METADATA_FILE} and files/pXX/pSUBJECT/sSTUDY/*.jpg"


def detect(root: Path) -> bool:
    """Whether `root` holds MIMIC-CXR-JPG's split and label files."""
    return (root / SPLIT_FILE).is_file() and (root / LABEL_FILES["chexpert"]).is_file()


def _ids(path: Path, frame, column: str) -> np.ndarray:
    """A column of 1-9 digit IDs as int64; DataFormatError at file:line for anything else."""
    cells = frame[column].str.strip()
    bad = ~cells.str.fullmatch(r"\d{1,9}")
    if bad.any():
        line = int(bad.idxmax())
        raise DataFormatError(path, f"column {column!r}: not an ID of 1 to 9 digits: {cells[line]!r}", line)
    return cells.astype(np.int64).to_numpy()


def read(root: Path, options: ReadOptions = ReadOptions(), labeler: str = "chexpert") -> DatasetTable:
    """MIMIC-CXR-JPG in the common form: the official split, study labels on every image, ViewPosition views."""
    split_path, label_path, meta_path = root / SPLIT_FILE, root / LABEL_FILES[labeler], root / METADATA_FILE
    split = read_columns(split_path, ("dicom_id", "study_id", "subject_id", "split"))
    subject, study = _ids(split_path, split, "subject_id"), _ids(split_path, split, "study_id")
    part = split["split"].str.strip().map(PARTS)
    if part.isna().any():
        line = int(part.isna().idxmax())
        raise DataFormatError(split_path, f"column 'split': {split['split'][line]!r} is not train, validate or test", line)
    labels_frame = read_columns(label_path, ("subject_id", "study_id") + CLASSES)
    label_rows = parse_labels(label_path, labels_frame, CLASSES)
    label_study = _ids(label_path, labels_frame, "study_id")
    if len(np.unique(label_study)) != len(label_study):
        line = int(labels_frame.index[np.flatnonzero(labels_frame["study_id"].duplicated().to_numpy())[0]])
        raise DataFormatError(label_path, f"duplicate study_id {labels_frame['study_id'][line]}", line)
    order = np.argsort(label_study)
    at = np.searchsorted(label_study[order], study).clip(0, max(len(label_study) - 1, 0))
    found = label_study[order][at] == study if len(label_study) else np.zeros(len(study), bool)
    labels = np.full((len(study), len(CLASSES)), np.nan, np.float32)
    labels[found] = label_rows[order][at[found]]
    dicom = split["dicom_id"].str.strip()
    if meta_path.is_file():
        meta = read_columns(meta_path, ("dicom_id", "ViewPosition"))
        view = dicom.map(dict(zip(meta["dicom_id"].str.strip(), meta["ViewPosition"].str.strip()))).fillna("")
    else:
        view = dicom.map(lambda _: "")
    subject_text = split["subject_id"].str.strip()
    paths = ("files/p" + subject_text.str[:2] + "/p" + subject_text + "/s" + split["study_id"].str.strip() + "/" + dicom + ".jpg")
    columns = {"path": paths.to_numpy(object), "patient_id": subject, "view": view.to_numpy(object),
               "frontal": view.isin(FRONTAL_VIEWS).to_numpy(), "part": part.to_numpy(object)}
    table = assemble(paths.tolist(), columns, CLASSES, labels)
    table = select_views(table, options.views)
    table, notes = finish_split(table, f"{root} (mimic)", options)
    return DatasetTable(NAME, root, CLASSES, table, notes=(f"split: {SPLIT_FILE}; labels: {label_path.name}",) + notes)
