"""PadChest (Bustos et al., 2020): `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv[.gz]`, images under
`ImageDir/ImageID` (16-bit PNGs). Accepted with or without a leading unnamed index column.

`Labels` is a Python-list string (`['pleural effusion', ' cardiomegaly']`; items are stripped). By default the
classes are the 14 NIH findings, each positive when any of its PadChest terms is listed (`NIH_TERMS`); with
`DataOptions.classes` the given PadChest terms are the classes. PadChest has no uncertain labels, and rows whose
`Labels` cell is empty or `nan` (unlabelled) are left out. No official split: test and val are carved patient-wise.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cxrres.data.datasets.common import DatasetTable, DataOptions, assemble, finish_split, read_columns, select_views
from cxrres.data.labels import CLASSES as NIH_CLASSES
from cxrres.data.paths import file_names, refuse_duplicates, relpaths
from cxrres.errors import DataFormatError

NAME = "padchest"
FILE_NAMES = (
    "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv",
    "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz",
)
REQUIRED = ("ImageID", "ImageDir", "PatientID", "Projection", "Labels")
FRONTAL_VIEWS = ("PA", "AP", "AP_horizontal")
EXPECTS = f"padchest: {FILE_NAMES[0]}[.gz] (ImageID,ImageDir,PatientID,Projection,Labels) and ImageDir/ImageID images"
#: NIH finding -> the PadChest terms that count as it (the mapping table in docs/data.md).
NIH_TERMS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        "atelectasis",
        "laminar atelectasis",
        "segmental atelectasis",
        "lobar atelectasis",
        "atelectasis basal",
        "total atelectasis",
        "round atelectasis",
    ),
    "Cardiomegaly": ("cardiomegaly",),
    "Consolidation": ("consolidation",),
    "Edema": ("pulmonary edema",),
    "Effusion": ("pleural effusion", "loculated pleural effusion", "loculated fissural effusion"),
    "Emphysema": ("emphysema",),
    "Fibrosis": ("pulmonary fibrosis",),
    "Hernia": ("hiatal hernia",),
    "Infiltration": ("infiltrates",),
    "Mass": ("mass", "pulmonary mass"),
    "Nodule": ("nodule", "multiple nodules"),
    "Pleural_Thickening": ("pleural thickening", "apical pleural thickening", "calcified pleural thickening"),
    "Pneumonia": ("pneumonia", "atypical pneumonia"),
    "Pneumothorax": ("pneumothorax", "hydropneumothorax"),
}
assert tuple(NIH_TERMS) == NIH_CLASSES
_ITEM = re.compile(r"'([^']*)'")


def _file(root: Path) -> Path | None:
    return next((root / n for n in FILE_NAMES if (root / n).is_file()), None)


def detect(root: Path) -> bool:
    """Whether `root` holds the PadChest label CSV."""
    return _file(root) is not None


def parse_label_list(path: Path, line: int, text: str) -> list[str] | None:
    """The stripped items of a `Labels` cell; None for an unlabelled row (empty or `nan`); DataFormatError else."""
    text = text.strip()
    if text in ("", "nan"):
        return None
    if not (text.startswith("[") and text.endswith("]")):
        raise DataFormatError(path, f"column 'Labels': not a list like ['a', 'b']: {text[:60]!r}", line)
    return [item.strip() for item in _ITEM.findall(text)]


def read(root: Path, options: DataOptions = DataOptions(), classes: tuple[str, ...] | None = None) -> DatasetTable:
    """PadChest in the common form, carved patient-wise: the 14 NIH-named findings, or the classes `classes` (else
    `options.classes`), each an NIH name (its PadChest terms) or a PadChest term; a term no row lists is refused."""
    path = _file(root)
    if path is None:
        raise DataFormatError(root / FILE_NAMES[0], "file not found")
    frame = read_columns(path, REQUIRED)
    classes = classes or options.classes
    terms = {name: NIH_TERMS.get(name, (name,)) for name in classes} if classes else NIH_TERMS
    lookup: dict[str, list[int]] = {}
    for j, group in enumerate(terms.values()):
        for term in group:
            lookup.setdefault(term, []).append(j)
    keep = np.zeros(len(frame), bool)
    labels = np.zeros((len(frame), len(terms)), np.float32)
    for i, (line, text) in enumerate(zip(frame.index.tolist(), frame["Labels"].tolist())):
        items = parse_label_list(path, line, text)
        if items is None:
            continue
        keep[i] = True
        for item in items:
            for j in lookup.get(item, ()):
                labels[i, j] = 1.0
    unused = [name for j, name in enumerate(terms) if classes and name not in NIH_TERMS and not labels[:, j].any()]
    if unused:
        raise DataFormatError(
            path,
            f"class {unused[0]!r}: no row's Labels lists this PadChest term (terms are as the "
            "file writes them, e.g. 'pleural effusion'; or give an NIH finding's name)",
        )
    dropped = int((~keep).sum())
    frame, labels = frame[keep], labels[keep]
    projection = frame["Projection"].str.strip()
    image_id = file_names(path, frame["ImageID"].str.strip(), "ImageID")
    image_path = relpaths(path, frame["ImageDir"].str.strip() + "/" + image_id, "ImageDir")
    columns = {
        "path": image_path.to_numpy(object),
        "patient_id": frame["PatientID"].str.strip().to_numpy(object),
        "view": projection.to_numpy(object),
        "frontal": projection.isin(FRONTAL_VIEWS).to_numpy(),
        "part": np.full(len(frame), "", object),
    }
    refuse_duplicates(path, image_id, "ImageID")
    table = assemble(image_id.tolist(), columns, tuple(terms), labels)
    table = select_views(table, options.views)
    table, notes = finish_split(table, f"{root} (padchest)", options)
    return DatasetTable(NAME, root, tuple(terms), table, notes=(f"{dropped:,} unlabelled rows left out",) + notes)
