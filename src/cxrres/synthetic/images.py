"""One phantom image: what determines it (`ImageSpec`) and its rendering with the true boxes of its lesions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import numpy as np

from cxrres.data.labels import BOX_CLASSES
from cxrres.synthetic.anatomy import Anatomy, Body, Canvas, LUNG_CENTRES, render_body
from cxrres.synthetic.lesions import DRAWERS, DRAW_ORDER, Lesion

# ---------------------------------------------------------------------------------------------------------- images

#: Draws of a lesion of a counted class before it is left out for touching an earlier one (see `render`).
SEPARATE_TRIES = 12


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines one phantom image."""

    name: str
    patient_id: int
    follow_up: int
    findings: tuple[str, ...]
    seed: int
    anatomy: Anatomy
    #: (class, number of lesions) drawn apart from each other (boxes not touching) instead of the class's usual one;
    #: empty for the NIH layout. See `render`.
    lesion_counts: tuple[tuple[str, int], ...] = ()


def render(
    spec: ImageSpec,
    size_px: int,
    with_lesions: bool = True,
    realisation: int = 0,
    box_classes: Collection[str] = BOX_CLASSES,
) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """Render one phantom image: float32 (S, S) in [0, 1] before quantisation, and the (class, box_xywh) of each lesion
    of `box_classes` (NIH's 8 box classes by default), in pixels of this image.

    `with_lesions=False` renders the identical image without its findings (same anatomy, texture and noise);
    `realisation=k > 0` redraws the lung markings and the detector noise (for measuring noise). A class listed in
    `spec.lesion_counts` gets that many lesions: the image's first such lesion as usual, every later one redrawn (up
    to SEPARATE_TRIES times) until its box touches no earlier one of them, else left out.
    """
    canvas = Canvas(spec.anatomy, size_px)
    lungs = {
        side: canvas.ellipse(
            cu,
            cv,
            spec.anatomy.lung_half_width * (1.0 if side == "right" else 0.95),
            spec.anatomy.lung_half_height,
            softness=4,
        )
        for side, (cu, cv) in LUNG_CENTRES.items()
    }
    body = Body(canvas, lungs)
    lesion_rng = np.random.default_rng([spec.seed, 1])
    lesions: list[Lesion] = []
    counts = dict(spec.lesion_counts)
    apart: list[tuple[int, int, int, int]] = []  # boxes of the lesions of the counted classes so far
    if with_lesions:
        for label in DRAW_ORDER:
            if label in counts and label in spec.findings:
                lesions.extend(_draw_apart(label, counts[label], body, lesion_rng, apart))
            elif label in spec.findings:
                count = 1 + int(label == "Nodule" and lesion_rng.random() < 0.25)
                lesions.extend(DRAWERS[label](body, lesion_rng) for _ in range(count))
    image = render_body(body, np.random.default_rng([spec.anatomy.texture_seed, 2, realisation]))
    for lesion in lesions:
        if lesion.layer is not None:
            image += lesion.layer
    noise_rng = np.random.default_rng([spec.seed, 3, realisation])
    exposure = noise_rng.uniform(0.88, 1.12), noise_rng.uniform(-0.035, 0.035)
    image = image * exposure[0] + exposure[1] + 0.012 * noise_rng.standard_normal(image.shape).astype(np.float32)
    boxes = [
        (lesion.label, box)
        for lesion in lesions
        if lesion.label in box_classes and (box := lesion.box_xywh()) is not None
    ]
    return np.clip(image, 0, 1), boxes


def _draw_apart(
    label: str, count: int, body: Body, rng: np.random.Generator, apart: list[tuple[int, int, int, int]]
) -> list[Lesion]:
    """Up to `count` lesions of `label` whose boxes touch none in `apart` (which grows); the image's first is kept as
    drawn. Only for drawers that do not change the body (a rejected draw must leave no trace)."""
    drawn = []
    for _ in range(count):
        for _ in range(SEPARATE_TRIES if apart else 1):
            lesion = DRAWERS[label](body, rng)
            box = lesion.box_xywh()
            if not apart or (box is not None and not any(_touch(box, other) for other in apart)):
                if box is not None:
                    apart.append(box)
                drawn.append(lesion)
                break
    return drawn


def _touch(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two (x, y, w, h) pixel boxes share a pixel."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 grey levels."""
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
