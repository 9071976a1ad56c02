"""Class activation maps from the last convolutional block (after its final ReLU; for timm's ConvNeXt and EfficientNet
its `forward_features`; for a ViT the patch tokens entering the last block on the patch grid), and the box geometry of
the study's localization protocol: threshold, connected components, IoU, one-to-one matching of detections to one or
several ground-truth boxes, precision, hit and pointing.

Maps: for class c with logit y_c and activations A (K, h, w) of the last block, after its ReLU,
- `gradcam`   (Selvaraju et al. 2017): ReLU(Σ_k α_k A_k), α_k = mean_ij ∂y_c/∂A_kij;
- `hirescam`  (Draelos & Carin 2020): ReLU(Σ_k ∂y_c/∂A_k ⊙ A_k);
- `gradcam++` (Chattopadhay et al. 2018): ReLU(Σ_k w_k A_k), w_k = Σ_ij a_kij ReLU(g_kij),
  a = g² / (2g² + Σ_ij A_k · g³ + 1e-6) (as pytorch-grad-cam computes it);
- `xgradcam`  (Fu et al. 2020): ReLU(Σ_k w_k A_k), w_k = Σ_ij g_kij A_kij / (Σ_ij A_kij + 1e-7);
- `layercam`  (Jiang et al. 2021): ReLU(Σ_k ReLU(g_k) ⊙ A_k).
They match pytorch-grad-cam's methods of the same names (checked in the tests) but are computed here so that
the activations are taken *after* the block's ReLU: torchvision's DenseNet applies that ReLU in place inside
`forward`, so a hook on `features.norm5` sees the pre-ReLU map. `split_network` makes that step explicit; each
family's `ArchSpec.to_grid` turns its features into the (B, K, h, w) grid the formulas above take.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch
from scipy import ndimage
from torch import nn

from cxrres.errors import CxrresError
from cxrres.models.registry import spec_of

Box = tuple[int, int, int, int]  # (x, y, w, h) in pixels


def split_network(
    model: nn.Module,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """(backbone, head) with head(backbone(x)) == model(x); backbone ends with the last block's ReLU (not in place)."""
    spec = spec_of(model)
    return (lambda x: spec.forward_features(model, x)), (lambda a: spec.forward_head(model, a))


def _gradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1)


def _hirescam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g * a).sum(dim=1)


def _gradcam_pp(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    g2, g3 = g.pow(2), g.pow(3)
    sum_a = a.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (torch.clamp(g, min=0) * alpha).sum(dim=(2, 3), keepdim=True)
    return (weights * a).sum(dim=1)


def _xgradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    weights = (g * a).sum(dim=(2, 3), keepdim=True) / (a.sum(dim=(2, 3), keepdim=True) + 1e-7)
    return (weights * a).sum(dim=1)


def _layercam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (torch.clamp(g, min=0) * a).sum(dim=1)


METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": _gradcam,
    "hirescam": _hirescam,
    "gradcam++": _gradcam_pp,
    "xgradcam": _xgradcam,
    "layercam": _layercam,
}


def class_activation_maps(
    model: nn.Module, x: torch.Tensor, class_index: torch.Tensor, method: str = "gradcam"
) -> torch.Tensor:
    """(B, h, w) ReLU'd maps at the last block's resolution for a batch `x` (B, 3, R, R), one class per image.

    Convolutional networks: the last feature map (R/32 cells a side). ViTs: the tokens entering the last block,
    class and register tokens dropped, reshaped to the patch grid (R/16 a side for ViT/16).
    The model is put in eval mode; gradients flow only to the activations (parameters are untouched).
    """
    if method not in METHODS:
        raise CxrresError(f"unknown saliency method {method!r}; choose from {', '.join(METHODS)}")
    model.eval()
    spec = spec_of(model)
    backbone, head = split_network(model)
    with torch.enable_grad():
        activations = backbone(x).detach().requires_grad_(True)
        logits = head(activations)
        target = logits.gather(1, class_index.view(-1, 1).to(logits.device)).sum()
        (gradients,) = torch.autograd.grad(target, activations)
    with torch.no_grad():
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        a, g = (spec.to_grid(model, t, hw).float() for t in (activations, gradients))
        return torch.relu(METHODS[method](a, g))


def normalise(saliency: np.ndarray) -> np.ndarray | None:
    """Min-max normalised copy in [0, 1] (float64), or None for an all-equal map."""
    s = np.asarray(saliency, dtype=np.float64)
    low, high = float(s.min()), float(s.max())
    if not high > low:
        return None
    return (s - low) / (high - low)


def blank_reason(cam: np.ndarray, resolution_px: int) -> str:
    """Why a class activation map (h x w cells, the last block's grid for a `resolution_px` input) shows nothing, or ''
    when it has contrast: zero everywhere (the ReLU removed every cell), or one value everywhere (min-max undefined)."""
    cam = np.asarray(cam, dtype=np.float64)
    grid = f"the last feature map is {' x '.join(map(str, cam.shape))} at {resolution_px} px"
    if not np.isfinite(cam).all():
        return f"map has non-finite values ({int((~np.isfinite(cam)).sum())} of {cam.size} cells); {grid}"
    low, high = float(cam.min()), float(cam.max())
    if high > low:
        return ""
    if high == 0:
        return (
            "map is zero everywhere: the class score's gradient-weighted activations are zero or negative at every "
            f"cell (the ReLU removes them); {grid}"
        )
    return f"map is constant ({high:.3g} at every cell), so min-max normalisation is undefined; {grid}"


def to_box_frame(saliency: np.ndarray, source_hw: tuple[int, int]) -> np.ndarray:
    """A map over the square network input -> the source image's pixel frame (where the official boxes live).

    The network saw the source padded bottom/right to a square of side S = max(h, w) and area-resized, so the
    map covers that S x S square: it is min-max normalised, resized bilinearly to S x S with pixel centres aligned
    (cv2.INTER_LINEAR; map cell (i, j) covers source pixels [i S/h', (i+1) S/h') ...), and cropped to (h, w).
    An all-equal map comes back as zeros.
    """
    h, w = source_hw
    side = max(h, w)
    s = normalise(saliency)
    if s is None:
        return np.zeros((h, w), np.float32)
    up = cv2.resize(s.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    return up[:h, :w]


def boxes_from_saliency(saliency: np.ndarray, threshold: float = 0.5, connectivity: int = 8) -> list[Box]:
    """One box (x, y, w, h) per connected component of {normalised saliency >= threshold}, sorted by (y, x).

    `saliency` is a 2-D float array, min-max normalised to [0, 1] here (an all-equal map gives no boxes);
    x, y are the component's top-left pixel, w = x_max - x_min + 1, h = y_max - y_min + 1.
    """
    if connectivity not in (4, 8):
        raise CxrresError(f"connectivity must be 4 or 8, got {connectivity}")
    s = normalise(saliency)
    if s is None:
        return []
    structure = np.ones((3, 3), bool) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(s >= threshold, structure=structure)
    boxes = [
        (sl[1].start, sl[0].start, sl[1].stop - sl[1].start, sl[0].stop - sl[0].start)
        for sl in ndimage.find_objects(labels)
        if sl is not None
    ]
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def iou(box_a: tuple[float, float, float, float], box_b: tuple[float, float, float, float]) -> float:
    """Intersection over union of (x, y, w, h) boxes taken as rectangles [x, x+w) x [y, y+h); 0 for empty unions."""
    ax, ay, aw, ah = box_a
    bx, by, bw, bh = box_b
    inter = max(0.0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


def pointing_hit(frame: np.ndarray, gt_box: tuple[float, float, float, float]) -> bool:
    """Pointing game (Zhang et al. 2016): the centre of the map's maximal pixel (the first in row-major order) lies in
    the (x, y, w, h) box, in the frame's pixels. An all-zero map points nowhere (False). Not part of the paper's
    protocol: it scores where a map peaks, not how wide it is."""
    if not float(np.max(frame)) > 0:
        return False
    row, col = np.unravel_index(int(np.argmax(frame)), frame.shape)
    x, y, w, h = gt_box
    return bool(x <= col + 0.5 < x + w and y <= row + 0.5 < y + h)


def score_detections(
    detections: list[tuple[float, float, float, float]],
    gt_box: tuple[float, float, float, float],
    iou_threshold: float = 0.1,
) -> tuple[float, bool]:
    """(precision, hit) of detections against one ground-truth box.

    A detection is positive when IoU >= `iou_threshold`; at most one is a true positive (one ground-truth box);
    precision = TP / len(detections) (0.0 without detections); hit = TP > 0.
    """
    if not detections:
        return 0.0, False
    tp = 1 if any(iou(d, gt_box) >= iou_threshold for d in detections) else 0
    return tp / len(detections), tp > 0


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(N, M) float64 IoU of (N, 4) and (M, 4) arrays of (x, y, w, h) boxes, each as in `iou` (0 for empty unions)."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)[None, :, :]
    iw = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(
    detections: list[tuple[float, float, float, float]],
    gt_boxes: list[tuple[float, float, float, float]],
    iou_threshold: float = 0.1,
) -> list[tuple[int, float] | None]:
    """Per ground-truth box: (index of its detection, IoU) or None. One-to-one, greedy by IoU, highest first, over
    the pairs with IoU >= `iou_threshold`; ties go to the lower ground-truth index, then the lower detection index."""
    matches: list[tuple[int, float] | None] = [None] * len(gt_boxes)
    if not detections or not gt_boxes:
        return matches
    if len(detections) * len(gt_boxes) <= 64:  # small groups: plain Python is faster than NumPy's overhead
        pairs = [
            (-v, g, d)
            for g, gt in enumerate(gt_boxes)
            for d, det in enumerate(detections)
            if (v := iou(det, gt)) >= iou_threshold
        ]
    else:
        overlaps = iou_matrix(np.asarray(detections), np.asarray(gt_boxes))
        det, gt = np.nonzero(overlaps >= iou_threshold)
        pairs = [(-float(overlaps[d, g]), int(g), int(d)) for d, g in zip(det, gt)]
    used: set[int] = set()
    for negative_iou, g, d in sorted(pairs):
        if matches[g] is None and d not in used:
            matches[g] = (d, -negative_iou)
            used.add(d)
    return matches


def score_boxes(
    detections: list[tuple[float, float, float, float]],
    gt_boxes: list[tuple[float, float, float, float]],
    iou_threshold: float = 0.1,
) -> tuple[float, list[bool], list[tuple[int, float] | None]]:
    """(precision, hit per ground-truth box, match per box) of one image's detections against its boxes of one class.

    Detections are matched one-to-one to the boxes (`match_boxes`); precision = TP / len(detections) (0.0 without
    detections); a box is hit when it has a match. With one box this is `score_detections` exactly.
    """
    matches = match_boxes(detections, gt_boxes, iou_threshold)
    tp = sum(m is not None for m in matches)
    return (tp / len(detections) if detections else 0.0), [m is not None for m in matches], matches


def pointing_hits(frame: np.ndarray, gt_boxes: list[tuple[float, float, float, float]]) -> list[bool]:
    """`pointing_hit` for each (x, y, w, h) box: whether it holds the centre of the map's (first) maximal pixel."""
    frame = np.asarray(frame)
    peak = int(np.argmax(frame))
    if not gt_boxes or not float(frame.flat[peak]) > 0:
        return [False] * len(gt_boxes)
    row, col = np.unravel_index(peak, frame.shape)
    return [bool(x <= col + 0.5 < x + w and y <= row + 0.5 < y + h) for x, y, w, h in gt_boxes]
