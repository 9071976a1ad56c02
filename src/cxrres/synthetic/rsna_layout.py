"""The phantom as the RSNA Pneumonia Detection Challenge publishes stage 2 (`cxrres synth --layout rsna`).

Files: `stage_2_train_images/<patientId>.dcm` (8-bit MONOCHROME2 DICOM, Secondary Capture, JPEG Baseline transfer
syntax and the header fields of the real files), `stage_2_train_labels.csv` (one row per box, empty box fields when
Target is 0; sorted by patientId) and `stage_2_detailed_class_info.csv` (one row per label row). One image per
patient, as in RSNA: `--patients` defaults to (and must equal) `--images`.

Target is 1 when the image has an air-space opacity (`writing.OPACITY_FINDINGS`: consolidation, infiltration,
pneumonia). Such images are drawn with 1 to 3 opacity lesions in all (RSNA_LESIONS), kept apart so that no two boxes
touch (`images.render`: a lesion that finds no free place in SEPARATE_TRIES draws is left out, so 3 often become 2);
each row's box is a lesion's true extent in source pixels. The class file says `Lung Opacity`, `No Lung Opacity /
Not Normal` (other findings) or `Normal`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cxrres.data import rsna_labels as rsna_files
from cxrres.errors import CxrresError
from cxrres.util.parallel import write_text_atomic
from cxrres.synthetic.nih_layout import checked_plan, image_meta
from cxrres.synthetic.images import ImageSpec
from cxrres.synthetic.writing import OPACITY_FINDINGS, ImageJob, csv_text, encode_jpeg, write_images

#: Probability of 1, 2 and 3 opacity lesions in an image with Target 1 (real stage 2: 43 %, 54 %, 2 % of positive
#: images have 1, 2, 3 boxes).
RSNA_LESIONS: tuple[float, float, float] = (0.45, 0.5, 0.05)


def patient_uid(seed: int, spec: ImageSpec) -> str:
    """An RSNA-style patientId (a version-4 UUID's shape) for `spec`, reproducible from the phantom seed."""
    import uuid

    digest = bytearray(np.random.default_rng([seed, 9, spec.patient_id, spec.follow_up]).bytes(16))
    return str(uuid.UUID(bytes=bytes(digest), version=4))


def opacity_counts(spec: ImageSpec) -> tuple[tuple[str, int], ...]:
    """`ImageSpec.lesion_counts` of an RSNA image: 1-3 opacity lesions in all (RSNA_LESIONS), at least one of each
    opacity finding the image has; the first of them (in OPACITY_FINDINGS order) takes the rest."""
    present = [f for f in OPACITY_FINDINGS if f in spec.findings]
    if not present:
        return ()
    total = 1 + int(np.random.default_rng([spec.seed, 8]).choice(3, p=RSNA_LESIONS))
    counts = {f: 1 for f in present}
    counts[present[0]] += max(0, total - len(present))
    return tuple(counts.items())


def encode_dicom(image: np.ndarray, job: ImageJob) -> bytes:
    """One 8-bit grey radiograph as RSNA's DICOM files are: JPEG Baseline in a Secondary Capture file."""
    from io import BytesIO

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

    fields = dict(job.header)
    patient = str(fields["PatientID"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[patient, "sop"])
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "19010101", "000000.00", ""
    ds.Modality, ds.ConversionType, ds.ReferringPhysicianName = "CR", "WSD", ""
    ds.SeriesDescription = f"view: {fields['ViewPosition']}"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = patient, patient, ""
    ds.PatientSex, ds.PatientAge = fields["PatientSex"], f"{int(fields['PatientAge']):03d}Y"
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", fields["ViewPosition"]
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[patient, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[patient, "series"])
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.PatientOrientation = "", 1, 1, ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = image.shape
    ds.PixelSpacing = [fields["PixelSpacing"], fields["PixelSpacing"]]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    ds.PixelData = encapsulate([encode_jpeg(image, job)])
    ds["PixelData"].VR = "OB"
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _detailed_class(spec: ImageSpec, boxed: bool) -> str:
    """RSNA's class of an image: Lung Opacity (boxed), No Lung Opacity / Not Normal (other findings) or Normal."""
    if boxed:
        return rsna_files.DETAILED_CLASSES[0]
    return rsna_files.DETAILED_CLASSES[1] if spec.findings else rsna_files.DETAILED_CLASSES[2]


def write_rsna(
    out: str | Path,
    n_images: int = 1000,
    n_patients: int | None = None,
    size_px: int = 1024,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    enrich: dict[str, float] | None = None,
) -> dict:
    """The phantom as RSNA Pneumonia Detection stage 2 under `out`; returns counts (boxes over all images)."""
    out = Path(out)
    if n_patients not in (None, n_images):
        raise CxrresError(
            f"the rsna layout has one image per patient: --patients must equal --images ({n_images}) or be left out"
        )
    specs, _, _ = checked_plan(n_images, n_images, size_px, seed, enrich)
    if size_px > rsna_files.IMAGE_SIDE_PX:
        raise CxrresError(
            f"the rsna layout's images are at most {rsna_files.IMAGE_SIDE_PX} px (RSNA's size), not {size_px}"
        )
    specs = [replace(spec, lesion_counts=opacity_counts(spec)) for spec in specs]
    uids = [patient_uid(seed, spec) for spec in specs]
    spacing = round(0.143 * rsna_files.IMAGE_SIDE_PX / size_px, 6)
    jobs = []
    for spec, uid in zip(specs, uids):
        age, sex, view = image_meta(spec)
        header = (
            ("PatientID", uid),
            ("PatientSex", sex),
            ("PatientAge", age),
            ("ViewPosition", view),
            ("PixelSpacing", spacing),
        )
        jobs.append(
            ImageJob(
                spec,
                size_px,
                str(out / rsna_files.IMAGES_DIR / f"{uid}.dcm"),
                encode_dicom,
                box_classes=OPACITY_FINDINGS,
                header=header,
            )
        )
    all_boxes = write_images(jobs, workers, progress, size_px)
    labels, classes = [], []
    for uid, spec, boxes in sorted(zip(uids, specs, all_boxes), key=lambda item: item[0]):
        rows = [[uid, f"{x:.1f}", f"{y:.1f}", f"{w:.1f}", f"{h:.1f}", 1] for _, (x, y, w, h) in boxes] or [
            [uid, "", "", "", "", 0]
        ]
        labels.extend(rows)
        classes.extend([uid, _detailed_class(spec, bool(boxes))] for _ in rows)
    write_text_atomic(
        out / rsna_files.LABELS_FILE, csv_text(("patientId", "x", "y", "width", "height", "Target"), labels)
    )
    write_text_atomic(out / rsna_files.CLASS_INFO_FILE, csv_text(("patientId", "class"), classes))
    n_boxes = sum(len(b) for b in all_boxes)
    return {
        "images": len(specs),
        "patients": len(specs),
        "boxes": n_boxes,
        "boxes_in": "all images",
        "size_px": size_px,
    }
