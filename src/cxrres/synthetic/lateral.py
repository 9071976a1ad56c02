"""A lateral view of a phantom patient, for the layouts whose studies have one (CheXpert, MIMIC-CXR).

The frontal phantom has no depth, so its lesions cannot be projected sideways: a lateral image shows the patient's
body (torso, one lung field, heart in front, spine behind, sternum, diaphragm, lung markings) without findings.
In those layouts a study's labels apply to each of its views, as in the real data sets, so a lateral of a positive
study is labelled positive; the default (`--views frontal`) leaves laterals out.
"""

from __future__ import annotations

import numpy as np

from cxrres.synthetic.anatomy import Canvas, sigmoid
from cxrres.synthetic.images import ImageSpec


def render_lateral(spec: ImageSpec, size_px: int) -> np.ndarray:
    """One lateral image of `spec`'s patient: float32 (S, S) in [0, 1] (anterior to the left), without lesions."""
    canvas = Canvas(spec.anatomy, size_px)
    a, u, v = spec.anatomy, canvas.u, canvas.v
    torso = canvas.ellipse(0.5, 0.56, 0.38, 0.56, softness=12)
    image = 0.05 + torso * (0.38 + 0.14 * np.clip(v, 0, 1))
    dome = 0.70 + 0.25 * (u - 0.5) ** 2 - 0.05 * (u - 0.5)  # the diaphragm, higher in front
    lung = canvas.ellipse(0.52, 0.45, 0.26, a.lung_half_height * 1.05, softness=6) * sigmoid((dome - v) / 0.01)
    image -= 0.28 * lung
    heart = canvas.ellipse(0.37, 0.62, a.heart_half_width * 1.15, a.heart_half_height * 1.2, angle=0.5, softness=3)
    image += 0.15 * heart * lung + 0.05 * heart
    spine = sigmoid((0.05 - np.abs(u - 0.8)) / (canvas.edge * 3)) * sigmoid((v - 0.08) / 0.02)
    discs = np.exp(-(((((v - 0.1) / 0.045) % 1.0 - 0.5) / 0.08) ** 2))  # the gaps between vertebral bodies
    image += 0.20 * spine * (1 - 0.5 * discs)
    sternum = np.exp(-(((u - 0.17 - 0.08 * (v - 0.3)) / 0.012) ** 2)) * (v > 0.18) * (v < 0.58)
    image += 0.06 * sternum
    texture = np.random.default_rng([spec.anatomy.texture_seed, 5])
    markings = canvas.smooth_noise(texture, 3.5) * 0.5 + canvas.smooth_noise(texture, 9.0) * 0.5
    image += 0.022 * markings * lung
    noise_rng = np.random.default_rng([spec.seed, 5])
    gain, offset = noise_rng.uniform(0.88, 1.12), noise_rng.uniform(-0.035, 0.035)
    image = image * gain + offset + 0.012 * noise_rng.standard_normal(image.shape).astype(np.float32)
    return np.clip(image, 0, 1).astype(np.float32)
