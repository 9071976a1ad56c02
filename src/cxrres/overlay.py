"""Heat-map overlays: a radiograph with its saliency map, the detections and (when known) the true box, as a PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cxrres import saliency
from cxrres.errors import CxrresError

#: Width of an overlay figure's longer side, px.
FIGURE_PX = 512


def heatmap_figure(grey: np.ndarray, frame: np.ndarray, gt: tuple | list[tuple] | None, detections: list[tuple],
                   iou_threshold: float, title: str) -> np.ndarray:
    """BGR picture (FIGURE_PX on its longer side): radiograph, heat map, every ground-truth box (one (x, y, w, h) or a
    list of them, source pixels) in white, detections green (IoU >= `iou_threshold` with some ground-truth box) or red,
    or yellow when there is no ground truth. `frame` is the map in the image's pixels."""
    h, w = frame.shape
    scale = FIGURE_PX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    base = cv2.resize(grey.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    base = cv2.cvtColor(np.clip(base, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    heat = cv2.applyColorMap((cv2.resize(frame, size) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    picture = cv2.addWeighted(base, 0.6, heat, 0.4, 0)
    gts = gt_boxes(gt)

    def rect(box: tuple, colour: tuple[int, int, int]) -> None:
        x, y, bw, bh = (v * scale for v in box)
        cv2.rectangle(picture, (int(x), int(y)), (int(x + bw) - 1, int(y + bh) - 1), colour, 2)

    for d in detections:
        if gt is None:
            rect(d, (0, 220, 255))
        else:
            rect(d, (0, 200, 0) if any(saliency.iou(d, g) >= iou_threshold for g in gts) else (0, 0, 230))
    for g in gts:
        rect(g, (255, 255, 255))
    cv2.putText(picture, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return picture


def gt_boxes(gt: tuple | list[tuple] | None) -> list[tuple]:
    """The ground truth as a list of (x, y, w, h) boxes: [] for None, [gt] for one box, else the list itself."""
    if gt is None:
        return []
    if len(gt) == 4 and all(np.isscalar(v) for v in gt):
        return [tuple(gt)]
    return [tuple(b) for b in gt]


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a BGR picture as PNG via a temporary name and a rename."""
    tmp = path.with_name(path.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), image):
        raise CxrresError(f"{path}: cannot write the figure")
    tmp.replace(path)
