"""RSNA Pneumonia Detection Challenge (stage 2, Kaggle): `stage_2_train_labels.csv` (or `.csv.zip`) as the common form.

One image per patient, `stage_2_train_images/<patientId>.dcm` (1024 x 1024 px, all frontal); one class, "Lung
Opacity" (1 when the patient has a box, else 0); boxes `image,label,x,y,w,h` in source pixels, several per image.
The stage-2 test images carry no labels, so test and val are carved patient-wise (seeded) from the labelled images.
The view (AP/PA) comes from `stage_2_train_images_dicom_headers.csv[.gz]` (`PatientID,ViewPosition`) when present.
A bad label row is one error naming file and line (`data/rsna.py`), or under `options.skip_bad` its patient is left
out and the row listed in `DatasetTable.skipped`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrres.data import rsna_labels as labels_reader
from cxrres.data.datasets.common import (
    DatasetTable,
    DataOptions,
    assemble,
    finish_split,
    read_columns,
    select_views,
    skipped_note,
)

NAME = "rsna"
EXPECTS = "rsna: stage_2_train_labels.csv[.zip] (patientId,x,y,width,height,Target)"
CLASSES: tuple[str, ...] = (labels_reader.FINDING,)
#: Source frame (width, height) of every RSNA stage-2 image, pixels.
SOURCE_PX: tuple[int, int] = (labels_reader.IMAGE_SIDE_PX, labels_reader.IMAGE_SIDE_PX)
HEADERS_NAMES: tuple[str, ...] = ("stage_2_train_images_dicom_headers.csv", "stage_2_train_images_dicom_headers.csv.gz")


def detect(root: Path) -> bool:
    """Whether `root` holds the stage-2 label file (`stage_2_train_labels.csv`, or the `.csv.zip` Kaggle serves)."""
    return labels_reader.find_file(root, labels_reader.LABELS_FILE) is not None


def _views(root: Path, patients: np.ndarray) -> np.ndarray:
    """ViewPosition per patient from the DICOM header table when present ('' where unknown or without the file)."""
    path = next((root / n for n in HEADERS_NAMES if (root / n).is_file()), None)
    if path is None:
        return np.full(len(patients), "", object)
    headers = read_columns(path, ("PatientID", "ViewPosition"))
    view = headers.drop_duplicates("PatientID").set_index("PatientID")["ViewPosition"]
    return view.reindex(patients).fillna("").to_numpy(object)


def read(root: Path, options: DataOptions = DataOptions()) -> DatasetTable:
    """The RSNA root in the common form: every labelled patient, test and val carved patient-wise (seeded)."""
    found = labels_reader.read_rsna_root(root, options.skip_bad)
    images = found.images
    patients = images["patient_id"].to_numpy(str)
    names = images["image"].tolist()
    columns = {
        "path": [f"{labels_reader.IMAGES_DIR}/{n}" for n in names],
        "patient_id": patients,
        "view": _views(root, patients),
        "frontal": np.ones(len(names), bool),
        "part": np.full(len(names), "", object),
    }
    frame = assemble(names, columns, CLASSES, images[[labels_reader.FINDING]].to_numpy(np.float32))
    frame = select_views(frame, options.views)
    frame, notes = finish_split(frame, f"{root} (rsna)", options)
    boxes = found.boxes[found.boxes["image"].isin(frame.index)].reset_index(drop=True)
    notes = (
        ("no labelled test part published (stage-2 test images have no labels)",) + skipped_note(found.problems) + notes
    )
    return DatasetTable(NAME, root, CLASSES, frame, boxes, notes=notes, source_px=SOURCE_PX, skipped=found.problems)
