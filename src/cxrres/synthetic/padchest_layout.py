"""The phantom as PadChest publishes it (`cxrres synth --layout padchest`).

Files: `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv` with the published 35 columns after a leading unnamed
index column (as the copy in ../shared/data), and 16-bit grey PNGs at `ImageDir/ImageID` whose values use only the
12-bit range 0-4095 (`BitsStored_DICOM` 12), as PadChest's do. `Labels` is a Python-list string of PadChest terms:
each finding of the image under the first of its terms in `padchest.NIH_TERMS` (`['pleural effusion',
'cardiomegaly']`), `['normal']` for an image without findings. One study per image; LATERAL_SHARE of the studies also
have a lateral (`Projection` L, the study's labels, no lesions: `synthetic/lateral.py`). No official split: the
adapter carves test and val patient-wise, so the plan's parts are not written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from cxrres.data.datasets import padchest
from cxrres.util.parallel import write_text_atomic
from cxrres.synthetic.nih_layout import checked_plan, image_meta
from cxrres.synthetic.images import ImageSpec
from cxrres.synthetic.writing import ImageJob, csv_text, has_lateral, write_images

#: PadChest's columns after the unnamed index column, in the published order.
HEADER: tuple[str, ...] = (
    "ImageID",
    "ImageDir",
    "StudyDate_DICOM",
    "StudyID",
    "PatientID",
    "PatientBirth",
    "PatientSex_DICOM",
    "ViewPosition_DICOM",
    "Projection",
    "MethodProjection",
    "Pediatric",
    "Modality_DICOM",
    "Manufacturer_DICOM",
    "PhotometricInterpretation_DICOM",
    "PixelRepresentation_DICOM",
    "PixelAspectRatio_DICOM",
    "SpatialResolution_DICOM",
    "BitsStored_DICOM",
    "WindowCenter_DICOM",
    "WindowWidth_DICOM",
    "Rows_DICOM",
    "Columns_DICOM",
    "XRayTubeCurrent_DICOM",
    "Exposure_DICOM",
    "ExposureInuAs_DICOM",
    "ExposureTime",
    "RelativeXRayExposure_DICOM",
    "ReportID",
    "Report",
    "MethodLabel",
    "Labels",
    "Localizations",
    "LabelsLocalizationsBySentence",
    "labelCUIS",
    "LocalizationsCUIS",
)
#: Largest stored value of the 16-bit PNGs: 12 bits used.
STORED_MAX = 4095
_VIEW_NAMES = {"PA": "POSTEROANTERIOR", "AP": "ANTEROPOSTERIOR", "L": "LATERAL"}


def encode_png16(image: np.ndarray, job: ImageJob) -> bytes:
    """16-bit grey PNG of `image` ([0, 1]) in the 12-bit range 0..STORED_MAX."""
    ok, data = cv2.imencode(
        ".png", np.rint(np.clip(image, 0, 1) * STORED_MAX).astype(np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 3]
    )
    if not ok:
        raise OSError(f"{job.path}: cannot encode PNG")
    return data.tobytes()


def _decimal_id(seed: int, text: str, digits: int) -> str:
    """A reproducible decimal ID of `digits` digits (PadChest's long study and patient numbers)."""
    value = int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest(), 16)
    return str(10 ** (digits - 1) + value % (9 * 10 ** (digits - 1)))


def labels_cell(spec: ImageSpec) -> str:
    """The `Labels` cell of an image: the first PadChest term of each finding, or ['normal']."""
    terms = [padchest.NIH_TERMS[finding][0] for finding in spec.findings] or ["normal"]
    return "[" + ", ".join(f"'{term}'" for term in terms) + "]"


def write_padchest(
    out: str | Path,
    n_images: int = 1000,
    n_patients: int | None = None,
    size_px: int = 1024,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    enrich: dict[str, float] | None = None,
) -> dict:
    """The phantom as PadChest under `out`; returns counts."""
    out = Path(out)
    specs, _, n_patients = checked_plan(n_images, n_patients, size_px, seed, enrich)
    jobs, rows = [], []
    for spec in specs:
        study = _decimal_id(seed, f"study:{spec.name}", 38)
        patient = _decimal_id(seed, f"patient:{spec.patient_id}", 37)
        age, sex, view = image_meta(spec)
        folder = str(spec.patient_id % 55)  # PadChest's ImageDir: folders 0 to 54
        labels = labels_cell(spec)
        views = [(view, False)] + ([("L", True)] if has_lateral(spec) else [])
        for projection, lateral in views:
            suffix = hashlib.sha256(f"{seed}:{spec.name}:{projection}".encode()).hexdigest()[:6]
            image_id = f"{study}_{suffix}.png"
            jobs.append(ImageJob(spec, size_px, str(out / folder / image_id), encode_png16, lateral))
            date = 20090101 + 10_000 * (spec.patient_id % 8) + 100 * (spec.follow_up % 12)
            rows.append(
                [
                    len(rows),
                    image_id,
                    folder,
                    date,
                    study,
                    patient,
                    f"{date // 10_000 - age}.0",
                    sex,
                    _VIEW_NAMES[projection],
                    projection,
                    "Manual review of DICOM fields",
                    "No",
                    "CR",
                    "PhilipsMedicalSystems",
                    "MONOCHROME2",
                    0,
                    "['1', '1']",
                    0.143,
                    12,
                    2047.0,
                    4095.0,
                    size_px,
                    size_px,
                    "None",
                    "None",
                    "None",
                    "None",
                    "None",
                    4_000_000 + spec.patient_id * 100 + spec.follow_up,
                    " phantom .",
                    "Physician",
                    labels,
                    "[]",
                    f"[{labels}]",
                    "[]",
                    "[]",
                ]
            )
    write_images(jobs, workers, progress, size_px)
    write_text_atomic(out / padchest.FILE_NAMES[0], csv_text(("",) + HEADER, rows))
    return {"images": len(jobs), "patients": n_patients, "size_px": size_px}
