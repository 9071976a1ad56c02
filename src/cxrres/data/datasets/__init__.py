"""Data-set adapters behind one registry: each reads a data set's files as published into the common form
(`DatasetTable`); the data set of a root is detected from its files, or forced by name (`--dataset`)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from cxrres.data.datasets import chexpert, csvfile, mimic, nih, padchest, rsna, vindr
from cxrres.data.datasets.common import LABELERS, UNCERTAIN_POLICIES, DatasetTable, DataOptions, apply_uncertain
from cxrres.data import layout
from cxrres.data.paths import resolve_images
from cxrres.errors import CxrresError

#: Adapters by name, in detection order (the most specific files first; NIH, which also takes a bare images/, last).
ADAPTERS: dict[str, ModuleType] = {m.NAME: m for m in (chexpert, mimic, padchest, rsna, vindr, csvfile, nih)}
DATASETS: tuple[str, ...] = tuple(ADAPTERS)
#: `--readers`: a finding is positive when any reader marks it, or most of them (data sets with several readers).
READER_RULES: tuple[str, ...] = vindr.READER_RULES


def folder_data_set(folder: Path) -> str | None:
    """The name of the data set `folder` holds, or None (the registry's answer to `layout.folder_detector`)."""
    return next((name for name, adapter in ADAPTERS.items() if adapter.detect(folder)), None)


layout.folder_detector = folder_data_set
not_a_data_dir = layout.not_a_data_dir


def check_readers(dataset: str, readers: str) -> None:
    """One line refusing a reader rule other than `any` on a data set without per-reader labels."""
    if readers not in READER_RULES:
        raise CxrresError(f"unknown reader rule {readers!r}; choose one of {', '.join(READER_RULES)}")
    if readers != "any" and readers not in getattr(ADAPTERS.get(dataset), "READER_RULES", ("any",)):
        having = ", ".join(n for n, a in ADAPTERS.items() if hasattr(a, "READER_RULES"))
        raise CxrresError(
            f"--readers {readers}: the {dataset} data set has one label per image, not one per reader "
            f"(data sets with readers: {having})"
        )


#: How deep below a data root without a known data set `detect_dataset` looks for one (folders), and how many entries of
#: one folder it reads at most (an images folder holds 100,000 files).
BELOW_DEPTH, BELOW_ENTRIES = 2, 4096


def _subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of `folder`, sorted, from at most BELOW_ENTRIES of its entries."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for count, entry in enumerate(entries):
                if count >= BELOW_ENTRIES:
                    break
                if not entry.name.startswith(".") and entry.is_dir():
                    found.append(Path(entry.path))
    except OSError:
        return []
    return sorted(found)


def found_below(root: Path) -> tuple[Path, str] | None:
    """The first folder one or two levels below `root` (nearest first, then by name) that an adapter recognises, and
    its data set; None if there is none."""
    level = [root]
    for _ in range(BELOW_DEPTH):
        level = [sub for folder in level for sub in _subfolders(folder)]
        for folder in level:
            name = next((n for n, adapter in ADAPTERS.items() if adapter.detect(folder)), None)
            if name:
                return folder, name
    return None


def marker_file(folder: Path, dataset: str) -> str | None:
    """The name of a file in `folder` that its data set's EXPECTS names (train.csv, Data_Entry_2017.csv...), if any."""
    expects = ADAPTERS[dataset].EXPECTS.lower().replace("[_v2020]", "")
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    return next((n for n in names if n.lower() in expects or n.lower().replace("_v2020", "") in expects), None)


def detect_dataset(root: str | Path) -> str:
    """The name of the first adapter that recognises `root`; one line pointing at a data set one or two folders below
    it, else listing what each adapter expects."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CxrresError(not_a_data_dir(root))
    for name, adapter in ADAPTERS.items():
        if adapter.detect(root):
            return name
    below = found_below(root)
    if below is not None:
        folder, name = below
        marker = marker_file(folder, name)
        what = f"{folder.relative_to(root) / marker}" if marker else f"a {name} data set in {folder.relative_to(root)}/"
        raise CxrresError(f"{root}: no data set here, but found {what} below it ({name}): use --data {folder}")
    expected = "; ".join(adapter.EXPECTS for adapter in ADAPTERS.values())
    raise CxrresError(f"{root}: no known data set found (expected {expected}); or name one with --dataset")


def check_options(name: str, options: DataOptions) -> None:
    """One-line CxrresError for a read option the data set `name` does not have: a labeler other than the default
    anywhere but MIMIC-CXR-JPG, a reader rule other than `any` on a data set without readers."""
    if options.labeler != LABELERS[0] and name != mimic.NAME:
        raise CxrresError(
            f"--labeler {options.labeler}: only MIMIC-CXR-JPG has a choice of labeler (its "
            f"{mimic.LABEL_FILES[options.labeler]}); this data root is read as {name}"
        )
    check_readers(name, options.readers)


def open_dataset(root: str | Path, dataset: str | None = None, options: DataOptions = DataOptions()) -> DatasetTable:
    """Read the data set at `root` (detected, or the adapter `dataset`) into the common form, split and checked."""
    root = Path(root).expanduser().resolve()
    name = dataset or detect_dataset(root)
    if name not in ADAPTERS:
        raise CxrresError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if not root.is_dir():
        raise CxrresError(not_a_data_dir(root))
    check_options(name, options)
    return ADAPTERS[name].read(root, options)


def dataset_classes(
    root: str | Path, dataset: str | None = None, options: DataOptions = DataOptions()
) -> tuple[str, ...]:
    """The classes of the data set at `root` (detected, or `dataset`): an adapter's FIXED_CLASSES without reading its
    metadata (NIH's 14), else its table's."""
    name = dataset or detect_dataset(root)
    fixed = getattr(ADAPTERS.get(name), "FIXED_CLASSES", None)
    return tuple(fixed) if fixed is not None else open_dataset(root, name, options).classes


def listed_images(
    root: str | Path, dataset: str, skip_bad: bool = False
) -> tuple[list[str], list[Path], list[str], tuple[str, ...]]:
    """(names, paths, missing names, skipped metadata rows) of every image the data set lists, all views, in name
    order (with `skip_bad`, not the images of bad metadata rows, which are listed); a name is the table's image name
    (NIH's cache keys are file names: see `cache.Sources.scan`)."""
    table = open_dataset(root, dataset, DataOptions(views="all", skip_bad=skip_bad))
    order = table.frame.sort_index()
    paths = [table.root / p for p in order["path"].tolist()]
    names = order.index.tolist()
    present = resolve_images(table.root, names, paths).present  # links followed; one file under two names refused
    return (
        [n for n, ok in zip(names, present) if ok],
        [p for p, ok in zip(paths, present) if ok],
        [n for n, ok in zip(names, present) if not ok],
        table.skipped,
    )


__all__ = [
    "ADAPTERS",
    "DATASETS",
    "DatasetTable",
    "LABELERS",
    "READER_RULES",
    "DataOptions",
    "UNCERTAIN_POLICIES",
    "apply_uncertain",
    "check_options",
    "check_readers",
    "dataset_classes",
    "detect_dataset",
    "listed_images",
    "open_dataset",
]
