"""What one run trains on: its data set, split, cache and one Dataset per part with the run's classes (masked
labels -1). No Lightning: used by train, and by predict for runs that predate predictions_val.csv."""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torchvision

from cxrres import __version__, runs
from cxrres.config import TrainConfig
from cxrres.data.cache import ResolutionCache
from cxrres.data.torch_dataset import CacheDataset
from cxrres.data.datasets import DatasetTable, apply_uncertain
from cxrres.data.source import DataOptions, DataSource
from cxrres.errors import CxrresError


def versions() -> dict[str, str]:
    """Versions of the software a run used."""
    return {
        "cxrres": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": torchvision.__version__,
        "lightning": version("lightning"),
        "numpy": np.__version__,
    }


# --- data -------------------------------------------------------------------------------------------------------


@dataclass
class RunData:
    """The datasets of a run, the run's config with its data set and classes filled in, and what identifies them.
    Labels are 1/0, or -1 where masked out (uncertain under `uncertain: ignore`)."""

    config: TrainConfig
    classes: list[str]
    parts: dict[str, CacheDataset]
    source: DataSource
    cache: ResolutionCache
    dropped: dict[str, int]

    def patient_ids(self, part: str) -> list[str]:
        """The patient of each image of `part` (the data set's `patient_id`, as text), in the part's image order."""
        return self.source.table.frame["patient_id"].reindex(self.parts[part].images).astype(str).tolist()


def run_source(
    run: TrainConfig | str | Path,
    data: str | Path | None = None,
    source: DataSource | None = None,
    progress: bool = True,
    resolutions_px: Iterable[int] | None = None,
) -> DataSource:
    """The data a run reads, opened one way for train, localize, evaluate, predict and report: `source` when it reads
    the run's data at every resolution wanted (a study's, built once), else the root prepared at them.

    `run`: a run directory (its config.yaml; its recorded cache is reused) or the settings of a run being trained.
    `data`: another copy of the run's data root (default the run's own; another root gets its default cache).
    `resolutions_px`: the cache resolutions (pixels) wanted, default the run's; empty: the metadata alone, no cache
    (read once per process)."""
    config = runs.read_settings(run) if not isinstance(run, TrainConfig) else run
    recorded = runs.recorded_cache_dir(run) if not isinstance(run, TrainConfig) else None
    root, options = data or config.data, config.data_options()
    wanted = sorted(set([config.resolution_px] if resolutions_px is None else resolutions_px))
    if source is not None and source.reads(root, options) and set(wanted) <= set(source.resolutions_px):
        return source
    if not wanted:
        return _metadata_source(str(root), options)
    own_root = Path(root).expanduser().resolve() == Path(config.data).expanduser().resolve()
    return DataSource.prepare(root, options, wanted, (recorded or config.cache) if own_root else None, progress)


@lru_cache(maxsize=2)
def _metadata_source(data: str, options: DataOptions) -> DataSource:
    """A data root read under `options` from its metadata alone, once per process (the report reads it twice)."""
    return DataSource.read(data, options)


def with_dataset(config: TrainConfig, table: DatasetTable) -> TrainConfig:
    """`config` naming the data set it reads and, unless they are implied (NIH's 14), its classes (the table's unless
    given); checks that the run's classes (or label) are the data set's."""
    c = dataclasses.replace(config, dataset=table.dataset)
    if c.class_names is None and not table.implied_classes:
        if any("," in name for name in table.classes):
            raise CxrresError(f"{config.data}: a class name contains a comma ({', '.join(table.classes)}); rename it")
        c.class_names = ",".join(table.classes)
    unknown = [name for name in c.classes if name not in table.classes]
    if unknown:
        what = "label" if c.label else "class"
        raise CxrresError(f"unknown {what} {unknown[0]!r}; choose one of {', '.join(table.classes)}")
    return c


def masked_labels(raw: np.ndarray, policy: str) -> np.ndarray:
    """(N, C) float32 training labels from raw 1/0/-1/NaN ones: 1/0, or -1 where `policy` masks the label out."""
    targets, mask = apply_uncertain(raw, policy)
    return np.where(mask, targets, -1.0).astype(np.float32)


def load_run_data(config: TrainConfig, source: DataSource | None = None) -> RunData:
    """Split, cache (prepared when needed) and one CacheDataset per part, labels restricted to the run's classes."""
    source = run_source(config, source=source, progress=config.progress)
    table, cache = source.table_for(config.classes), source.cache(config.resolution_px)
    config = with_dataset(config, table)
    classes = config.classes
    columns = [table.classes.index(c) for c in classes]
    split = {part: table.images(part) for part in ("train", "val", "test")}
    absent = [name for names in split.values() for name in names if name not in cache.rows]
    if absent and not config.allow_missing:
        total = sum(map(len, split.values()))
        first = ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else "")
        raise CxrresError(
            f"{config.data}: {len(absent):,} of the run's {total:,} images are not in the cache, missing on "
            f"disk or unreadable (first: {first}); --allow-missing trains on the {total - len(absent):,} present"
        )
    parts, dropped = {}, {}
    for part, images in split.items():
        labels = masked_labels(table.labels(part)[:, columns], config.uncertain)
        present = np.array([name in cache.rows for name in images], dtype=bool)
        dropped[part] = int((~present).sum())
        if dropped[part] and config.allow_missing:
            images, labels = [n for n, p in zip(images, present) if p], labels[present]
        if not images:
            raise CxrresError(f"{config.data}: no image of the {part} part is in the cache")
        parts[part] = CacheDataset(cache, images, labels, classes)
    return RunData(config, classes, parts, source, cache, dropped if config.allow_missing else {p: 0 for p in parts})
