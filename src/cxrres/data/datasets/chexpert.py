"""CheXpert-v1.0 and CheXpert-v1.0-small: `train.csv` and `valid.csv` as published (Irvin et al., 2019).

The root is the folder holding the CSV files (`CheXpert-v1.0-small/`). `Path` is relative to its parent
(`CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`), so its first component is dropped: image
names and paths are relative to the root (`train/patient00001/study1/view1_frontal.jpg`). `valid.csv` is the test
part; validation is carved patient-wise from train (and, without `valid.csv`, test too).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

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
from cxrres.errors import DataFormatError

NAME = "chexpert"
#: The 14 observations in the files' column order.
CLASSES: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
INFO: tuple[str, ...] = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
TRAIN_NAMES = ("train.csv", "train.csv.gz")
VALID_NAMES = ("valid.csv", "valid.csv.gz")
EXPECTS = "chexpert: train.csv (Path,Sex,Age,Frontal/Lateral,AP/PA + 14 observations) [+ valid.csv]"
_PATIENT = re.compile(r"/patient(\d+)/")


def _first(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_file()), None)


def detect(root: Path) -> bool:
    """Whether `root` holds a CheXpert train.csv (its header starts with CheXpert's five info columns)."""
    path = _first(root, TRAIN_NAMES)
    if path is None:
        return False
    return tuple(header(path)[:5]) == INFO  # an unreadable train.csv is refused with its own error, not skipped


def read_csv(path: str | Path, part: str = "") -> tuple[list[str], dict[str, object], np.ndarray]:
    """One CheXpert CSV: (image names relative to the root, info columns, (N, 14) labels 1/0/-1/NaN).

    Checks: the five info and 14 label columns present, label cells 1/0/-1/blank, `Path` of the form
    `FOLDER/.../patientNNNNN/...` (normalised: `a/./b` is `a/b`) and listed once, `Frontal/Lateral` Frontal or
    Lateral; each error names file and line. `columns["line"]` holds each row's file line.
    """
    path = Path(path)
    frame = read_columns(path, INFO + CLASSES)
    paths = relpaths(path, frame["Path"], "Path")  # normalised: one file has one name (a/./b and a//b are a/b)
    slash = paths.str.find("/")
    patient = paths.str.extract(_PATIENT, expand=False)
    bad = (slash <= 0) | patient.isna()
    if bad.any():
        line = int(bad.idxmax())
        raise DataFormatError(path, f"column 'Path': not FOLDER/.../patientNNNNN/... : {paths[line]!r}", line)
    side = frame["Frontal/Lateral"]
    bad = ~side.isin(["Frontal", "Lateral"])
    if bad.any():
        line = int(bad.idxmax())
        raise DataFormatError(path, f"column 'Frontal/Lateral': {side[line]!r} is neither Frontal nor Lateral", line)
    labels = parse_labels(path, frame, CLASSES)
    names = [p[i + 1 :] for p, i in zip(paths.tolist(), slash.tolist())]
    refuse_duplicates(path, pd.Series(names, index=frame.index))
    frontal = (side == "Frontal").to_numpy()
    view = np.where(frame["AP/PA"].to_numpy(object) != "", frame["AP/PA"].to_numpy(object), side.to_numpy(object))
    columns = {
        "path": names,
        "patient_id": patient.astype(np.int64).to_numpy(),
        "view": view,
        "frontal": frontal,
        "part": np.full(len(names), part, object),
        "line": frame.index.to_numpy(),
    }  # file lines (not a column)
    return names, columns, labels


def read(root: Path, options: DataOptions = DataOptions()) -> DatasetTable:
    """The CheXpert root in the common form: valid.csv as test, val carved patient-wise from train."""
    train_path = _first(root, TRAIN_NAMES)
    if train_path is None:
        raise DataFormatError(root / TRAIN_NAMES[0], "file not found")
    pieces = [read_csv(train_path, "train")]
    valid_path = _first(root, VALID_NAMES)
    if valid_path is not None:
        pieces.append(read_csv(valid_path, "test"))
    names = [n for names, _, _ in pieces for n in names]
    if len(pieces) == 2:  # an image in train.csv and valid.csv: refused at its valid.csv line
        again = pd.Series(pieces[1][0], index=pieces[1][1]["line"]).isin(set(pieces[0][0]))
        if again.any():
            line = int(again.idxmax())
            raise DataFormatError(
                valid_path, f"image {pieces[1][0][int(again.argmax())]!r} is also in {train_path.name}", line
            )
    columns = {k: np.concatenate([np.asarray(c[k]) for _, c, _ in pieces]) for k in pieces[0][1]}
    frame = assemble(names, columns, CLASSES, np.concatenate([labels for _, _, labels in pieces]))
    frame = select_views(frame, options.views)
    frame, notes = finish_split(frame, f"{root} (chexpert)", options)
    if valid_path is not None:
        notes = (f"test: {valid_path.name}",) + notes
    return DatasetTable(NAME, root, CLASSES, frame, notes=notes)
