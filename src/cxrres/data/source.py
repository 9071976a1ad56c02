"""What a run reads, built once: a data root (metadata parsed once), one split of it, and its prepared cache.

A study builds one `DataSource` for all its resolutions and hands it to every train and localize step, so the
sources are scanned and Data_Entry is parsed once per study, not once per step (as torchvision's classification
reference builds its datasets once in `load_data`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from cxrres.data.cache import PrepareReport, ResolutionCache, prepare_cache
from cxrres.data.datasets import DataOptions, DatasetTable, check_options, detect_dataset, nih, open_dataset
from cxrres.data.layout import DataRoot
from cxrres.errors import CxrresError


def read_table(root: DataRoot, options: DataOptions) -> DatasetTable:
    """The data set at `root` (detected, or `options.dataset`) read under `options` into the common form, without its
    images (NIH through `root` itself, so that its files are parsed and scanned once for the table and the cache)."""
    dataset = detect_dataset(root.root) if options.dataset == "auto" else options.dataset
    check_options(dataset, options)
    if dataset == nih.NAME:
        return nih.read(root, options)
    return open_dataset(root.root, dataset, options)


def open_table(data: str | Path, options: DataOptions) -> DatasetTable:
    """The data set at `data` in the common form under `options`, from its metadata alone (no cache)."""
    return read_table(DataRoot.at(data), options)


@dataclass
class DataSource:
    """A data root read as one data set (`table`, split into parts), and its resolution cache, prepared for some
    resolutions (`prepared`; None for a source read from the metadata alone, `DataSource.read`)."""

    root: DataRoot
    options: DataOptions
    table: DatasetTable
    prepared: PrepareReport | None
    _opened: dict[int, ResolutionCache] = field(default_factory=dict, repr=False)

    @classmethod
    def prepare(
        cls,
        data: str | Path | DataRoot,
        options: DataOptions,
        resolutions_px: Iterable[int],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        table: DatasetTable | None = None,
    ) -> "DataSource":
        """Open the root as its data set, build the split, and build or reuse the cache at every resolution (pixels).
        `table`: the root read under `options` (`read_table`) where the caller has it already."""
        root = data if isinstance(data, DataRoot) else DataRoot.at(data)
        table = table if table is not None else read_table(root, options)
        report = prepare_cache(
            root, resolutions_px, cache_dir, skip_bad=options.skip_bad, progress=progress, dataset=table.dataset
        )
        return cls(root, options, table, report)

    @classmethod
    def read(cls, data: str | Path | DataRoot, options: DataOptions) -> "DataSource":
        """The root read as its data set under `options` from its metadata alone: no cache prepared or opened."""
        root = data if isinstance(data, DataRoot) else DataRoot.at(data)
        return cls(root, options, read_table(root, options), None)

    def table_for(self, classes: Sequence[str]) -> DatasetTable:
        """The table with every one of `classes` among its classes: `table` itself when it has them; for PadChest, whose
        classes may be any of its terms besides the 14 NIH-named findings, the same images and parts read again with
        `classes` as its classes (the carve depends on the patients only)."""
        if self.dataset != "padchest" or all(c in self.table.classes for c in classes):
            return self.table
        table = open_dataset(self.root.root, self.dataset, dataclasses.replace(self.options, classes=tuple(classes)))
        if not table.frame.index.equals(self.table.frame.index) or not table.frame["part"].equals(
            self.table.frame["part"]
        ):
            raise CxrresError(
                f"{self.root.root}: reading PadChest with the classes {', '.join(classes)} changed its split"
            )
        return table

    @property
    def dataset(self) -> str:
        """The data set's adapter name (nih, chexpert, ...)."""
        return self.table.dataset

    @property
    def resolutions_px(self) -> tuple[int, ...]:
        """The resolutions (pixels) its cache is prepared at (none when read from the metadata alone)."""
        return self.prepared.resolutions_px if self.prepared is not None else ()

    @property
    def cache_dir(self) -> Path:
        """The cache directory."""
        if self.prepared is None:
            raise CxrresError(f"{self.root.root}: read from its metadata alone, without a cache")
        return self.prepared.cache_dir

    def reads(self, data: str | Path, options: DataOptions) -> bool:
        """Whether this source is `data` read under `options` (an `auto` data set matches the detected one)."""
        same = dataclasses.replace(options, dataset=self.options.dataset) == self.options
        return (
            Path(data).expanduser().resolve() == self.root.root
            and same
            and options.dataset in ("auto", self.dataset, self.options.dataset)
        )

    def serves(self, data: str | Path, options: DataOptions, resolution_px: int) -> bool:
        """Whether a run on `data` read under `options` at `resolution_px` can use this source as it is."""
        return self.reads(data, options) and resolution_px in self.resolutions_px

    def boxes(self, part: str = "test") -> pd.DataFrame:
        """The ground-truth boxes (`image,label,x,y,w,h`, source px) of the images of `part` (for NIH the official
        boxes, BBox_List_2017.csv)."""
        return self.table.boxes_in(part)

    def digest(self) -> str:
        """sha256 of the split's (image, part, labels) table (`DatasetTable.digest`): two runs on the same split have
        the same digest."""
        return self.table.digest()

    def cache(self, resolution_px: int) -> ResolutionCache:
        """The opened cache at `resolution_px` (opened once)."""
        if resolution_px not in self._opened:
            self._opened[resolution_px] = ResolutionCache.open(self.cache_dir, resolution_px)
        return self._opened[resolution_px]
