"""Data-set adapters behind one registry: each reads a data set's files as published into the common form
(`DatasetTable`); the data set of a root is detected from its files, or forced by name (`--dataset`)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from cxrres.data.datasets import chexpert, csvfile, mimic, nih, padchest, rsna, vindr
from cxrres.data.datasets.common import LABELERS, UNCERTAIN_POLICIES, DatasetTable, ReadOptions, apply_uncertain
from cxrres.errors import CxrresError

#: Adapters by name, in detection order (the most specific files first; NIH, which also takes a bare images/, last).
ADAPTERS: dict[str, ModuleType] = {m.NAME: m for m in (chexpert, mimic, padchest, rsna, vindr, csvfile, nih)}
DATASETS: tuple[str, ...] = tuple(ADAPTERS)


def detect_dataset(root: str | Path) -> str:
    """The name of the first adapter that recognises `root`; one line listing what each expects if none does."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CxrresError(f"{root}: data directory not found")
    for name, adapter in ADAPTERS.items():
        if adapter.detect(root):
            return name
    expected = "; ".join(adapter.EXPECTS for adapter in ADAPTERS.values())
    raise CxrresError(f"{root}: no known data set found (expected {expected}); or name one with --dataset")


def check_options(name: str, options: ReadOptions) -> None:
    """One-line CxrresError for a read option the data set `name` does not have: a labeler other than the default
    anywhere but MIMIC-CXR-JPG."""
    if options.labeler != LABELERS[0] and name != mimic.NAME:
        raise CxrresError(f"--labeler {options.labeler}: only MIMIC-CXR-JPG has a choice of labeler (its "
                          f"{mimic.LABEL_FILES[options.labeler]}); this data root is read as {name}")


def open_dataset(root: str | Path, dataset: str | None = None, options: ReadOptions = ReadOptions()) -> DatasetTable:
    """Read the data set at `root` (detected, or the adapter `dataset`) into the common form, split and checked."""
    root = Path(root).expanduser().resolve()
    name = dataset or detect_dataset(root)
    if name not in ADAPTERS:
        raise CxrresError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if not root.is_dir():
        raise CxrresError(f"{root}: data directory not found")
    check_options(name, options)
    return ADAPTERS[name].read(root, options)


def listed_images(root: str | Path, dataset: str) -> tuple[list[str], list[Path], list[str]]:
    """(names, paths, missing names) of every image the data set lists, all views, in name order; a name is the
    image's path relative to the root (not NIH, whose cache keys are file names: see `cache.Sources.scan`)."""
    table = open_dataset(root, dataset, ReadOptions(views="all"))
    order = table.frame.sort_index()
    paths = [table.root / p for p in order["path"].tolist()]
    present = [p.is_file() for p in paths]
    names = order.index.tolist()
    return ([n for n, ok in zip(names, present) if ok], [p for p, ok in zip(paths, present) if ok],
            [n for n, ok in zip(names, present) if not ok])


__all__ = ["ADAPTERS", "DATASETS", "DatasetTable", "LABELERS", "ReadOptions", "UNCERTAIN_POLICIES", "apply_uncertain",
           "check_options", "detect_dataset", "listed_images", "open_dataset"]
