"""Synthetic MIMIC-CXR-JPG 2.0.0 metadata at full size, for timing the reader (no images): the split, metadata and
CheXpert label files, gzipped, with MIMIC-style IDs and columns.

Sizes of the published release: 377,110 image rows (split, metadata), 227,835 studies of which 227,827 have a label
row, 65,379 subjects. What is made up here (assumptions, not measurements of the real files): IDs drawn at random in
MIMIC's ranges (subject 1xxxxxxx, study 5xxxxxxx, dicom_id five dash-separated groups of 8 hex digits), every subject
at least one study and every study at least one image, the rest spread uniformly; the official parts by subject with
about 0.8 % validate and 1.4 % test images; a view mix near the published one (AP 39 %, PA 25.5 %, LATERAL 22 %,
LL 9.3 %, blank 4.2 %, a few rare codes); each label cell blank with p 0.75, else 1.0 / 0.0 / -1.0 (0.5 / 0.3 / 0.2).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres.data.datasets import mimic

FULL_IMAGES, FULL_STUDIES, FULL_LABELLED, FULL_SUBJECTS = 377_110, 227_835, 227_827, 65_379
#: View codes and their weights (the published mix, roughly; the rare codes share the rest).
VIEWS = {
    "AP": 147_173,
    "PA": 96_161,
    "LATERAL": 82_852,
    "LL": 35_133,
    "": 15_769,
    "AP AXIAL": 6,
    "PA LLD": 4,
    "XTABLE LATERAL": 4,
    "LAO": 3,
    "RAO": 2,
    "SWIMMERS": 1,
    "LPO": 1,
    "AP LLD": 1,
}
META_HEADER = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)


def _spread(rng: np.random.Generator, n_items: int, n_groups: int) -> np.ndarray:
    """Group of each of `n_items` (sorted): every group gets one, the rest fall uniformly at random."""
    return np.sort(np.concatenate([np.arange(n_groups), rng.integers(0, n_groups, n_items - n_groups)]))


def _write(path: Path, frame: pd.DataFrame) -> None:
    """`frame` as a gzipped CSV, written to a temporary name first and then renamed."""
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", compresslevel=6, newline="") as handle:
        frame.to_csv(handle, index=False)
    tmp.replace(path)


def write_mimic_files(
    root: Path,
    n_images: int = FULL_IMAGES,
    n_studies: int = FULL_STUDIES,
    n_labelled: int = FULL_LABELLED,
    n_subjects: int = FULL_SUBJECTS,
    seed: int = 0,
) -> Path:
    """Write the three gzipped MIMIC-CXR-JPG metadata files under `root` (made if needed); returns `root`."""
    if not n_subjects <= n_studies <= n_images or n_labelled > n_studies:
        raise ValueError("need subjects <= studies <= images and labelled studies <= studies")
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    subjects = np.sort(rng.choice(10_000_000, n_subjects, replace=False)) + 10_000_000
    studies = rng.choice(10_000_000, n_studies, replace=False) + 50_000_000
    study_subject = subjects[_spread(rng, n_studies, n_subjects)]
    image_study = _spread(rng, n_images, n_studies)
    image_subject, image_study_id = study_subject[image_study], studies[image_study]
    hexes = rng.integers(0, 2**32, (n_images, 5), dtype=np.uint64)
    dicom = ["-".join(f"{v:08x}" for v in row) for row in hexes.tolist()]
    draw = rng.random(n_subjects)  # official parts by subject
    subject_part = np.where(draw < 0.008, "validate", np.where(draw < 0.022, "test", "train"))
    part = subject_part[np.searchsorted(subjects, image_subject)]
    _write(
        root / mimic.SPLIT_FILE,
        pd.DataFrame({"dicom_id": dicom, "study_id": image_study_id, "subject_id": image_subject, "split": part}),
    )
    codes, weights = list(VIEWS), np.array(list(VIEWS.values()), float)
    view = np.asarray(codes, object)[rng.choice(len(codes), n_images, p=weights / weights.sum())]
    date = (
        rng.integers(2110, 2210, n_images) * 10_000
        + rng.integers(1, 13, n_images) * 100
        + rng.integers(1, 29, n_images)
    )
    meta = pd.DataFrame(
        {
            "dicom_id": dicom,
            "subject_id": image_subject,
            "study_id": image_study_id,
            "PerformedProcedureDescription": "CHEST (PA AND LAT)",
            "ViewPosition": view,
            "Rows": rng.choice([3056, 2544, 2021, 2539], n_images),
            "Columns": rng.choice([2544, 3056, 2021, 3050], n_images),
            "StudyDate": date,
            "StudyTime": np.round(rng.random(n_images) * 235_959, 3),
            "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
            "ViewCodeSequence_CodeMeaning": "postero-anterior",
            "PatientOrientationCodeSequence_CodeMeaning": "Erect",
        }
    )
    _write(root / mimic.METADATA_FILE, meta[list(META_HEADER)])
    labelled = np.sort(rng.choice(n_studies, n_labelled, replace=False))
    cells = np.asarray(["", "1.0", "0.0", "-1.0"], object)
    labels = cells[rng.choice(4, (n_labelled, len(mimic.CLASSES)), p=[0.75, 0.125, 0.075, 0.05])]
    frame = pd.DataFrame(labels, columns=list(mimic.CLASSES))
    frame.insert(0, "study_id", studies[labelled])
    frame.insert(0, "subject_id", study_subject[labelled])
    _write(root / mimic.LABEL_FILES["chexpert"], frame)
    return root
