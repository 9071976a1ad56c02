"""Grad-CAM + boxes (map, box frame, components, scoring) per 100 test images at given resolutions."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import record
from cxrres.localization import saliency
from cxrres.models.registry import create_model
from cxrres.inference.network import prepare_input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolutions", default="256,1024")
    parser.add_argument("--images", default="100,10", help="images timed per resolution")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = create_model("densenet121", 14, weights="none").to(device).eval()
    rows = ["| Resolution | images timed | seconds per 100 images |", "|---|---|---|"]
    rng = np.random.default_rng(0)
    for r, n in zip(map(int, args.resolutions.split(",")), map(int, args.images.split(","))):
        images = torch.from_numpy(rng.integers(0, 256, (n, 1, r, r), dtype=np.uint8))
        classes = torch.from_numpy(rng.integers(0, 14, n))
        start = time.perf_counter()
        for i in range(0, n, args.batch):
            x = prepare_input(images[i : i + args.batch].to(device), False)
            maps = saliency.class_activation_maps(model, x, classes[i : i + args.batch].to(device)).cpu().numpy()
            for cam in maps:
                frame = saliency.to_box_frame(cam, (1024, 1024))
                saliency.score_detections(saliency.boxes_from_saliency(frame), (400, 400, 80, 80))
        seconds = time.perf_counter() - start
        rows.append(f"| {r} px | {n} | {100 * seconds / n:.1f} |")
        print(rows[-1], flush=True)
    record(
        "Localize: Grad-CAM + boxes",
        "\n".join(rows),
        f"device {device}; batch {args.batch}; maps brought to the 1024-px box frame, thresholded, components, scored. "
        "Seconds per 100 images are scaled from the images timed (stated per row).",
    )


if __name__ == "__main__":
    main()
