"""`cxrres predict` against a naive one-image-at-a-time loop (open, resize, forward) at 256 px on 1024-px PNGs.

Both use the same run (DenseNet-121, 256 px, trained 1 epoch on a small phantom: the weights do not change the cost),
the same decode and area resize (`load_resized`) and the run's precision; predict decodes in worker processes and
scores batches of the run's batch size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import record, source_images
from cxrres.config import TrainConfig
from cxrres.data.images import load_resized
from cxrres.inference.network import for_inference, load_run_model, probabilities
from cxrres.deploy.predict import predict_files
from cxrres.synthetic import synthesize
from cxrres.training.train import train


def naive(run_dir: Path, paths: list[Path]) -> float:
    """Images/s of open -> resize -> forward, one image at a time, in this process."""
    model, config, _ = load_run_model(run_dir)
    device = torch.device("cpu")
    model = for_inference(model, config, device)
    started = time.perf_counter()
    for path in paths:
        resized, _ = load_resized(path, (config.resolution_px,))
        probabilities(model, torch.from_numpy(resized[config.resolution_px])[None, None], config, device)
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    paths, what = source_images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        synthesize(base / "phantom", n_images=40, size_px=256, seed=1, workers=1, progress=False)
        run_dir = train(
            TrainConfig(
                data=str(base / "phantom"),
                resolution_px=256,
                weights="none",
                out=str(base / "run"),
                cache=str(base / "cache"),
                max_epochs=1,
                progress=False,
            )
        )
        naive_rate = naive(run_dir, paths)
        result = predict_files(run_dir, paths, base / "out", workers=args.workers, progress=False)
        batch = load_run_model(run_dir)[1].batch_size
    rows = [
        "| Method | images/s | ratio |",
        "|---|---|---|",
        f"| naive loop (open, resize, forward; batch 1, one process) | {naive_rate:.2f} | 1.00 |",
        f"| `cxrres predict` ({args.workers} decoding workers, batch {batch}) | {result.images_per_s:.2f} | "
        f"{result.images_per_s / naive_rate:.2f} |",
    ]
    record(
        f"predict at 256 px: {what}",
        "\n".join(rows),
        "Same run, precision and preprocessing for both; predict's figure counts decode, batching and forward (the "
        "operating points and CSV writing are outside the timed loop).",
    )


if __name__ == "__main__":
    main()
