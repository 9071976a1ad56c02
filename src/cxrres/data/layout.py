"""Where things are in a ChestX-ray14-style data root (NIH flat layout or Kaggle's `images_0XX/images/`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import pandas as pd

from cxrres.data.metadata import read_bbox_list, read_data_entry, read_image_list
from cxrres.errors import CxrresError, MissingImagesError

DATA_ENTRY_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
BBOX_NAME = "BBox_List_2017.csv"
TRAIN_VAL_NAME = "train_val_list.txt"
TEST_NAME = "test_list.txt"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
#: The file `cxrres synth` writes at a phantom's root (any layout): its images are synthetic, its labels exact.
PHANTOM_MARKER = "PHANTOM.txt"


def is_phantom(root: str | Path | None) -> bool:
    """Whether `root` is a phantom written by `cxrres synth` (its PHANTOM_MARKER is there)."""
    return bool(root) and (Path(root) / PHANTOM_MARKER).is_file()


def find_images(root: str | Path) -> dict[str, Path]:
    """Map image name -> path for `root/images/*` (NIH) and `root/images_*/images/*` (Kaggle) together.

    A name found twice is an error (the two layouts must not both hold the same image). Anything named like an
    image is included, a directory too, so that reading it fails with a message naming it (`read_grey`) rather
    than the image silently counting as missing.
    """
    root = Path(root)
    folders = [root / "images"] + sorted(p / "images" for p in root.glob("images_*") if p.is_dir())
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.exists():  # a broken link counts as missing
                continue
            if path.name in found:
                raise CxrresError(f"{path}: image {path.name} also found at {found[path.name]}")
            found[path.name] = path
    return found


def describe_missing(missing: list[str], total: int, show: int = 5) -> str:
    """One line: how many of `total` listed images are missing, and the first few names."""
    first = ", ".join(missing[:show]) + (", ..." if len(missing) > show else "")
    return f"{len(missing):,} of {total:,} listed images are missing on disk (first: {first})"


#: Which data set a folder holds (its name, or None): set by the data-set registry (`data.datasets`) when it is
#: imported, so that this layer below it can say what a mistyped `--data FILE`'s folder holds without importing it.
folder_detector: Callable[[Path], str | None] | None = None


def not_a_data_dir(path: Path) -> str:
    """Why `path` is no data directory, one line: absent, or a file (with the data set its folder holds, when the
    registry recognises one: e.g. `--data .../Data_Entry_2017.csv`)."""
    if not path.exists():
        return f"{path}: data directory not found"
    if not path.is_file():
        return f"{path}: not a directory"
    found = folder_detector(path.parent) if folder_detector is not None else None
    hint = f"; its folder holds a data set ({found}): use --data {path.parent}" if found else ""
    return f"{path}: is a file, not a data directory{hint}"


@dataclass(frozen=True)
class DataRoot:
    """A ChestX-ray14-style data directory: metadata files at the top, images in either layout."""

    root: Path

    def __post_init__(self) -> None:
        if not self.root.is_dir():
            raise CxrresError(not_a_data_dir(self.root))

    @classmethod
    def at(cls, root: str | Path) -> "DataRoot":
        """Open the data root at `root` (checks it exists)."""
        return cls(Path(root).expanduser().resolve())

    def file(self, name: str) -> Path:
        """Path of a metadata file at the root; an error naming it if absent."""
        path = self.root / name
        if not path.is_file():
            raise CxrresError(f"{path}: required file not found in the data directory")
        return path

    @property
    def has_data_entry(self) -> bool:
        """Whether a Data_Entry file is present."""
        return any((self.root / name).is_file() for name in DATA_ENTRY_NAMES)

    @cached_property
    def data_entry_path(self) -> Path:
        """Data_Entry_2017_v2020.csv if present, else Data_Entry_2017.csv."""
        for name in DATA_ENTRY_NAMES:
            if (self.root / name).is_file():
                return self.root / name
        raise CxrresError(f"{self.root}: neither {' nor '.join(DATA_ENTRY_NAMES)} found in the data directory")

    @cached_property
    def data_entry(self) -> pd.DataFrame:
        """The parsed Data_Entry file (see `read_data_entry`)."""
        return read_data_entry(self.data_entry_path)

    @cached_property
    def boxes(self) -> pd.DataFrame:
        """The parsed BBox_List_2017.csv (see `read_bbox_list`)."""
        return read_bbox_list(self.file(BBOX_NAME))

    @cached_property
    def train_val_list(self) -> list[str]:
        """Names in the official train_val_list.txt."""
        return read_image_list(self.file(TRAIN_VAL_NAME))

    @cached_property
    def test_list(self) -> list[str]:
        """Names in the official test_list.txt."""
        return read_image_list(self.file(TEST_NAME))

    @cached_property
    def images(self) -> dict[str, Path]:
        """Image name -> path for every image file on disk (either layout)."""
        return find_images(self.root)

    def locate(self, names: list[str]) -> tuple[list[Path], list[str]]:
        """Paths of the `names` found on disk (in order) and the names that are missing."""
        images = self.images
        found = [images[name] for name in names if name in images]
        missing = [name for name in names if name not in images]
        return found, missing

    def require_images(self, names: list[str]) -> list[Path]:
        """Paths of all `names`; MissingImagesError (count + first names) if any is absent."""
        found, missing = self.locate(names)
        if missing:
            raise MissingImagesError(f"{self.root}: {describe_missing(missing, len(names))}")
        return found
