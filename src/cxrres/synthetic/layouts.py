"""The phantom in every published layout (`cxrres synth --layout`): one writer per layout name in `LAYOUTS`.

Each writer takes the arguments of `synthesize` (the `nih` writer) and writes the same `plan` — patients, their
images and findings, the train/val/test parts — as the data set of that name publishes its files, so that
`cxrres.data.datasets.detect_dataset` names the layout and every command runs on it without `--dataset`:

- `nih`: ChestX-ray14 (`dataset.synthesize`; see docs/phantom.md).
- `chexpert`: CheXpert-v1.0-small (`train.csv`, `valid.csv` = the test patients, JPEGs; a share of studies with a
  lateral view; CheXpert-coded labels with uncertain and blank cells, valid.csv read 1.0 / 0.0 as published).
- `mimic`: MIMIC-CXR-JPG 2.0.0 (split, chexpert, negbio and metadata `.csv.gz`, JPEGs under `files/`; the plan's
  parts as the official split; laterals as for CheXpert).
- `csv`: the plain `labels.csv` (image, patient, split, view, the 14 NIH classes 0/1) over the NIH PNGs.
- `rsna`: RSNA Pneumonia Detection stage 2 (`rsna_layout`: DICOM, several opacity boxes per image).
- `padchest`: PadChest (`padchest_layout`: 16-bit PNGs in a 12-bit range, `Labels` as list strings, laterals).

Class names: a CheXpert/MIMIC class is the NIH finding names.py maps it to (`writing.chexpert_cells`); `Lung Opacity`
is any of `writing.OPACITY_FINDINGS`; classes with no NIH counterpart are blank. Same arguments -> identical bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from cxrres.data.datasets import chexpert, csvfile, mimic
from cxrres.data.labels import CLASSES
from cxrres.errors import CxrresError
from cxrres.util.parallel import write_bytes_atomic, write_text_atomic
from cxrres.synthetic.nih_layout import checked_plan, image_meta, synthesize
from cxrres.synthetic.images import ImageSpec
from cxrres.synthetic.padchest_layout import write_padchest
from cxrres.synthetic.rsna_layout import write_rsna
from cxrres.synthetic.writing import (
    ImageJob,
    write_phantom_marker,
    chexpert_cells,
    csv_text,
    encode_jpeg,
    encode_png,
    gzip_bytes,
    has_lateral,
    write_images,
)

#: The folder name CheXpert's `Path` column starts with (the small, 8-bit JPEG release).
CHEXPERT_FOLDER = "CheXpert-v1.0-small"
#: MIMIC-CXR-JPG's metadata columns, in the published order.
MIMIC_METADATA_HEADER = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
_MIMIC_VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}
_MIMIC_PART = {"train": "train", "val": "validate", "test": "test"}


def write_chexpert(
    out: str | Path,
    n_images: int = 1000,
    n_patients: int | None = None,
    size_px: int = 1024,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    enrich: dict[str, float] | None = None,
) -> dict:
    """The phantom as CheXpert-v1.0-small under `out` (the folder holding train.csv); returns counts."""
    out = Path(out)
    specs, parts, n_patients = checked_plan(n_images, n_patients, size_px, seed, enrich)
    if n_patients > 99_999:
        raise CxrresError(f"the chexpert layout numbers patients with 5 digits: at most 99,999, not {n_patients:,}")
    jobs, rows = [], {"train": [], "valid": []}
    for spec in specs:
        folder = "valid" if parts[spec.patient_id] == "test" else "train"
        study = f"{folder}/patient{spec.patient_id:05d}/study{spec.follow_up + 1}"
        age, sex, view = image_meta(spec)
        cells = chexpert_cells(spec, chexpert.NAME, chexpert.CLASSES, binary=folder == "valid")
        views = [("view1_frontal.jpg", "Frontal", view, False)]
        if has_lateral(spec):
            views.append(("view2_lateral.jpg", "Lateral", "", True))
        for file, side, ap_pa, lateral in views:
            jobs.append(ImageJob(spec, size_px, str(out / study / file), encode_jpeg, lateral))
            rows[folder].append(
                [f"{CHEXPERT_FOLDER}/{study}/{file}", {"M": "Male", "F": "Female"}[sex], age, side, ap_pa, *cells]
            )
    write_images(jobs, workers, progress, size_px)
    for folder, name in (("train", chexpert.TRAIN_NAMES[0]), ("valid", chexpert.VALID_NAMES[0])):
        write_text_atomic(out / name, csv_text(chexpert.INFO + chexpert.CLASSES, rows[folder]))
    return {"images": len(jobs), "patients": n_patients, "size_px": size_px}


def _hex_id(seed: int, name: str, groups: tuple[int, ...]) -> str:
    """A reproducible hexadecimal ID (groups of the given lengths joined by '-') for image `name` of phantom `seed`."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()
    cuts = [sum(groups[:i]) for i in range(len(groups) + 1)]
    return "-".join(digest[a:b] for a, b in zip(cuts, cuts[1:]))


def mimic_ids(spec: ImageSpec, index: int) -> tuple[int, int]:
    """(subject_id, study_id) of the `index`-th image of the plan: 8-digit IDs in MIMIC's ranges (1xxxxxxx and
    5xxxxxxx), spread over the p10-p19 folders; distinct for distinct patients and images (a unit modulo 10^7)."""
    return 10_000_000 + spec.patient_id * 7_919_993 % 10_000_000, 50_000_000 + (index + 1) * 7_919_993 % 10_000_000


def write_mimic(
    out: str | Path,
    n_images: int = 1000,
    n_patients: int | None = None,
    size_px: int = 1024,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    enrich: dict[str, float] | None = None,
) -> dict:
    """The phantom as MIMIC-CXR-JPG 2.0.0 under `out`; each image is one study; returns counts."""
    out = Path(out)
    specs, parts, n_patients = checked_plan(n_images, n_patients, size_px, seed, enrich)
    if n_images > 9_999_999:
        raise CxrresError(f"the mimic layout has at most 9,999,999 studies, not {n_images:,}")
    jobs, split, metadata, labels = [], [], [], {name: [] for name in mimic.LABEL_FILES}
    for index, spec in enumerate(specs):
        subject, study = mimic_ids(spec, index)
        _, _, view = image_meta(spec)
        views = [(view, False)] + ([("LATERAL", True)] if has_lateral(spec) else [])
        for position, lateral in views:
            dicom = _hex_id(seed, spec.name + ("/lateral" if lateral else ""), (8, 8, 8, 8, 8))
            path = out / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
            jobs.append(ImageJob(spec, size_px, str(path), encode_jpeg, lateral))
            split.append([dicom, study, subject, _MIMIC_PART[parts[spec.patient_id]]])
            date = 21000101 + 10_000 * (spec.patient_id % 80) + 100 * (spec.follow_up % 12)
            described = "CHEST (PA AND LAT)" if len(views) > 1 else f"CHEST ({view})"
            metadata.append(
                [
                    dicom,
                    subject,
                    study,
                    described,
                    position,
                    size_px,
                    size_px,
                    date,
                    f"{(index * 37) % 24:02d}{(index * 11) % 60:02d}00.000",
                    described,
                    _MIMIC_VIEW_MEANING[position],
                    "Erect",
                ]
            )
        for stream, labeler in enumerate(mimic.LABEL_FILES):
            labels[labeler].append([subject, study, *chexpert_cells(spec, mimic.NAME, mimic.CLASSES, stream)])
    write_images(jobs, workers, progress, size_px)
    write_bytes_atomic(
        out / mimic.SPLIT_FILE, gzip_bytes(csv_text(("dicom_id", "study_id", "subject_id", "split"), split))
    )
    write_bytes_atomic(out / mimic.METADATA_FILE, gzip_bytes(csv_text(MIMIC_METADATA_HEADER, metadata)))
    for labeler, file in mimic.LABEL_FILES.items():
        write_bytes_atomic(
            out / file, gzip_bytes(csv_text(("subject_id", "study_id") + mimic.CLASSES, labels[labeler]))
        )
    return {"images": len(jobs), "patients": n_patients, "size_px": size_px}


def write_csv(
    out: str | Path,
    n_images: int = 1000,
    n_patients: int | None = None,
    size_px: int = 1024,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    enrich: dict[str, float] | None = None,
) -> dict:
    """The phantom as a plain `labels.csv` (image, patient, split, view, NIH classes 0/1) over the NIH PNGs."""
    out = Path(out)
    specs, parts, n_patients = checked_plan(n_images, n_patients, size_px, seed, enrich)
    jobs, rows = [], []
    for spec in specs:
        image = f"images/{spec.name}"
        jobs.append(ImageJob(spec, size_px, str(out / image), encode_png))
        rows.append(
            [
                image,
                spec.patient_id,
                parts[spec.patient_id],
                image_meta(spec)[2],
                *(int(c in spec.findings) for c in CLASSES),
            ]
        )
    write_images(jobs, workers, progress, size_px)
    write_text_atomic(out / csvfile.FILE_NAMES[0], csv_text(("image", "patient", "split", "view") + CLASSES, rows))
    return {"images": len(jobs), "patients": n_patients, "size_px": size_px}


#: Layout name -> writer(out, n_images, n_patients, size_px, seed, workers, progress, enrich) -> counts.
LAYOUTS: dict[str, Callable[..., dict]] = {
    "nih": synthesize,
    "chexpert": write_chexpert,
    "mimic": write_mimic,
    "csv": write_csv,
    "rsna": write_rsna,
    "padchest": write_padchest,
}


def synthesize_layout(layout: str, out: str | Path, **kwargs) -> dict:
    """Write the phantom in `layout` (a key of LAYOUTS) under `out`; `kwargs` as for `synthesize`; returns counts."""
    if layout not in LAYOUTS:
        raise CxrresError(f"unknown phantom layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    counts = LAYOUTS[layout](out, **kwargs)
    if layout != "nih":  # synthesize writes its own
        write_phantom_marker(out, layout, kwargs.get("seed", 0), counts["size_px"])
    return counts


def summary_line(layout: str, out: str | Path, counts: dict) -> str:
    """One line saying what `synthesize_layout` wrote (the NIH layout's line as it always was)."""
    where = "" if layout == "nih" else f" ({layout} layout)"
    boxes = f", {counts['boxes']:,} boxes in {counts.get('boxes_in', 'the test part')}" if "boxes" in counts else ""
    return (
        f"phantom {out}{where}: {counts['images']:,} images of {counts['size_px']} px from {counts['patients']:,} "
        f"patients{boxes}"
    )
