"""What the phantom's layout writers share: image jobs rendered in parallel, deterministic gzip, label cells.

Every writer renders the same `plan` (patients, findings, images); a layout only decides the file names, the
encoding (PNG, JPEG, DICOM) and how the findings are spelled. Files are written to a temporary name and renamed.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Sequence

import cv2
import numpy as np

from cxrres.data.datasets.names import FINDINGS, finding_of
from cxrres.data.labels import BOX_CLASSES
from cxrres.data.layout import PHANTOM_MARKER
from cxrres.util.parallel import ordered_map, write_bytes_atomic, write_text_atomic
from cxrres.synthetic.images import ImageSpec, render, to_uint8
from cxrres.synthetic.lateral import render_lateral

Box = tuple[str, tuple[int, int, int, int]]
#: The phantom's air-space opacities: what its `Lung Opacity` means (CheXpert and MIMIC column, RSNA's one class).
OPACITY_FINDINGS: tuple[str, ...] = ("Consolidation", "Infiltration", "Pneumonia")
#: JPEG quality of the CheXpert and MIMIC-CXR-JPG layouts (MIMIC-CXR-JPG's own), and of RSNA's JPEG-in-DICOM.
JPEG_QUALITY = 95
#: Label noise of CheXpert-coded layouts, as probabilities: a finding mentioned uncertainly (-1.0) instead of 1.0; an
#: absent finding mentioned as uncertain (-1.0, only in images with some finding) or as negative (0.0), else blank.
P_UNCERTAIN_PRESENT, P_UNCERTAIN_ABSENT, P_NEGATIVE_ABSENT = 0.15, 0.05, 0.25
#: Share of studies that also have a lateral view (CheXpert and MIMIC layouts).
LATERAL_SHARE = 0.2


@dataclass(frozen=True)
class ImageJob:
    """One file to write: the image of `spec` (its lateral view if `lateral`) at `size_px`, encoded by `encode` from
    the rendered float image in [0, 1]."""

    spec: ImageSpec
    size_px: int
    path: str
    encode: Callable[[np.ndarray, "ImageJob"], bytes]
    lateral: bool = False
    box_classes: tuple[str, ...] = tuple(BOX_CLASSES)
    header: tuple[tuple[str, object], ...] = ()  # per-file fields for the encoder (DICOM attributes)


def encode_png(image: np.ndarray, job: ImageJob) -> bytes:
    """8-bit grey PNG, the NIH layout's settings (compression 3)."""
    ok, data = cv2.imencode(".png", to_uint8(image), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(f"{job.path}: cannot encode PNG")
    return data.tobytes()


def encode_jpeg(image: np.ndarray, job: ImageJob) -> bytes:
    """8-bit grey baseline JPEG at JPEG_QUALITY."""
    ok, data = cv2.imencode(".jpg", to_uint8(image), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"{job.path}: cannot encode JPEG")
    return data.tobytes()


def write_job(job: ImageJob) -> list[Box]:
    """Render, encode and atomically write one job's image; the true boxes of its lesions (none for a lateral)."""
    if job.lateral:
        image, boxes = render_lateral(job.spec, job.size_px), []
    else:
        image, boxes = render(job.spec, job.size_px, box_classes=job.box_classes)
    path = Path(job.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, job.encode(image, job))
    return boxes


def write_images(jobs: Sequence[ImageJob], workers: int | None, progress: bool, size_px: int) -> list[list[Box]]:
    """`write_job` over `jobs` in `workers` processes (default: every core), results in job order."""
    from tqdm import tqdm

    n_workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    out = []
    with tqdm(total=len(jobs), unit="img", desc=f"synth {size_px} px", disable=not progress) as bar:
        for boxes in ordered_map(write_job, list(jobs), n_workers, chunksize=2):
            out.append(boxes)
            bar.update(1)
    return out


def gzip_bytes(text: str) -> bytes:
    """`text` gzipped reproducibly: no file name, time stamp 0, level 9."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as handle:
        handle.write(text.encode("utf-8"))
    return buffer.getvalue()


def has_lateral(spec: ImageSpec) -> bool:
    """Whether `spec`'s study also has a lateral view (LATERAL_SHARE of studies, from the image's seed)."""
    return bool(np.random.default_rng([spec.seed, 6]).random() < LATERAL_SHARE)


def nih_finding(dataset: str, name: str) -> str | None:
    """The NIH class a class of `dataset` is (through data/datasets/names.py), or None."""
    finding = finding_of(dataset, name)
    return FINDINGS[finding].get("nih") if finding is not None else None


def chexpert_cells(
    spec: ImageSpec, dataset: str, classes: Sequence[str], stream: int = 0, binary: bool = False
) -> list[str]:
    """The label cells of one study in CheXpert coding (`1.0`, `0.0`, `-1.0`, blank) for `classes` of `dataset`.

    A class that is an NIH finding (names.py) is present when the image has it, `Lung Opacity` when it has any of
    OPACITY_FINDINGS, `No Finding` when it has none (1.0, else blank); other classes are blank. Present findings and
    absent ones are mentioned with the P_* probabilities, drawn from the image's seed and `stream` (one per labeler).
    `binary`: 1.0 / 0.0 for every class (CheXpert's radiologist-read valid.csv).
    """
    rng = np.random.default_rng([spec.seed, 7, stream])
    cells = []
    for name in classes:
        if name == "No Finding":
            present: bool | None = not spec.findings
        elif name == "Lung Opacity":
            present = any(f in spec.findings for f in OPACITY_FINDINGS)
        else:
            nih = nih_finding(dataset, name)
            present = None if nih is None else nih in spec.findings
        draw = rng.random()  # one draw per class, used or not, so a class's cell does not depend on the others
        if binary:
            cells.append("1.0" if present else "0.0")
        elif present is None or (name == "No Finding" and not present):
            cells.append("")
        elif name == "No Finding" or (present and draw >= P_UNCERTAIN_PRESENT):
            cells.append("1.0")
        elif present or (spec.findings and draw < P_UNCERTAIN_ABSENT):
            cells.append("-1.0")
        else:
            cells.append("0.0" if draw >= 1 - P_NEGATIVE_ABSENT else "")
    return cells


def csv_text(header: Sequence[str], rows: Collection[Sequence[object]]) -> str:
    """CSV text: `\\n` line ends, a final newline, a cell quoted only where it must be (a comma, quote or newline)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_phantom_marker(out: str | Path, layout: str, seed: int, size_px: int) -> None:
    """The PHANTOM_MARKER file at the phantom's root: what wrote it and with which seed and size."""
    text = (
        f"Synthetic chest radiographs written by `cxrres synth` ({layout} layout, seed {seed}, {size_px} px).\n"
        "Images, labels and boxes are generated, not clinical; see docs/phantom.md.\n"
    )
    write_text_atomic(Path(out) / PHANTOM_MARKER, text)
