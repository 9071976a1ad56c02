"""Training batches from the cache: one sorted fancy-index of the memory map per batch (CacheDataset.__getitems__,
the current loader) against one row per sample and a default collate (the previous loader), same sampler and workers."""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from benchmarks.common import record, source_images
from cxrres.models.registry import recipe_batch_size
from cxrres.data.cache import ResolutionCache, prepare_cache
from cxrres.data.torch_dataset import CacheDataset
from cxrres.inference.network import create_loader


class PerSampleDataset(CacheDataset):
    """The previous loader: the DataLoader reads one row per sample and stacks them."""

    __getitems__ = None


def rate(dataset: CacheDataset, batch: int, workers: int, epochs: int) -> float:
    """Batches' images/s over `epochs` shuffled passes (after one warm-up pass)."""
    loader = create_loader(
        dataset, batch, torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(0)), workers
    )
    for _ in loader:
        pass
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, _ in loader:
            seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolutions", default="64,256")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    paths, what = source_images(400)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    rows = [
        "| Resolution | Batch | one row per sample (img/s) | one read per batch (img/s) | ratio |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        report = prepare_cache(paths[0].parent.parent, resolutions, f"{tmp}/cache", progress=False)
        names = [p.name for p in paths]
        labels = np.zeros((len(names), 14), np.float32)
        for r in resolutions:
            cache, batch = ResolutionCache.open(report.cache_dir, r), recipe_batch_size(r)
            old = rate(PerSampleDataset(cache, names, labels), batch, args.workers, args.epochs)
            new = rate(CacheDataset(cache, names, labels), batch, args.workers, args.epochs)
            rows.append(f"| {r} px | {batch} | {old:,.0f} | {new:,.0f} | {new / old:.2f} |")
            print(rows[-1], flush=True)
    record(
        "Loader: one read per batch vs one row per sample",
        "\n".join(rows),
        f"{what} in the cache (page cache warm); {args.workers} DataLoader workers; {args.epochs} shuffled epochs "
        "timed after one warm-up. The same batches either way (tests/test_dataset.py).",
    )


if __name__ == "__main__":
    main()
