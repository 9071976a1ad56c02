"""A plain CSV: `labels.csv` at the root with an `image` column (path relative to the root) and one column per
class (1/0/-1/blank); optional `patient`, `split` (train/val/test or blank) and `view` columns.

Without `patient`, each image is its own patient. Without a test or val part, they are carved patient-wise.
A `view` column's values are matched by `--views`; images without one count as frontal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrres.data.datasets.common import (
    DatasetTable,
    DataOptions,
    assemble,
    finish_split,
    header,
    parse_labels,
    read_columns,
    select_views,
)
from cxrres.data.paths import refuse_duplicates, relpaths
from cxrres.data.splits import PARTS
from cxrres.errors import DataFormatError

NAME = "csv"
FILE_NAMES = ("labels.csv", "labels.csv.gz")
OPTIONAL = ("patient", "split", "view")
FRONTAL_VIEWS = ("", "PA", "AP", "Frontal", "FRONTAL", "AP_horizontal")
EXPECTS = "csv: labels.csv with an image column (path relative to the root), label columns, optional patient,split,view"


def _file(root: Path) -> Path | None:
    return next((root / n for n in FILE_NAMES if (root / n).is_file()), None)


def detect(root: Path) -> bool:
    """Whether `root` holds a labels.csv whose header has an `image` column. A labels.csv whose header cannot be read
    (not UTF-8, a column named twice, ...) is refused with that problem, not passed over to the NIH layout."""
    path = _file(root)
    return path is not None and "image" in header(path)


def read(root: Path, options: DataOptions = DataOptions()) -> DatasetTable:
    """The plain CSV in the common form; classes are the columns other than image/patient/split/view, in file order."""
    path = _file(root)
    if path is None:
        raise DataFormatError(root / FILE_NAMES[0], "file not found")
    classes = tuple(c for c in header(path) if c not in ("image",) + OPTIONAL)
    if not classes:
        raise DataFormatError(path, "no label columns (every column other than image, patient, split, view is a class)")
    frame = read_columns(path, ("image",) + classes, OPTIONAL)
    images = relpaths(path, frame["image"].str.strip(), "image")  # one file, one name: images/./a.png is images/a.png
    refuse_duplicates(path, images)
    split = frame["split"].str.strip().replace({"valid": "val", "validate": "val"}) if "split" in frame else None
    if split is not None and not split.isin(("",) + PARTS).all():
        line = int((~split.isin(("",) + PARTS)).idxmax())
        raise DataFormatError(path, f"column 'split': {split[line]!r} is not train, val, test or blank", line)
    labels = parse_labels(path, frame, classes)
    patient = frame["patient"].str.strip() if "patient" in frame else images
    view = frame["view"].str.strip() if "view" in frame else images.map(lambda _: "")
    n = len(frame)
    columns = {
        "path": images.to_numpy(object),
        "patient_id": patient.to_numpy(object),
        "view": view.to_numpy(object),
        "frontal": view.isin(FRONTAL_VIEWS).to_numpy(),
        "part": split.to_numpy(object) if split is not None else np.full(n, "", object),
    }
    table = assemble(images.tolist(), columns, classes, labels)
    table = select_views(table, options.views)
    table, notes = finish_split(table, str(path), options)
    return DatasetTable(NAME, root, classes, table, notes=notes)
