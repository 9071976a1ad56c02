"""What a run reads, built once: a data root (metadata parsed once), one split of it, and its prepared cache.

A study builds one `DataSource` for all its resolutions and hands it to every train and localize step, so the
sources are scanned and Data_Entry is parsed once per study, not once per step (as torchvision's classification
reference builds its datasets once in `load_data`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from cxrres.data.cache import PrepareReport, ResolutionCache, prepare_cache
from cxrres.data.layout import DataRoot
from cxrres.data.splits import Split, build_split


@dataclass(frozen=True)
class SplitSpec:
    """Which split of a data root: its kind, an optional folder of split files, and the carve settings."""

    kind: str = "chexnet"
    split_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0

    def build(self, root: DataRoot) -> Split:
        """The split of `root` this spec names (checked for overlap)."""
        return build_split(root, self.kind, self.split_dir, self.val_fraction, self.split_seed)


@dataclass
class DataSource:
    """A data root, one split of it and its resolution cache, prepared for some resolutions."""

    root: DataRoot
    spec: SplitSpec
    split: Split
    prepared: PrepareReport
    _opened: dict[int, ResolutionCache] = field(default_factory=dict, repr=False)

    @classmethod
    def prepare(cls, data: str | Path | DataRoot, spec: SplitSpec, resolutions_px: Iterable[int],
                cache_dir: str | Path | None = None, progress: bool = True) -> "DataSource":
        """Open the root, build the split, and build or reuse the cache at every resolution (pixels)."""
        root = data if isinstance(data, DataRoot) else DataRoot.at(data)
        split = spec.build(root)
        report = prepare_cache(root, resolutions_px, cache_dir, progress=progress)
        return cls(root, spec, split, report)

    @property
    def cache_dir(self) -> Path:
        """The cache directory."""
        return self.prepared.cache_dir

    def serves(self, data: str | Path, spec: SplitSpec, resolution_px: int) -> bool:
        """Whether a run on `data` with split `spec` at `resolution_px` can use this source as it is."""
        return (Path(data).expanduser().resolve() == self.root.root and spec == self.spec
                and resolution_px in self.prepared.resolutions_px)

    def cache(self, resolution_px: int) -> ResolutionCache:
        """The opened cache at `resolution_px` (opened once)."""
        if resolution_px not in self._opened:
            self._opened[resolution_px] = ResolutionCache.open(self.cache_dir, resolution_px)
        return self._opened[resolution_px]
