"""Multi-box scoring: 30,000 ground-truth boxes in (image, class) groups of 1-4 boxes, each group with 0-6
detections, matched one-to-one (saliency.score_boxes), pointing per box, rows and the per-class summary."""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from benchmarks.common import record
from cxrres.localization import saliency
from cxrres.localization.localize import summarise


def random_groups(n_boxes: int, seed: int = 0) -> list[tuple[str, list[tuple], list[tuple]]]:
    """(class, ground-truth boxes, detections) per group, boxes (x, y, w, h) in a 1024-px frame, near each other so
    that a fair share of pairs reach IoU 0.1."""
    rng = np.random.default_rng(seed)
    classes = ["Lung Opacity", "Nodule/Mass", "Consolidation", "Pleural effusion"]
    groups, total = [], 0
    while total < n_boxes:
        k = min(int(rng.integers(1, 5)), n_boxes - total)
        centre = rng.integers(150, 870, 2)
        gts = [
            tuple(int(v) for v in (*(centre + rng.integers(-120, 120, 2)), *rng.integers(40, 300, 2))) for _ in range(k)
        ]
        dets = [
            tuple(int(v) for v in (*(centre + rng.integers(-200, 200, 2)), *rng.integers(32, 400, 2)))
            for _ in range(int(rng.integers(0, 7)))
        ]
        groups.append((classes[int(rng.integers(0, 4))], gts, dets))
        total += k
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--boxes", type=int, default=30_000)
    args = parser.parse_args()
    groups = random_groups(args.boxes)
    frame = np.zeros((1024, 1024), np.float32)
    frame[500, 500] = 1.0
    timings = {}
    start = time.perf_counter()
    scores = [saliency.score_boxes(dets, gts) for _, gts, dets in groups]
    timings["match + precision/hit (score_boxes)"] = time.perf_counter() - start
    start = time.perf_counter()
    pointing = [saliency.pointing_hits(frame, gts) for _, gts, _ in groups]
    timings["pointing per box (argmax of a 1024² map per group)"] = time.perf_counter() - start
    start = time.perf_counter()
    rows = [
        {"image": f"im{i}", "class": c, "precision": p, "hit": int(h), "pointing": int(q), "n_boxes": len(gts)}
        for i, ((c, gts, _), (p, hits, _), points) in enumerate(zip(groups, scores, pointing))
        for h, q in zip(hits, points)
    ]
    summary = summarise(pd.DataFrame(rows), sorted({c for c, _, _ in groups}))
    timings["rows + per-class summary"] = time.perf_counter() - start
    start = time.perf_counter()
    for _, gts, dets in groups:
        for gt in gts:
            saliency.score_detections(dets, gt)
    single = time.perf_counter() - start
    n_det = sum(len(d) for _, _, d in groups)
    table = [
        "| Step | Seconds |",
        "|---|---|",
        *(f"| {k} | {v:.2f} |" for k, v in timings.items()),
        f"| **total** | **{sum(timings.values()):.2f}** |",
        f"| for reference: single-box `score_detections` once per box (no one-to-one matching) | {single:.2f} |",
    ]
    record(
        "Multi-box localization scoring (issue 15)",
        "\n".join(table),
        f"{len(rows):,} ground-truth boxes in {len(groups):,} (image, class) groups of 1-4 boxes, {n_det:,} detections "
        f"(0-6 per group), IoU >= 0.1, greedy one-to-one; accuracy over all classes "
        f"{summary.iloc[-1]['accuracy']:.3f}. Pure Python per group, NumPy IoU matrix per group; one run, machine "
        "shared with other jobs. Excludes the maps themselves (Grad-CAM, box frame, components: see "
        "'Localize: Grad-CAM + boxes').",
    )


if __name__ == "__main__":
    main()
