"""Ready-to-train batches per second: cxrres's uint8 cache + on-device normalisation vs the naive CheXNet-style
pipeline (per-sample PIL open of the 1024-px PNG, RGB, Resize, ToTensor, Normalize) with the same workers."""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks.common import record, source_images
from cxrres.data.cache import ResolutionCache, prepare_cache
from cxrres.data.torch_dataset import IMAGENET_MEAN, IMAGENET_STD, CacheDataset, to_network_input
from cxrres.models.registry import recipe_batch_size


class NaiveDataset(Dataset):
    """What CheXNet reimplementations do per sample."""

    def __init__(self, paths, resolution_px: int) -> None:
        self.paths = paths
        self.transform = transforms.Compose(
            [transforms.Resize(resolution_px), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(Image.open(self.paths[i]).convert("RGB")), torch.zeros(14)


def images_per_second(loader: DataLoader, prepare, min_images: int) -> float:
    """Images/s of iterating `loader` (including `prepare` on each batch) until `min_images` were produced."""
    seen, start = 0, time.perf_counter()
    while seen < min_images:
        for x, _ in loader:
            x = prepare(x)
            seen += x.shape[0]
            if seen >= min_images:
                break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolutions", default="64,256,512,1024")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args()
    paths, what = source_images(args.images)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    rows = [
        "| Resolution | Batch | cxrres cache (img/s) | naive PIL pipeline (img/s) | ratio |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        data = paths[0].parent.parent
        report = prepare_cache(data, resolutions, f"{tmp}/cache", workers=args.workers, progress=False)
        names = [p.name for p in paths]
        for r in resolutions:
            batch = recipe_batch_size(r)
            cache = CacheDataset(ResolutionCache.open(report.cache_dir, r), names, torch.zeros(len(names), 14).numpy())
            fast = DataLoader(cache, batch_size=batch, shuffle=True, num_workers=args.workers, persistent_workers=True)
            naive = DataLoader(
                NaiveDataset(paths, r),
                batch_size=batch,
                shuffle=True,
                num_workers=args.workers,
                persistent_workers=True,
            )
            images_per_second(fast, to_network_input, batch * 2)  # warm up workers and page cache
            images_per_second(naive, lambda x: x, batch * 2)
            ours = images_per_second(fast, to_network_input, max(4 * len(names), 2000))
            theirs = images_per_second(naive, lambda x: x, len(names))
            rows.append(f"| {r} px | {batch} | {ours:,.0f} | {theirs:,.1f} | {ours / theirs:,.0f}× |")
            print(rows[-1], flush=True)
    record(
        "Loader: ready-to-train batches",
        "\n".join(rows),
        f"{what}; {args.workers} DataLoader workers for both; shuffled; normalised float32 3-channel batches on the "
        "CPU. The naive pipeline decodes a 1024-px PNG per sample; the cache reads the resized uint8 rows from a "
        "memory map.",
    )


if __name__ == "__main__":
    main()
