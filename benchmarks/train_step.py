"""Training images/s: model-only ceiling (random tensors already on the device) vs the real loader (uint8 cache ->
on-device normalisation) feeding the same DenseNet-121 step; fp32 NCHW (the old CPU default), fp32 channels_last, and
bf16 autocast + channels_last (GPU, or a CPU with native bf16: the current defaults)."""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from benchmarks.common import record, source_images
from cxrres.data.cache import ResolutionCache, prepare_cache
from cxrres.data.torch_dataset import CacheDataset
from cxrres.models.registry import create_model
from cxrres.config import cpu_has_native_bf16
from cxrres.models.registry import recipe_batch_size
from cxrres.inference.network import create_loader, prepare_input


def step_rate(model, optimizer, batches, device, steps: int, bf16: bool, channels_last: bool) -> float:
    """Images/s over `steps` optimizer steps drawn from the iterator `batches` (after 2 warm-up steps)."""
    loss_fn = torch.nn.BCEWithLogitsLoss()
    seen, start = 0, None
    for i in range(steps + 2):
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, seen = time.perf_counter(), 0
        images, labels = next(batches)
        x = prepare_input(images.to(device, non_blocking=True), channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x).float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def forever(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolutions", default="64,128,256")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the fastest mode under torch.compile")
    parser.add_argument("--require-gpu", action="store_true", help="stop with one line when no CUDA device is present")
    parser.add_argument("--images", type=int, default=400, help="source images in the cache")
    parser.add_argument("--no-record", action="store_true", help="print the table; do not append it to RESULTS.md")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.require_gpu and device.type != "cuda":
        raise SystemExit(
            "bench-gpu: no CUDA device here; run it on a GPU machine (the CPU figures come from `make bench`)"
        )
    modes = [(False, False, False), (False, True, False)] + (
        [(True, True, False)] if device.type == "cuda" or cpu_has_native_bf16() else []
    )
    if args.compile:
        modes.append((*modes[-1][:2], True))
    paths, what = source_images(args.images)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    rows = [
        "| Resolution | Batch | Precision | model only (img/s) | real loader (img/s) | loader / ceiling | real vs fp32 "
        "NCHW | peak GPU memory (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        report = prepare_cache(paths[0].parent.parent, resolutions, f"{tmp}/cache", progress=False)
        names = [p.name for p in paths]
        for r in resolutions:
            batch = recipe_batch_size(r)
            dataset = CacheDataset(
                ResolutionCache.open(report.cache_dir, r), names, torch.zeros(len(names), 14).numpy()
            )
            loader = create_loader(dataset, batch, torch.utils.data.RandomSampler(dataset), args.workers)
            baseline = float("nan")  # the fp32 NCHW real-loader rate, measured first
            for bf16, channels_last, compiled in modes:
                torch.manual_seed(0)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                model = create_model("densenet121", 14, weights="none").to(device).train()
                if channels_last:
                    model = model.to(memory_format=torch.channels_last)
                optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4)
                model = torch.compile(model) if compiled else model
                fixed = (
                    torch.randint(0, 256, (batch, 1, r, r), dtype=torch.uint8, device=device),
                    torch.zeros(batch, 14, device=device),
                )
                ceiling = step_rate(
                    model, optimizer, iter(lambda: fixed, None), device, args.steps, bf16, channels_last
                )
                real = step_rate(model, optimizer, forever(loader), device, args.steps, bf16, channels_last)
                name = (
                    ("bf16" if bf16 else "fp32")
                    + (" + channels_last" if channels_last else "")
                    + (" + compile" if compiled else "")
                )
                baseline = real if not (bf16 or channels_last) else baseline
                peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f}" if device.type == "cuda" else "–"
                rows.append(
                    f"| {r} px | {batch} | {name} | {ceiling:,.1f} | {real:,.1f} | {real / ceiling:.2f} | "
                    f"{real / baseline:.2f}x | {peak} |"
                )
                print(rows[-1], flush=True)
    if args.no_record:
        return
    record(
        "Train step: DenseNet-121, model-only ceiling vs real loader",
        "\n".join(rows),
        f"{what} in the cache; {args.steps} timed steps after 2 warm-up steps; {args.workers} DataLoader workers; "
        f"device {device}. The ceiling feeds the same uint8 batch already on the device (normalisation included).",
    )


if __name__ == "__main__":
    main()
