"""Reading full-size data-set metadata into the common form (issue 14's speed targets): the real CheXpert
train.csv (223,414 rows) and PadChest CSV (160,861 rows) from ../shared, when present."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import REAL, best_of, record
from cxrres.data.datasets import ReadOptions, chexpert, open_dataset
from cxrres.data.datasets.padchest import FILE_NAMES as PADCHEST_FILES

SHARED = REAL.parent


def main() -> None:
    """Time each reader (best of 3) and append the table to RESULTS.md."""
    rows = []
    train = SHARED / "chexpert" / "train.csv.gz"
    if train.is_file():
        rows.append(("CheXpert train.csv.gz: `chexpert.read_csv` (223,414 rows, checks, labels)", best_of(lambda: chexpert.read_csv(train, "train"))))
        rows.append(("CheXpert root: `open_dataset` (read + frontal + patient-wise carve + leakage check)", best_of(lambda: open_dataset(train.parent))))
    pad = SHARED / "padchest" / PADCHEST_FILES[1]
    if pad.is_file():
        rows.append(("PadChest CSV.gz: `open_dataset` (160,861 rows, all views, carve + check)",
                     best_of(lambda: open_dataset(pad.parent, options=ReadOptions(views="all")))))
    table = "| What | Seconds (best of 3) |\n|---|---|\n" + "\n".join(f"| {what} | {sec:.2f} |" for what, sec in rows)
    record("Data sets: metadata into the common form", table,
           "Targets (issue 14): CheXpert ≤ 3 s, PadChest ≤ 5 s. Gzipped copies from ../shared/data (decompression included). "
           "Machine shared with other jobs.")


if __name__ == "__main__":
    main()
