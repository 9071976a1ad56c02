"""A few header fields of many DICOM files, read fast (no pixel data), and the patient ids they give a data set.

Only `PatientID`, `Rows` and `Columns` are parsed (`pydicom.dcmread(stop_before_pixels=True, specific_tags=...)`):
0.26 ms per file on this project's 2-core machine for 2,000 generated files in the page cache (≈ 4 s for VinDr-CXR's
15,000; benchmarks/dicom_headers.py, RESULTS.md). A file's fields are remembered in the process by (path, size, mtime),
so a data set read twice in one command (the split, then the cache's image list) opens its files once.

Patient ids (`patients_from_headers`): a data set whose metadata has none (VinDr-CXR's Kaggle `train.csv`) is carved
patient-wise when at least `MIN_SHARE_WITH_ID` (99%) of its images have a non-empty PatientID and no PatientID is a
placeholder (shared by more than `PLACEHOLDER_SHARE` of the images and more than `PLACEHOLDER_MIN` images); each image
without one is then its own patient. Otherwise every image is its own patient (image-wise carve).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

#: The fields read from each header.
TAGS: tuple[str, ...] = ("PatientID", "Rows", "Columns")
#: Share of a data set's images that must carry a PatientID for a patient-wise carve.
MIN_SHARE_WITH_ID = 0.99
#: A PatientID on more than this share of the images, and on more than PLACEHOLDER_MIN images, is not a patient's.
PLACEHOLDER_SHARE, PLACEHOLDER_MIN = 0.1, 20

#: (path, size, mtime_ns) -> (PatientID, Rows, Columns) of files read in this process.
_SEEN: dict[tuple[str, int, int], tuple[str, int, int]] = {}


def _read_one(path: Path) -> tuple[str, int, int]:
    """(PatientID or '', Rows or 0, Columns or 0) of one file; all unknown when it is absent or not readable DICOM
    (`prepare` reports unreadable images; the metadata stays readable without them)."""
    try:
        stat = os.stat(path)
    except OSError:
        return "", 0, 0
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SEEN:
        import pydicom

        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=list(TAGS))
            fields = (
                str(ds.get("PatientID", "") or "").strip(),
                int(ds.get("Rows", 0) or 0),
                int(ds.get("Columns", 0) or 0),
            )
        except Exception:  # noqa: BLE001 - any unreadable header means "unknown" here, never a failed read
            fields = ("", 0, 0)
        _SEEN[key] = fields
    return _SEEN[key]


def read_headers(paths: Sequence[Path], index: Sequence[str]) -> pd.DataFrame:
    """`patient_id` ('' when unknown), `rows` and `columns` (px, 0 when unknown) of each file, indexed by `index`."""
    values = [_read_one(Path(p)) for p in paths]
    return pd.DataFrame(
        {"patient_id": [v[0] for v in values], "rows": [v[1] for v in values], "columns": [v[2] for v in values]},
        index=pd.Index(list(index)),
    )


def patients_from_headers(images: Sequence[str], header_ids: Sequence[str]) -> tuple[np.ndarray | None, str]:
    """(patient per image, a note saying how): the headers' PatientIDs when the rule of the module docstring holds
    (an image without one is its own patient, its image id), else None (the caller carves image-wise) and why."""
    images = np.asarray(images, dtype=object)
    ids = np.asarray(header_ids, dtype=object)
    n = len(images)
    has = ids != ""
    n_with = int(has.sum())
    if n_with == 0:
        return None, "no PatientID in the DICOM headers (images absent or ids blank)"
    if n_with < math.ceil(MIN_SHARE_WITH_ID * n):
        return None, (
            f"only {n_with:,} of {n:,} images have a DICOM PatientID (a patient-wise carve needs "
            f"{MIN_SHARE_WITH_ID:.0%})"
        )
    counts = pd.Series(ids[has]).value_counts()
    if counts.iloc[0] > max(PLACEHOLDER_MIN, PLACEHOLDER_SHARE * n):
        return None, (
            f"DICOM PatientID {counts.index[0]!r} is on {int(counts.iloc[0]):,} of {n:,} images "
            "(a placeholder, not a patient)"
        )
    patients = np.where(has, ids, images)
    alone = f"; {n - n_with:,} without one are each their own patient" if n_with < n else ""
    return patients, f"patients from DICOM PatientID ({n_with:,} of {n:,} images{alone})"
