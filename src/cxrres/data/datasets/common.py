"""The common form every data-set adapter returns, and what adapters share: CSV reading with checks, label codes,
views, the patient-wise carve of missing split parts, and the uncertain-label policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import hashlib

import numpy as np
import pandas as pd

from cxrres.data import strictcsv
from cxrres.data.splits import PARTS, Split, carve_validation, check_split
from cxrres.errors import CxrresError, DataFormatError

#: Columns of `DatasetTable.frame` before the class columns.
INFO_COLUMNS: tuple[str, ...] = ("path", "patient_id", "view", "frontal", "part")
#: How a label cell may be written: positive, negative, uncertain; a blank cell (not mentioned) becomes NaN.
LABEL_CODES: dict[str, float] = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "-1": -1.0, "-1.0": -1.0, "": np.nan}
#: `--uncertain` policies (the CheXpert paper's U-Ignore, U-Zeros, U-Ones).
UNCERTAIN_POLICIES: tuple[str, ...] = ("ignore", "zeros", "ones")
#: Default fraction of images carved out as the test part where a data set publishes no test split.
TEST_FRACTION = 0.2
#: `--labeler`: which of MIMIC-CXR-JPG's label files is read (mimic-cxr-2.0.0-<labeler>.csv.gz); the first is the
#: default.
LABELERS: tuple[str, ...] = ("chexpert", "negbio")


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """How a data root is read, every data setting in one place: the data set (auto: detected), its views, the split
    (kind, files, carve fractions and seed), MIMIC's labeler, the reader rule (VinDr) and whether bad rows are skipped.
    Each field but `test_fraction` and `classes` is a flag of the commands that read data (`config.DATA_SETTINGS`)."""

    dataset: str = "auto"  # an adapter's name (`datasets.DATASETS`), or auto: detected from the root's files
    views: str = "frontal"  # frontal, all, or a comma-separated list of view codes (PA,AP,...)
    split: str = "chexnet"  # NIH only: chexnet or official
    split_dir: str | None = None  # NIH only: train/val/test files
    val_fraction: float = 0.1
    split_seed: int = 0
    labeler: str = LABELERS[0]  # MIMIC-CXR-JPG only: chexpert or negbio
    readers: str = "any"  # data sets read by several readers (VinDr): a finding is positive for any or most of them
    skip_bad: bool = False  # bad box rows (RSNA, VinDr): leave their images out and list them, instead of refusing
    test_fraction: float = TEST_FRACTION  # only where the data set has no test part of its own
    classes: tuple[str, ...] | None = None  # PadChest only: its classes (NIH names or PadChest terms); None: the 14 NIH


def no_boxes() -> pd.DataFrame:
    """An empty box table (`image,label,x,y,w,h`) for data sets without boxes."""
    return pd.DataFrame(
        {
            "image": pd.Series(dtype=object),
            "label": pd.Series(dtype=object),
            **{c: pd.Series(dtype=np.float64) for c in "xywh"},
        }
    )


@dataclass(frozen=True)
class DatasetTable:
    """A data set in the common form: one row per image, split into parts, with its own classes and boxes.

    `frame` is indexed by image name (unique; its path relative to the root where names repeat) and has the columns
    `path` (relative to `root`), `patient_id`, `view` (the data set's code: PA, AP, Lateral, ...), `frontal` (bool),
    `part` (train/val/test), then one float32 column per class: 1 positive, 0 negative, -1 uncertain, NaN blank.
    `boxes` has `image,label,x,y,w,h` in the image's own pixels (possibly no rows); `source_px` is the (width,
    height) of every source frame in pixels where the data set fixes it (None where sizes vary or are unknown).

    `split` is the split of record where it is more than `frame` (NIH: `build_split`'s, over every image before views
    are selected, labels 0/1): its digest identifies the runs, and describe, the report's data section and the
    published reference read it; None where `frame` is the split. `implied_classes`: its classes are every run's
    default (NIH's 14), so a run on it records no class names.
    """

    dataset: str
    root: Path
    classes: tuple[str, ...]
    frame: pd.DataFrame
    boxes: pd.DataFrame = field(default_factory=no_boxes)
    notes: tuple[str, ...] = ()  # how the split was made, one line each
    source_px: tuple[int, int] | None = None  # (width, height) of every image, pixels, when fixed
    skipped: tuple[str, ...] = ()  # bad metadata rows left out under `skip_bad`, one 'file:line: problem' each
    split: Split | None = None  # the split of record where it is more than `frame` (NIH)
    implied_classes: bool = False  # a run on it names no classes (NIH's 14 are the default)

    def part(self, part: str) -> pd.DataFrame:
        """Rows of one part, in file order."""
        return self.frame[self.frame["part"] == part]

    def images(self, part: str) -> list[str]:
        """Image names of one part, in file order."""
        return self.part(part).index.tolist()

    def labels(self, part: str) -> np.ndarray:
        """(N, classes) float32 raw labels of one part: 1, 0, -1 (uncertain) or NaN (blank)."""
        return self.part(part)[list(self.classes)].to_numpy(np.float32)

    def boxes_in(self, part: str) -> pd.DataFrame:
        """The boxes (`image,label,x,y,w,h`, source px) whose image lies in `part`, in table order."""
        return self.boxes[self.boxes["image"].isin(set(self.images(part)))].reset_index(drop=True)

    def digest(self) -> str:
        """sha256 of the split of record's (image, part, labels) table: two runs on the same split have the same digest
        (for NIH the digest of its `Split`, as before data sets other than NIH were read)."""
        frame = self.split.frame if self.split is not None else self.frame
        return hashlib.sha256(frame.drop(columns=["patient_id"]).to_csv().encode()).hexdigest()


def refuse_or_skip(path: Path, problems: pd.Series, skip_bad: bool) -> tuple[str, ...]:
    """The bad rows of one file as 'file:line: problem' lines when `skip_bad`; else one DataFormatError at the first.

    `problems` is indexed by file line, '' where a row is good."""
    bad = problems[problems != ""]
    if bad.empty:
        return ()
    if not skip_bad:
        more = f" (and {len(bad) - 1} more bad rows)" if len(bad) > 1 else ""
        raise DataFormatError(path, f"{bad.iloc[0]}{more}; --skip-bad leaves such rows' images out", int(bad.index[0]))
    return tuple(f"{path}:{int(line)}: {text}" for line, text in bad.items())


def skipped_note(skipped: Sequence[str]) -> tuple[str, ...]:
    """The table note on rows left out under --skip-bad: how many and the first (nothing when none)."""
    if not skipped:
        return ()
    return (f"--skip-bad: {len(skipped)} bad rows skipped, their images left out (first: {skipped[0]})",)


def apply_uncertain(labels: np.ndarray, policy: str = "ignore") -> tuple[np.ndarray, np.ndarray]:
    """(targets, mask) from raw labels (1/0/-1/NaN): blank -> 0; uncertain -> masked out (ignore), 0 or 1.

    `targets` is float32 0/1 of the same shape; `mask` is True where the label counts in loss and AUC.
    """
    if policy not in UNCERTAIN_POLICIES:
        raise CxrresError(f"unknown uncertain-label policy {policy!r}; choose one of {', '.join(UNCERTAIN_POLICIES)}")
    labels = np.asarray(labels, np.float32)
    uncertain = labels == -1.0
    targets = np.where(labels == 1.0, 1.0, 0.0).astype(np.float32)
    if policy == "ones":
        targets[uncertain] = 1.0
    mask = ~uncertain if policy == "ignore" else np.ones(labels.shape, bool)
    return targets, mask


def header(path: Path) -> list[str]:
    """The header fields of a CSV (gzip read transparently), checked by `strictcsv.header`: UTF-8, every field
    named (but a first index column), no name twice; DataFormatError naming the file and line otherwise."""
    return strictcsv.header(path)


def read_columns(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> pd.DataFrame:
    """The `required` (and present `optional`) columns of a CSV as strings ('' for blank), indexed by file line.

    The file is read strictly (`strictcsv.read_table`: UTF-8, a header of distinct names, every row as many fields
    as the header); a missing required column, or any breach, is one DataFormatError naming the file (and line).
    """
    present = header(path)
    missing = [c for c in required if c not in present]
    if missing:
        raise DataFormatError(
            path,
            f"missing column {missing[0]!r} (the header has {len(present)} columns: "
            f"{', '.join(present[:8])}{', ...' if len(present) > 8 else ''})",
        )
    wanted = list(required) + [c for c in optional if c in present]
    _, frame = strictcsv.read_table(path, wanted)
    frame = frame[wanted]
    blank = (frame == "").all(axis=1)
    return frame[~blank]


def parse_labels(path: Path, frame: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """(N, classes) float32 of label cells 1/0/-1 (also 1.0, 0.0, -1.0) or blank (NaN); DataFormatError at file:line."""
    out = np.empty((len(frame), len(classes)), np.float32)
    for j, name in enumerate(classes):
        rows, distinct = pd.factorize(frame[name], use_na_sentinel=False)  # a few distinct cells: strip and map those
        cells = pd.Index(distinct).str.strip()
        codes = cells.map(LABEL_CODES).to_numpy(np.float32)
        bad = (np.isnan(codes) & np.asarray(cells != "", bool))[rows]
        if bad.any():
            first = int(np.argmax(bad))
            raise DataFormatError(
                path, f"column {name!r}: label {cells[rows[first]]!r} is not 1, 0, -1 or blank", int(frame.index[first])
            )
        out[:, j] = codes[rows]
    return out


def view_keyword(views: str) -> str | None:
    """`frontal` or `all` when `views` is one of them in any case (CheXpert's own word `Frontal` too), else None."""
    key = views.strip().lower()
    return key if key in ("frontal", "all") else None


def select_views(frame: pd.DataFrame, views: str) -> pd.DataFrame:
    """Rows whose view is wanted: `frontal` (default), `all` (either in any case), or a comma-separated list of the
    data set's view codes; one line listing this data set's codes when one is not among them."""
    keyword = view_keyword(views)
    if keyword == "all":
        return frame
    if keyword == "frontal":
        return frame[frame["frontal"].to_numpy(bool)]
    wanted = {v.strip() for v in views.split(",") if v.strip()}
    if not wanted:
        raise CxrresError(f"--views: give frontal, all or a comma-separated list of view codes, not {views!r}")
    counts = frame["view"].astype(str).value_counts()
    unknown = sorted(wanted - set(counts.index))
    if unknown:
        codes = ", ".join(f"{code or '(none)'} {n:,}" for code, n in counts.items())
        raise CxrresError(
            f"--views {views}: no image of this data set has the view {unknown[0]!r}; its views (images): "
            f"{codes or 'none'}; or frontal (any case), all"
        )
    return frame[frame["view"].isin(wanted)]


def finish_split(
    frame: pd.DataFrame, source: str, options: DataOptions, unit: str = "patient"
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Fill the parts a data set does not publish (seeded, patient-wise), check for leakage; (frame, notes). `unit`
    names what a `patient_id` is in the notes ("image" where a data set has no patient ids and uses the image's).

    Rows with an empty `part` are unassigned. With no test rows, whole patients of the unassigned and train rows
    become test until `test_fraction` of them; with no val rows, whole patients of train become val until
    `val_fraction` of it (the order of `sha256(f"{seed}:{patient}")`, as `carve_validation`); the rest is train.
    """
    frame = frame.copy()
    part = frame["part"].to_numpy(object).copy()
    notes = []
    patients = frame["patient_id"].to_numpy()
    if patients.dtype == object:  # fixed-width strings: np.isin on object arrays is quadratic
        patients = patients.astype(str)
    open_rows = np.isin(part, ["", "train"])
    if not (part == "test").any():
        carved = carve_validation(
            frame.index[open_rows].tolist(), patients[open_rows], options.test_fraction, options.split_seed
        )
        part[np.flatnonzero(open_rows)[carved]] = "test"
        notes.append(f"test: {options.test_fraction:g} of the images carved {unit}-wise (seed {options.split_seed})")
    part[part == ""] = "train"
    if not (part == "val").any():
        train_rows = part == "train"
        carved = carve_validation(
            frame.index[train_rows].tolist(), patients[train_rows], options.val_fraction, options.split_seed
        )
        part[np.flatnonzero(train_rows)[carved]] = "val"
        notes.append(f"val: {options.val_fraction:g} of train carved {unit}-wise (seed {options.split_seed})")
    frame["part"] = part
    order = {p: i for i, p in enumerate(PARTS)}
    frame = frame.iloc[np.argsort(frame["part"].map(order).to_numpy(), kind="stable")]
    check_split(frame, source)
    return frame, tuple(notes)


def assemble(
    index: Sequence[str], columns: dict[str, object], classes: Sequence[str], labels: np.ndarray
) -> pd.DataFrame:
    """A common-form frame from its info columns (INFO_COLUMNS) and an (N, classes) label array."""
    frame = pd.DataFrame({name: columns[name] for name in INFO_COLUMNS}, index=pd.Index(list(index), name="image"))
    label_frame = pd.DataFrame(labels.astype(np.float32), columns=list(classes), index=frame.index)
    return pd.concat([frame, label_frame], axis=1)
