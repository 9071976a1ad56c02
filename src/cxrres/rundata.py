"""What one run trains on: its split, cache and one Dataset per part with the run's classes, and what identifies them.
No Lightning: used by train, and by predict for runs that predate predictions_val.csv."""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass

import lightning
import numpy as np
import torch
import torchvision

from cxrres import __version__
from cxrres.config import TrainConfig
from cxrres.data.cache import ResolutionCache
from cxrres.data.dataset import CacheDataset
from cxrres.data.labels import CLASS_INDEX
from cxrres.data.source import DataSource
from cxrres.data.splits import Split
from cxrres.errors import CxrresError


def split_digest(split: Split) -> str:
    """sha256 of the split's (image, part, labels) table: two runs on the same split have the same digest."""
    return hashlib.sha256(split.frame.drop(columns=["patient_id"]).to_csv().encode()).hexdigest()


def versions() -> dict[str, str]:
    """Versions of the software a run used."""
    return {"cxrres": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": torchvision.__version__, "lightning": lightning.__version__, "numpy": np.__version__}


# --- data -------------------------------------------------------------------------------------------------------


@dataclass
class RunData:
    """The datasets of a run and what identifies them."""

    classes: list[str]
    parts: dict[str, CacheDataset]
    split: Split
    cache: ResolutionCache
    dropped: dict[str, int]


def data_source(config: TrainConfig, source: DataSource | None = None) -> DataSource:
    """`source` when it serves the run (a study's, built once), else one prepared for the run's resolution alone."""
    if source is not None and source.serves(config.data, config.split_spec(), config.resolution_px):
        return source
    return DataSource.prepare(config.data, config.split_spec(), [config.resolution_px], config.cache, config.progress)


def load_run_data(config: TrainConfig, source: DataSource | None = None) -> RunData:
    """Split, cache (prepared when needed) and one CacheDataset per part, labels restricted to the run's classes."""
    source = data_source(config, source)
    split, cache = source.split, source.cache(config.resolution_px)
    classes = config.classes
    columns = [CLASS_INDEX[c] for c in classes]
    parts, dropped = {}, {}
    for part in ("train", "val", "test"):
        images, labels = split.images(part), split.labels(part)[:, columns]
        present = np.array([name in cache.rows for name in images], dtype=bool)
        dropped[part] = int((~present).sum())
        if dropped[part] and config.allow_missing:
            images, labels = [n for n, p in zip(images, present) if p], labels[present]
        if not images:
            raise CxrresError(f"{config.data}: no image of the {part} part is in the cache")
        parts[part] = CacheDataset(cache, images, labels)
    return RunData(classes, parts, split, cache, dropped if config.allow_missing else {p: 0 for p in parts})


def defined_classes(labels: np.ndarray) -> np.ndarray:
    """Mask of the columns of (N, C) 0/1 `labels` that have both positives and negatives."""
    positives = labels.sum(axis=0)
    return (positives > 0) & (positives < labels.shape[0])
