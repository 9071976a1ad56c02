"""Reading full-size data-set metadata into the common form (issue 14's speed targets): the real CheXpert
train.csv (223,414 rows) and PadChest CSV (160,861 rows) from ../shared, when present, and synthetic full-size
MIMIC-CXR-JPG files (377,110 image rows, 227,827 label rows; benchmarks/mimic_files.py), written once under /tmp."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import REAL, record
from benchmarks.mimic_files import FULL_IMAGES, FULL_LABELLED, FULL_STUDIES, FULL_SUBJECTS, write_mimic_files
from cxrres.data.datasets import DataOptions, chexpert, mimic, open_dataset
from cxrres.data.datasets.padchest import FILE_NAMES as PADCHEST_FILES

SHARED = REAL.parent
#: Bump when benchmarks/mimic_files.py writes different files, so an older copy under /tmp is not reused.
MIMIC_FILES_VERSION = 1


def mimic_root(n_images: int, n_studies: int, n_labelled: int, n_subjects: int) -> Path:
    """A folder under the temp directory holding the synthetic MIMIC files of these sizes (written if absent)."""
    root = (
        Path(tempfile.gettempdir())
        / f"cxrres-bench-mimic-v{MIMIC_FILES_VERSION}-{n_images}-{n_studies}-{n_labelled}-{n_subjects}"
    )
    files = (mimic.SPLIT_FILE, mimic.METADATA_FILE, mimic.LABEL_FILES["chexpert"])
    if not all((root / name).is_file() for name in files):
        write_mimic_files(root, n_images, n_studies, n_labelled, n_subjects)
    return root


def timings(func, repeats: int) -> tuple[float, float]:
    """(fastest, median) wall time of `repeats` calls, seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    """Time each reader and append the table to RESULTS.md (unless --no-record)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=("all", "chexpert", "padchest", "mimic"), default="all")
    parser.add_argument("--repeats", type=int, default=3, help="calls per reader (fastest and median reported)")
    parser.add_argument("--mimic-images", type=int, default=FULL_IMAGES)
    parser.add_argument("--mimic-studies", type=int, default=FULL_STUDIES)
    parser.add_argument("--mimic-labelled", type=int, default=FULL_LABELLED)
    parser.add_argument("--mimic-subjects", type=int, default=FULL_SUBJECTS)
    parser.add_argument("--no-record", action="store_true", help="print the table; do not append it to RESULTS.md")
    args = parser.parse_args()
    load = os.getloadavg()
    rows = []
    train = SHARED / "chexpert" / "train.csv.gz"
    if args.only in ("all", "chexpert") and train.is_file():
        rows.append(
            (
                "CheXpert train.csv.gz: `chexpert.read_csv` (223,414 rows, checks, labels)",
                timings(lambda: chexpert.read_csv(train, "train"), args.repeats),
            )
        )
        rows.append(
            (
                "CheXpert root: `open_dataset` (read + frontal + patient-wise carve + leakage check)",
                timings(lambda: open_dataset(train.parent), args.repeats),
            )
        )
    pad = SHARED / "padchest" / PADCHEST_FILES[1]
    if args.only in ("all", "padchest") and pad.is_file():
        rows.append(
            (
                "PadChest CSV.gz: `open_dataset` (160,861 rows, all views, carve + check)",
                timings(lambda: open_dataset(pad.parent, options=DataOptions(views="all")), args.repeats),
            )
        )
    if args.only in ("all", "mimic"):
        root = mimic_root(args.mimic_images, args.mimic_studies, args.mimic_labelled, args.mimic_subjects)
        sizes = f"{args.mimic_images:,} image rows, {args.mimic_labelled:,} label rows"
        rows.append(
            (
                f"MIMIC-CXR-JPG (synthetic): `open_dataset` ({sizes}; frontal, official split + check)",
                timings(lambda: open_dataset(root), args.repeats),
            )
        )
        rows.append(
            (
                f"MIMIC-CXR-JPG (synthetic): `open_dataset`, `--views all` ({sizes})",
                timings(lambda: open_dataset(root, options=DataOptions(views="all")), args.repeats),
            )
        )
    table = (
        f"| What | Seconds, fastest of {args.repeats} | Seconds, median of {args.repeats} |\n|---|---|---|\n"
        + "\n".join(f"| {what} | {fast:.2f} | {median:.2f} |" for what, (fast, median) in rows)
    )
    notes = (
        "Targets (issue 14): CheXpert ≤ 3 s, PadChest ≤ 5 s, MIMIC ≤ 5 s. CheXpert and PadChest: gzipped copies from "
        "../shared/data; MIMIC: gzipped synthetic files of the published sizes (benchmarks/mimic_files.py); "
        f"decompression included. Machine shared with other jobs; load average (1, 5, 15 min) at the start: "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}."
    )
    if args.no_record:
        print(table + "\n\n" + notes)
    else:
        record("Data sets: metadata into the common form", table, notes)


if __name__ == "__main__":
    main()
