"""Train/val/test splits (`chexnet`, `official`, or the user's files) and their leakage checks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres.data.labels import CLASSES
from cxrres.data.layout import DataRoot
from cxrres.data.metadata import patient_from_name, read_split_file
from cxrres.errors import CxrresError, SplitError

PARTS: tuple[str, ...] = ("train", "val", "test")
SPLIT_KINDS: tuple[str, ...] = ("chexnet", "official")
#: Prefix of the name of a split read from --split-dir (`dir:<folder>`), whatever --split says.
SPLIT_DIR_PREFIX = "dir:"
#: File names tried, in order, for each part inside a split directory.
PART_FILE_PATTERNS: tuple[str, ...] = ("{part}_list.txt", "{part}_official.txt", "{part}.txt")


@dataclass(frozen=True)
class Split:
    """A split: one row per image with its `part`, `patient_id` and the 14 labels (CLASSES order)."""

    name: str
    frame: pd.DataFrame  # index: image name; columns: part, patient_id, *CLASSES

    def part(self, part: str) -> pd.DataFrame:
        """Rows of one part (`train`, `val` or `test`), in file order."""
        return self.frame[self.frame["part"] == part]

    def images(self, part: str) -> list[str]:
        """Image names of one part, in file order."""
        return self.part(part).index.tolist()

    def labels(self, part: str) -> np.ndarray:
        """(N, 14) uint8 labels of one part, in CLASSES order."""
        return self.part(part)[list(CLASSES)].to_numpy(np.uint8)


def find_part_files(split_dir: str | Path) -> dict[str, Path]:
    """The train/val/test files in `split_dir` (`train_list.txt`, `train_official.txt`, `train.txt`, optionally .gz)."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise CxrresError(f"{split_dir}: split directory not found")
    files: dict[str, Path] = {}
    for part in PARTS:
        candidates = [split_dir / (p.format(part=part) + gz) for p in PART_FILE_PATTERNS for gz in ("", ".gz")]
        existing = [c for c in candidates if c.is_file()]
        if not existing:
            raise CxrresError(
                f"{split_dir}: no file for the {part} part (looked for {', '.join(c.name for c in candidates[::2])})"
            )
        files[part] = existing[0]
    return files


def bundled_chexnet_dir() -> Path:
    """The CheXNet split files shipped with cxrres (gzipped copies of arnoweng/CheXNet's label lists)."""
    return Path(str(resources.files("cxrres") / "resources" / "chexnet"))


def _patients(root: DataRoot, names: list[str], require_entry: bool) -> np.ndarray:
    """Patient IDs of `names`: from Data_Entry when present (required if `require_entry`), else from NIH names."""
    if require_entry or root.has_data_entry:
        entry = root.data_entry
        unknown = [n for n in names if n not in entry.index]
        if unknown:
            raise SplitError(
                f"{root.data_entry_path}: {len(unknown):,} split images are not in this file (first: "
                f"{', '.join(unknown[:5])}); for a data set other than ChestX-ray14, give its split with --split-dir"
            )
        return entry.loc[names, "patient_id"].to_numpy(np.int64)
    patients = [patient_from_name(n) for n in names]
    bad = [n for n, p in zip(names, patients) if p is None]
    if bad:
        raise SplitError(f"{root.root}: no Data_Entry file, and {bad[0]} is not an NIH name that encodes its patient")
    return np.asarray(patients, np.int64)


def _frame(parts: dict[str, list[str]], labels: dict[str, np.ndarray], patients: np.ndarray) -> pd.DataFrame:
    names = [n for part in PARTS for n in parts[part]]
    frame = pd.DataFrame(
        np.concatenate([labels[p] for p in PARTS]), columns=list(CLASSES), index=pd.Index(names, name="image")
    )
    frame.insert(0, "patient_id", patients)
    frame.insert(0, "part", np.repeat(PARTS, [len(parts[p]) for p in PARTS]))
    return frame


def check_split(frame: pd.DataFrame, source: str) -> None:
    """SplitError if an image is in two parts, a part is empty, or a patient's images fall in different parts."""
    duplicated = frame.index[frame.index.duplicated()].unique().tolist()
    if duplicated:
        raise SplitError(
            f"{source}: {len(duplicated):,} images appear in more than one part (first: {', '.join(duplicated[:5])})"
        )
    for part in PARTS:
        if not (frame["part"] == part).any():
            raise SplitError(f"{source}: the {part} part is empty")
    parts_per_patient = frame.groupby("patient_id")["part"].nunique()
    leaking = parts_per_patient[parts_per_patient > 1].index.tolist()
    if leaking:
        first = leaking[0]
        where = sorted(frame.loc[frame["patient_id"] == first, "part"].unique())
        raise SplitError(
            f"{source}: patient leakage: {len(leaking):,} patients have images in more than one part "
            f"(e.g. patient {first} in {' and '.join(where)})"
        )


def split_from_files(root: DataRoot, split_dir: str | Path, name: str) -> Split:
    """A split read from train/val/test files (name + 14 CheXNet-order labels, or names only -> Data_Entry labels)."""
    files = find_part_files(split_dir)
    parts: dict[str, list[str]] = {}
    file_labels: dict[str, np.ndarray | None] = {}
    for part, path in files.items():
        parts[part], file_labels[part] = read_split_file(path)
    need_entry = any(part_labels is None for part_labels in file_labels.values())
    patients = _patients(root, [n for p in PARTS for n in parts[p]], require_entry=need_entry)
    labels = {
        part: part_labels
        if part_labels is not None
        else root.data_entry.loc[parts[part], list(CLASSES)].to_numpy(np.uint8)
        for part, part_labels in file_labels.items()
    }
    frame = _frame(parts, labels, patients)
    check_split(frame, str(split_dir))
    return Split(name, frame)


def carve_validation(names: list[str], patients: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of `names` going to validation: whole patients, in a seeded hash order, until >= fraction of
    images."""
    if not 0.0 < fraction < 1.0:
        raise CxrresError(f"validation fraction must be between 0 and 1, got {fraction}")
    unique, counts = np.unique(patients, return_counts=True)
    keys = [hashlib.sha256(f"{seed}:{p}".encode()).hexdigest() for p in unique]
    order = np.argsort(keys, kind="stable")
    target = fraction * len(names)
    cumulative = np.cumsum(counts[order])
    n_val_patients = int(np.searchsorted(cumulative, target) + 1)
    val_patients = unique[order[:n_val_patients]]
    return np.isin(patients, val_patients)


def official_split(root: DataRoot, val_fraction: float = 0.1, seed: int = 0) -> Split:
    """NIH test list as test; validation carved patient-wise from train_val (see `carve_validation`)."""
    entry = root.data_entry
    train_val, test = root.train_val_list, root.test_list
    patients_tv = _patients(root, train_val, require_entry=True)
    is_val = carve_validation(train_val, patients_tv, val_fraction, seed)
    parts = {
        "train": [n for n, v in zip(train_val, is_val) if not v],
        "val": [n for n, v in zip(train_val, is_val) if v],
        "test": test,
    }
    labels = {p: entry.loc[parts[p], list(CLASSES)].to_numpy(np.uint8) for p in PARTS}
    patients = _patients(root, [n for p in PARTS for n in parts[p]], require_entry=True)
    frame = _frame(parts, labels, patients)
    check_split(frame, f"{root.root} (official split, val fraction {val_fraction}, seed {seed})")
    return Split("official", frame)


def split_dir_name(split_dir: str | Path) -> str:
    """The name of a split read from a folder given as --split-dir: `dir:<the folder as given>`."""
    return f"{SPLIT_DIR_PREFIX}{split_dir}"


def build_split(
    root: DataRoot,
    kind: str = "chexnet",
    split_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """The split `kind` for `root`: from `split_dir` if given; for `chexnet` else `root/splits/chexnet/` if present,
    else the bundled CheXNet files; for `official` else the carved official split."""
    if kind not in SPLIT_KINDS:
        raise CxrresError(f"unknown split {kind!r}; choose one of {', '.join(SPLIT_KINDS)}")
    if split_dir is not None:  # named by its folder: its files, not `kind`, make it
        return split_from_files(root, split_dir, split_dir_name(split_dir))
    if kind == "chexnet":
        own = root.root / "splits" / "chexnet"  # a data root may carry its own CheXNet-format split (the phantom does)
        return split_from_files(root, own if own.is_dir() else bundled_chexnet_dir(), kind)
    return official_split(root, val_fraction, seed)


def boxes_in_part(root: DataRoot, split: Split, part: str = "test") -> pd.DataFrame:
    """The official boxes whose image lies in `part` of `split`."""
    boxes = root.boxes
    return boxes[boxes["image"].isin(set(split.images(part)))].reset_index(drop=True)
