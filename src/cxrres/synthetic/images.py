"""One phantom image: what determines it (`ImageSpec`) and its rendering with the true boxes of its lesions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrres.data.labels import BOX_CLASSES
from cxrres.synthetic.anatomy import Anatomy, Body, Canvas, LUNG_CENTRES, render_body
from cxrres.synthetic.lesions import DRAWERS, DRAW_ORDER, Lesion

# ---------------------------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines one phantom image."""

    name: str
    patient_id: int
    follow_up: int
    findings: tuple[str, ...]
    seed: int
    anatomy: Anatomy


def render(spec: ImageSpec, size_px: int, with_lesions: bool = True, realisation: int = 0) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """Render one phantom image: float32 (S, S) in [0, 1] before quantisation, and the (class, box_xywh) of each lesion.

    `with_lesions=False` renders the identical image without its findings (same anatomy, texture and noise);
    `realisation=k > 0` redraws the lung markings and the detector noise (for measuring noise).
    """
    canvas = Canvas(spec.anatomy, size_px)
    lungs = {side: canvas.ellipse(cu, cv, spec.anatomy.lung_half_width * (1.0 if side == "right" else 0.95), spec.anatomy.lung_half_height, softness=4)
             for side, (cu, cv) in LUNG_CENTRES.items()}
    body = Body(canvas, lungs)
    lesion_rng = np.random.default_rng([spec.seed, 1])
    lesions: list[Lesion] = []
    if with_lesions:
        for label in DRAW_ORDER:
            if label in spec.findings:
                count = 1 + int(label == "Nodule" and lesion_rng.random() < 0.25)
                lesions.extend(DRAWERS[label](body, lesion_rng) for _ in range(count))
    image = render_body(body, np.random.default_rng([spec.anatomy.texture_seed, 2, realisation]))
    for lesion in lesions:
        if lesion.layer is not None:
            image += lesion.layer
    noise_rng = np.random.default_rng([spec.seed, 3, realisation])
    exposure = noise_rng.uniform(0.88, 1.12), noise_rng.uniform(-0.035, 0.035)
    image = image * exposure[0] + exposure[1] + 0.012 * noise_rng.standard_normal(image.shape).astype(np.float32)
    boxes = [(lesion.label, box) for lesion in lesions if lesion.label in BOX_CLASSES and (box := lesion.box_xywh()) is not None]
    return np.clip(image, 0, 1), boxes


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 grey levels."""
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
