"""The mechanism, measured: a lesion's contrast-to-noise after downsampling to a resolution."""

from __future__ import annotations

import math

import numpy as np

from cxrres.synthetic.anatomy import Anatomy
from cxrres.synthetic.images import ImageSpec, render

# ---------------------------------------------------------------------------------------------------------- mechanism


def lesion_cnr(
    with_lesion: np.ndarray,
    without_lesion: np.ndarray,
    other_noise: np.ndarray,
    box_xywh: tuple[int, int, int, int],
    resolution_px: int,
) -> float:
    """Contrast-to-noise of a lesion after area-downsampling the renderings to `resolution_px`.

    Signal: the largest |with − without| inside the box (the lesion's peak contrast at that resolution).
    Noise: std of (without − other_noise) / √2 inside the box, where `other_noise` is the same lesion-free image
    with other lung markings and detector noise: the random background a reader must see the lesion through.
    """
    from cxrres.data.images import area_resize_float

    scale = resolution_px / with_lesion.shape[0]
    a, b, c = (area_resize_float(x, resolution_px) for x in (with_lesion, without_lesion, other_noise))
    x, y, w, h = box_xywh
    x0, y0 = int(math.floor(x * scale)), int(math.floor(y * scale))
    x1, y1 = max(x0 + 2, int(math.ceil((x + w) * scale))), max(y0 + 2, int(math.ceil((y + h) * scale)))
    signal = np.abs(a - b)[y0:y1, x0:x1].max()
    noise = (b - c)[y0:y1, x0:x1].std() / math.sqrt(2)
    return float(signal / max(noise, 1e-6))


def measure_cnr(
    label: str, resolutions_px: tuple[int, ...], n: int = 8, size_px: int = 1024, seed: int = 0
) -> dict[int, float]:
    """Median `lesion_cnr` of `n` random patients with one `label` lesion, per resolution."""
    values = []
    for i in range(n):
        spec = ImageSpec(
            "cnr.png",
            i,
            0,
            (label,),
            int(np.random.default_rng([seed, 9, i]).integers(2**62)),
            Anatomy.sample(np.random.default_rng([seed, 8, i])),
        )
        with_lesion, boxes = render(spec, size_px)
        without, _ = render(spec, size_px, with_lesions=False)
        other, _ = render(spec, size_px, with_lesions=False, realisation=1)
        box = next(b for name, b in boxes if name == label)
        values.append([lesion_cnr(with_lesion, without, other, box, r) for r in resolutions_px])
    return dict(zip(resolutions_px, np.median(np.asarray(values), axis=0).round(2).tolist()))
