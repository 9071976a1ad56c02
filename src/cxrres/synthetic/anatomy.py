"""The phantom's anatomy: per-patient geometry, the canvas in patient coordinates, and the lesion-free body."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np


# ---------------------------------------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class Anatomy:
    """One patient's body: the image-from-patient mapping and the shape parameters that vary between patients."""

    scale: float
    shift_u: float
    shift_v: float
    rotation_rad: float
    lung_half_width: float
    lung_half_height: float
    heart_half_width: float
    heart_half_height: float
    rib_spacing: float
    texture_seed: int

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Anatomy":
        """A random patient (sizes as fractions of the image side)."""
        return cls(
            scale=float(rng.uniform(0.92, 1.06)),
            shift_u=float(rng.uniform(-0.025, 0.025)),
            shift_v=float(rng.uniform(-0.03, 0.03)),
            rotation_rad=math.radians(float(rng.uniform(-4.0, 4.0))),
            lung_half_width=float(rng.uniform(0.135, 0.16)),
            lung_half_height=float(rng.uniform(0.27, 0.31)),
            heart_half_width=float(rng.uniform(0.125, 0.145)),
            heart_half_height=float(rng.uniform(0.105, 0.12)),
            rib_spacing=float(rng.uniform(0.05, 0.058)),
            texture_seed=int(rng.integers(2**31)),
        )


@dataclass
class Canvas:
    """Patient coordinates of every pixel of a `size_px` image, and helpers that draw in them."""

    anatomy: Anatomy
    size_px: int
    u: np.ndarray = field(init=False)
    v: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        a, s = self.anatomy, self.size_px
        y, x = np.mgrid[0:s, 0:s].astype(np.float32)
        x, y = (x + 0.5) / s - 0.5 - a.shift_u, (y + 0.5) / s - 0.5 - a.shift_v
        c, n = math.cos(-a.rotation_rad), math.sin(-a.rotation_rad)
        self.u = ((c * x - n * y) / a.scale + 0.5).astype(np.float32)
        self.v = ((n * x + c * y) / a.scale + 0.5).astype(np.float32)

    @property
    def edge(self) -> float:
        """Width of a soft edge in patient units: about one pixel of this image, at least 1/1024."""
        return max(1.0 / self.size_px, 1.0 / 1024) / self.anatomy.scale

    def ellipse_radius(self, cu: float, cv: float, au: float, av: float, angle: float = 0.0) -> np.ndarray:
        """Normalised radius (1 on the boundary) of an ellipse centred at (cu, cv) with half-axes (au, av)."""
        du, dv = self.u - cu, self.v - cv
        if angle:
            c, s = math.cos(angle), math.sin(angle)
            du, dv = c * du + s * dv, -s * du + c * dv
        return np.sqrt((du / au) ** 2 + (dv / av) ** 2)

    def ellipse(
        self, cu: float, cv: float, au: float, av: float, angle: float = 0.0, softness: float = 1.0
    ) -> np.ndarray:
        """Smooth 0..1 mask of an ellipse; the edge is `softness` edge widths wide."""
        r = self.ellipse_radius(cu, cv, au, av, angle)
        return sigmoid((1.0 - r) * min(au, av) / (self.edge * softness))

    def smooth_noise(self, rng: np.random.Generator, sigma_1024: float) -> np.ndarray:
        """Zero-mean, unit-std Gaussian random field with correlation length `sigma_1024` px at 1024 px."""
        sigma = max(sigma_1024 * self.size_px / 1024, 0.3)
        field_ = cv2.GaussianBlur(rng.standard_normal((self.size_px, self.size_px)).astype(np.float32), (0, 0), sigma)
        return field_ / (field_.std() + 1e-8)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, float32."""
    return (0.5 * (1.0 + np.tanh(0.5 * np.clip(x, -40, 40)))).astype(np.float32)


LUNG_CENTRES = {"right": (0.31, 0.45), "left": (0.69, 0.45)}  # the patient's right lung is on the image's left


@dataclass
class Body:
    """The rendered lesion-free layers of one image (kept separate so lesions can modify them)."""

    canvas: Canvas
    lungs: dict[str, np.ndarray]
    heart_scale: tuple[float, float] = (1.0, 1.0)
    lucency: np.ndarray | None = None  # extra darkening inside the lungs (emphysema, pneumothorax)
    markings_gain: np.ndarray | None = None  # multiplies the lung markings (0 = no markings)

    def lung_mask(self) -> np.ndarray:
        return np.maximum(self.lungs["right"], self.lungs["left"])


def render_body(body: Body, rng_texture: np.random.Generator) -> np.ndarray:
    """Lesion-free radiograph in [0, 1]: soft tissue, lungs with markings, heart, mediastinum, ribs, clavicles."""
    cv_, a = body.canvas, body.canvas.anatomy
    u, v = cv_.u, cv_.v
    torso = cv_.ellipse(0.5, 0.56, 0.46, 0.56, softness=12)
    image = 0.05 + torso * (0.36 + 0.14 * np.clip(v, 0, 1) + 0.08 * np.abs(u - 0.5))
    lungs = body.lung_mask()
    image -= 0.30 * lungs
    if body.lucency is not None:
        image -= body.lucency
    hw, hh = a.heart_half_width * body.heart_scale[0], a.heart_half_height * body.heart_scale[1]
    heart = cv_.ellipse(
        0.535 + 0.25 * (hw - a.heart_half_width),
        0.63 + 0.4 * (hh - a.heart_half_height),
        hw,
        hh,
        angle=-0.25,
        softness=2,
    )
    image += 0.17 * heart
    mediastinum = sigmoid((0.055 - np.abs(u - 0.5)) / (cv_.edge * 3)) * sigmoid((v - 0.12) / 0.02)
    image += 0.10 * mediastinum
    # posterior ribs: arcs v = v0 + k * spacing + 0.35 (u - 0.5)^2, bright thin bands over the lungs and chest wall
    phase = (v - 0.17 - 1.1 * (u - 0.5) ** 2) / a.rib_spacing
    k = np.round(phase)
    band = np.exp(-((((phase - k) * a.rib_spacing) / 0.0075) ** 2)) * ((k >= 0) & (k <= 10))
    thorax = sigmoid((0.36 - np.abs(u - 0.5)) / 0.015)
    image += 0.07 * band * thorax * (1 - 0.6 * mediastinum)
    for side in (-1, 1):  # clavicles: slanted bands from the sternum out to the shoulders
        t = np.clip((u - 0.5) * side / 0.3, 0, 1)
        centre_v = 0.155 - 0.06 * t
        image += 0.11 * np.exp(-(((v - centre_v) / 0.011) ** 2)) * (t > 0.06) * (t < 0.99)
    markings = cv_.smooth_noise(rng_texture, 3.5) * 0.5 + cv_.smooth_noise(rng_texture, 9.0) * 0.5
    hilum_falloff = 0.6 + 0.4 * np.exp(-((np.abs(u - 0.5) - 0.12) ** 2 + (v - 0.45) ** 2) / 0.03)
    gain = lungs * hilum_falloff if body.markings_gain is None else lungs * hilum_falloff * body.markings_gain
    image += 0.022 * markings * gain
    return image.astype(np.float32)
