"""Patient ids from DICOM headers (VinDr-CXR's Kaggle layout): `read_headers` on N generated DICOMs (a 2,048 x 2,500
16-bit frame each would be 10 MB; here 64 x 48 px with a header of ~40 elements, since only the header is read), first
in a fresh process state and then again (remembered per process), and `open_dataset` of a VinBigData root of them."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.common import record
from cxrres.data import dicom_headers
from cxrres.data.datasets import open_dataset


def write_files(root: Path, n: int) -> list[Path]:
    """`n` DICOMs under root/train/ (3 images per PatientID, header with the usual DX elements) and a train.csv."""
    from pydicom import uid
    from pydicom.dataset import FileDataset, FileMetaDataset

    (root / "train").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        meta = FileMetaDataset()
        meta.TransferSyntaxUID, meta.MediaStorageSOPClassUID = uid.ExplicitVRLittleEndian, "1.2.840.10008.5.1.4.1.1.1.1"
        meta.MediaStorageSOPInstanceUID = uid.generate_uid()
        ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (
            meta.MediaStorageSOPClassUID,
            meta.MediaStorageSOPInstanceUID,
            uid.generate_uid(),
            uid.generate_uid(),
        )
        ds.PatientID, ds.PatientName, ds.PatientSex, ds.PatientAge = f"P{i // 3:06d}", "Anon", "F", "061Y"
        ds.Modality, ds.BodyPartExamined, ds.ViewPosition, ds.Manufacturer = "DX", "CHEST", "PA", "Vendor"
        ds.StudyDate, ds.StudyTime, ds.InstitutionName, ds.PixelSpacing = "20200101", "120000", "Hospital", [0.15, 0.15]
        ds.WindowCenter, ds.WindowWidth, ds.RescaleIntercept, ds.RescaleSlope = 2048, 4096, 0, 1
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 64, 48, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.zeros((64, 48), np.uint16).tobytes()
        path = root / "train" / f"img{i:06d}.dicom"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    head = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
    (root / "train.csv").write_text(head + "".join(f"img{i:06d},No finding,14,R1,,,,\n" for i in range(n)))
    return paths


def main() -> None:
    """Time the header reads and append the table to RESULTS.md."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--root", default="/tmp/cxrres-bench-dicom-headers")
    args = parser.parse_args()
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    paths = write_files(root, args.images)
    index = [p.stem for p in paths]
    rows = []
    for attempt in range(3):
        dicom_headers._SEEN.clear()  # noqa: SLF001 - a fresh process's state
        start = time.perf_counter()
        dicom_headers.read_headers(paths, index)
        rows.append(("first read (`read_headers`, nothing remembered)", time.perf_counter() - start))
    start = time.perf_counter()
    dicom_headers.read_headers(paths, index)
    again = time.perf_counter() - start
    dicom_headers._SEEN.clear()  # noqa: SLF001
    start = time.perf_counter()
    table = open_dataset(root)
    whole = time.perf_counter() - start
    assert table.frame["patient_id"].nunique() == (args.images + 2) // 3
    first = min(seconds for _, seconds in rows)
    n = args.images
    table_md = (
        "| What | Seconds | ms per file |\n|---|---|---|\n"
        f"| `read_headers`, first read (best of 3) | {first:.2f} | {1e3 * first / n:.3f} |\n"
        f"| `read_headers` again in the same process (remembered) | {again:.2f} | {1e3 * again / n:.3f} |\n"
        f"| `open_dataset` of the VinBigData root (headers + train.csv + patient-wise carve) | {whole:.2f} | "
        f"{1e3 * whole / n:.3f} |"
    )
    record(
        f"VinDr-CXR patient ids from DICOM headers: {n:,} files",
        table_md,
        f"Files in the page cache (written just before). At {1e3 * first / n:.2f} ms per file the 15,000 VinDr-CXR "
        f"images take ≈ {15 * first / n * 1e3:.0f} s per first read; a command that reads the table twice (train: "
        "the split, then the cache's image list) opens them once. Machine shared with other jobs.",
    )


if __name__ == "__main__":
    main()
