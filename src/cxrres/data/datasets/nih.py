"""NIH ChestX-ray14 as today: `DataRoot` (Data_Entry, BBox_List, official lists, either image layout) and
`build_split` (`chexnet` or `official`, or the user's split files) wrapped into the common form, unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrres.data.datasets.common import DatasetTable, DataOptions, assemble, no_boxes, select_views, view_keyword
from cxrres.data.labels import CLASSES
from cxrres.data.layout import BBOX_NAME, DATA_ENTRY_NAMES, DataRoot
from cxrres.data.splits import Split, build_split

NAME = "nih"
EXPECTS = "nih: Data_Entry_2017[_v2020].csv and/or images/ or images_*/images/ (ChestX-ray14)"
#: Its classes whatever its files hold (known without reading them).
FIXED_CLASSES: tuple[str, ...] = CLASSES


def detect(root: Path) -> bool:
    """Whether `root` looks like ChestX-ray14: a Data_Entry file, an images/ folder, or Kaggle's images_*/images/."""
    return (
        any((root / n).is_file() for n in DATA_ENTRY_NAMES)
        or (root / "images").is_dir()
        or any(p.is_dir() for p in root.glob("images_*/images"))
    )


def read(root: Path | DataRoot, options: DataOptions = DataOptions()) -> DatasetTable:
    """ChestX-ray14 under the split `options.split` exactly as `build_split` makes it (labels 0/1, all frontal); `root`
    may be a `DataRoot` already opened (its files then parsed and scanned once)."""
    data = root if isinstance(root, DataRoot) else DataRoot.at(root)
    split = build_split(data, options.split, options.split_dir, options.val_fraction, options.split_seed)
    return table_of(data, split, options.views)


def table_of(data: DataRoot, split: Split, views: str = "frontal") -> DatasetTable:
    """An NIH split already built (`build_split`) in the common form, restricted to `views`; the split itself kept as
    the table's split of record (its digest, its parts' official boxes)."""
    names = split.frame.index.tolist()
    found = data.images
    paths = [str(found[n].relative_to(data.root)) if n in found else f"images/{n}" for n in names]
    if data.has_data_entry:
        view = data.data_entry["view"].reindex(names).fillna("").to_numpy(object)
    else:
        view = np.full(len(names), "", object)
    columns = {
        "path": paths,
        "patient_id": split.frame["patient_id"].to_numpy(),
        "view": view,
        "frontal": np.ones(len(names), bool),
        "part": split.frame["part"].to_numpy(object),
    }
    frame = assemble(names, columns, CLASSES, split.frame[list(CLASSES)].to_numpy(np.float32))
    if view_keyword(views) is None:
        frame = select_views(frame, views)
    boxes = data.boxes if (data.root / BBOX_NAME).is_file() else no_boxes()
    notes = (f"split: {split.name}",)
    return DatasetTable(NAME, data.root, CLASSES, frame, boxes, notes=notes, split=split, implied_classes=True)
