"""The phantom: a synthetic ChestX-ray14 in the NIH layout, where resolution matters (see docs/phantom.md).

Anatomy is drawn in patient coordinates (u, v) in [0, 1] (u to the image's right, v down), mapped to the image by
a per-patient scale, shift and small rotation. Intensities are in [0, 1] (1 = white = dense) before exposure,
noise and quantisation to 8 bits. Every lesion is drawn from a smooth support mask; its box is the pixel extent
of that mask (> 0.5) in the image frame of `size_px` pixels (the 1024-px frame at the default size).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cxrres.data.labels import BOX_CLASSES, CHEXNET_ORDER, CLASSES
from cxrres.parallel import ordered_map, write_text_atomic

#: Relative frequency of each finding among abnormal images: real ChestX-ray14 prevalences raised to 0.6, so that
#: rare classes still get positives in a phantom of a few hundred images (order of frequency kept).
_REAL_PREVALENCE = {
    "Infiltration": 17.7, "Effusion": 11.9, "Atelectasis": 10.3, "Nodule": 5.6, "Mass": 5.2, "Pneumothorax": 4.7,
    "Consolidation": 4.2, "Pleural_Thickening": 3.0, "Cardiomegaly": 2.5, "Emphysema": 2.2, "Edema": 2.1,
    "Fibrosis": 1.5, "Pneumonia": 1.3, "Hernia": 0.2,
}
FINDING_WEIGHTS = {name: p**0.6 for name, p in _REAL_PREVALENCE.items()}
#: Findings that tend to come together in ChestX-ray14: (given, companion, probability).
COMPANIONS = (
    ("Effusion", "Atelectasis", 0.30), ("Cardiomegaly", "Effusion", 0.35), ("Edema", "Effusion", 0.40),
    ("Pneumonia", "Infiltration", 0.40), ("Mass", "Nodule", 0.25), ("Atelectasis", "Infiltration", 0.25),
    ("Consolidation", "Effusion", 0.20), ("Emphysema", "Pneumothorax", 0.15),
)
NO_FINDING_FRACTION = 0.5
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


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

    def ellipse(self, cu: float, cv: float, au: float, av: float, angle: float = 0.0, softness: float = 1.0) -> np.ndarray:
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
    heart = cv_.ellipse(0.535 + 0.25 * (hw - a.heart_half_width), 0.63 + 0.4 * (hh - a.heart_half_height), hw, hh, angle=-0.25, softness=2)
    image += 0.17 * heart
    mediastinum = sigmoid((0.055 - np.abs(u - 0.5)) / (cv_.edge * 3)) * sigmoid((v - 0.12) / 0.02)
    image += 0.10 * mediastinum
    # posterior ribs: arcs v = v0 + k * spacing + 0.35 (u - 0.5)^2, bright thin bands over the lungs and chest wall
    phase = (v - 0.17 - 1.1 * (u - 0.5) ** 2) / a.rib_spacing
    k = np.round(phase)
    band = np.exp(-(((phase - k) * a.rib_spacing) / 0.0075) ** 2) * ((k >= 0) & (k <= 10))
    thorax = sigmoid((0.36 - np.abs(u - 0.5)) / 0.015)
    image += 0.07 * band * thorax * (1 - 0.6 * mediastinum)
    for side in (-1, 1):  # clavicles: slanted bands from the sternum out to the shoulders
        t = np.clip((u - 0.5) * side / 0.3, 0, 1)
        centre_v = 0.155 - 0.06 * t
        image += 0.11 * np.exp(-((v - centre_v) / 0.011) ** 2) * (t > 0.06) * (t < 0.99)
    markings = cv_.smooth_noise(rng_texture, 3.5) * 0.5 + cv_.smooth_noise(rng_texture, 9.0) * 0.5
    hilum_falloff = 0.6 + 0.4 * np.exp(-((np.abs(u - 0.5) - 0.12) ** 2 + (v - 0.45) ** 2) / 0.03)
    gain = lungs * hilum_falloff if body.markings_gain is None else lungs * hilum_falloff * body.markings_gain
    image += 0.022 * markings * gain
    return image.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------- lesions


@dataclass
class Lesion:
    """One drawn finding: its class, its additive intensity layer and its support mask (for the box)."""

    label: str
    layer: np.ndarray | None
    support: np.ndarray

    def box_xywh(self) -> tuple[int, int, int, int] | None:
        """Pixel extent (x, y, w, h) of the support mask (> 0.5), or None if it is empty."""
        ys, xs = np.nonzero(self.support > 0.5)
        if len(xs) == 0:
            return None
        return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _point_in_lung(body: Body, rng: np.random.Generator, side: str, max_radius: float, v_range: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float]:
    a = body.canvas.anatomy
    cu, cv = LUNG_CENTRES[side]
    while True:
        du, dv = rng.uniform(-1, 1, 2)
        if du * du + dv * dv <= max_radius**2:
            u, v = cu + du * a.lung_half_width, cv + dv * a.lung_half_height
            if v_range[0] <= (v - cv) / a.lung_half_height <= v_range[1]:
                return float(u), float(v)


def _side(rng: np.random.Generator) -> str:
    return "right" if rng.random() < 0.5 else "left"


def draw_nodule(body: Body, rng: np.random.Generator) -> Lesion:
    """A small, faint nodule (box ≈ 74 px at 1024) whose visible signature is fine, dense, calcified specks."""
    cv_ = body.canvas
    radius = float(rng.uniform(0.030, 0.042))
    cu, cvv = _point_in_lung(body, rng, _side(rng), 0.6, (-0.7, 0.6))
    support = cv_.ellipse(cu, cvv, radius, radius, softness=2)
    layer = 0.012 * support
    sigma = 0.002
    for _ in range(int(rng.integers(10, 16))):
        r, t = radius * 0.8 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        su, sv = cu + r * math.cos(t), cvv + r * math.sin(t)
        layer = layer + float(rng.uniform(0.13, 0.19)) * np.exp(-((cv_.u - su) ** 2 + (cv_.v - sv) ** 2) / (2 * sigma**2))
    return Lesion("Nodule", layer, support)


def draw_mass(body: Body, rng: np.random.Generator) -> Lesion:
    """A lobulated round opacity (box ≈ 224 px at 1024)."""
    cv_ = body.canvas
    radius = float(rng.uniform(0.095, 0.12))
    cu, cvv = _point_in_lung(body, rng, _side(rng), 0.35, (-0.6, 0.4))
    angle = np.arctan2(cv_.v - cvv, cv_.u - cu)
    lobes = 1 + 0.08 * np.sin(3 * angle + rng.uniform(0, 6.28)) + 0.05 * np.sin(5 * angle + rng.uniform(0, 6.28))
    r = np.sqrt((cv_.u - cu) ** 2 + (cv_.v - cvv) ** 2) / (radius * lobes)
    support = sigmoid((1 - r) * radius / (cv_.edge * 3))
    return Lesion("Mass", 0.15 * support, support)


def draw_atelectasis(body: Body, rng: np.random.Generator) -> Lesion:
    """A plate-like basal opacity (box ≈ 184 px at 1024)."""
    cv_ = body.canvas
    cu, cvv = _point_in_lung(body, rng, _side(rng), 0.5, (0.2, 0.6))
    support = cv_.ellipse(cu, cvv, float(rng.uniform(0.12, 0.14)), float(rng.uniform(0.05, 0.065)), angle=float(rng.uniform(-0.4, 0.4)), softness=6)
    return Lesion("Atelectasis", 0.12 * support * body.lung_mask(), support * (body.lung_mask() > 0.5))


def draw_effusion(body: Body, rng: np.random.Generator) -> Lesion:
    """Fluid in a costophrenic angle: a homogeneous basal opacity with a meniscus rising laterally (≈ 249 px)."""
    cv_, a = body.canvas, body.canvas.anatomy
    side = _side(rng)
    cu, cv = LUNG_CENTRES[side]
    lateral = np.clip((cv_.u - cu) * (1 if side == "left" else -1) / a.lung_half_width, -1, 1)
    level = cv + a.lung_half_height * (float(rng.uniform(0.5, 0.62)) - 0.35 * (lateral + 1) ** 2 / 4 * 2)
    lung = body.lungs[side]
    fluid = sigmoid((cv_.v - level) / (cv_.edge * 4)) * lung
    support = fluid
    return Lesion("Effusion", 0.30 * fluid, support)


def draw_pneumothorax(body: Body, rng: np.random.Generator) -> Lesion:
    """Apical-lateral air: a lucent rim without lung markings, bounded by a thin pleural line (≈ 235 px)."""
    cv_, a = body.canvas, body.canvas.anatomy
    side = _side(rng)
    cu, cv = LUNG_CENTRES[side]
    r = cv_.ellipse_radius(cu, cv, a.lung_half_width, a.lung_half_height)
    inner = float(rng.uniform(0.84, 0.89))
    upper = sigmoid((cv - 0.05 * a.lung_half_height - cv_.v) / (cv_.edge * 4))
    rim = sigmoid((r - inner) / 0.01) * body.lungs[side] * upper
    body.markings_gain = (1 - rim) if body.markings_gain is None else body.markings_gain * (1 - rim)
    body.lucency = 0.05 * rim if body.lucency is None else body.lucency + 0.05 * rim
    pleural_line = 0.07 * np.exp(-(((r - inner) * a.lung_half_width) / 0.0022) ** 2) * upper * body.lungs[side]
    return Lesion("Pneumothorax", pleural_line, rim)


def _patchy(body: Body, rng: np.random.Generator, label: str, radius: float, amplitude: float, grain_1024: float) -> Lesion:
    cv_ = body.canvas
    cu, cvv = _point_in_lung(body, rng, _side(rng), 0.3, (-0.4, 0.5))
    blob = cv_.ellipse(cu, cvv, radius, radius * float(rng.uniform(0.85, 1.05)), softness=25)
    patches = np.clip(0.6 + 0.5 * cv_.smooth_noise(rng, grain_1024), 0, 1)
    support = blob * (body.lung_mask() > 0.3)
    return Lesion(label, amplitude * blob * patches * body.lung_mask(), support)


def draw_infiltration(body: Body, rng: np.random.Generator) -> Lesion:
    """Ill-defined patchy opacity (≈ 346 px at 1024)."""
    return _patchy(body, rng, "Infiltration", float(rng.uniform(0.16, 0.19)), 0.08, 14.0)


def draw_pneumonia(body: Body, rng: np.random.Generator) -> Lesion:
    """Dense patchy air-space opacity (≈ 399 px at 1024)."""
    return _patchy(body, rng, "Pneumonia", float(rng.uniform(0.2, 0.235)), 0.14, 22.0)


def draw_consolidation(body: Body, rng: np.random.Generator) -> Lesion:
    """Homogeneous dense lobar opacity."""
    return _patchy(body, rng, "Consolidation", float(rng.uniform(0.09, 0.12)), 0.20, 60.0)


def draw_cardiomegaly(body: Body, rng: np.random.Generator) -> Lesion:
    """An enlarged heart (cardiothoracic ratio > 0.5; box ≈ 429 px at 1024)."""
    body.heart_scale = (float(rng.uniform(1.6, 1.75)), float(rng.uniform(1.65, 1.8)))
    cv_, a = body.canvas, body.canvas.anatomy
    hw, hh = a.heart_half_width * body.heart_scale[0], a.heart_half_height * body.heart_scale[1]
    support = cv_.ellipse(0.535 + 0.25 * (hw - a.heart_half_width), 0.63 + 0.4 * (hh - a.heart_half_height), hw, hh, angle=-0.25, softness=2)
    return Lesion("Cardiomegaly", None, support)


def draw_edema(body: Body, rng: np.random.Generator) -> Lesion:
    """Bilateral perihilar haze ("bat wing") with fine basal septal lines."""
    cv_ = body.canvas
    haze = np.exp(-((np.abs(cv_.u - 0.5) - 0.13) ** 2 / 0.006 + (cv_.v - 0.47) ** 2 / 0.02))
    kerley = (np.abs(np.sin(cv_.v * 2 * math.pi / 0.012)) > 0.93) * sigmoid((cv_.v - 0.6) / 0.02)
    lungs = body.lung_mask()
    return Lesion("Edema", (0.10 * haze + 0.04 * kerley) * lungs, haze * lungs)


def draw_emphysema(body: Body, rng: np.random.Generator) -> Lesion:
    """Hyperinflated, hyperlucent lungs with sparse markings."""
    lungs = body.lung_mask()
    body.lucency = 0.07 * lungs if body.lucency is None else body.lucency + 0.07 * lungs
    body.markings_gain = 0.35 * np.ones_like(lungs) if body.markings_gain is None else body.markings_gain * 0.35
    return Lesion("Emphysema", None, lungs)


def draw_fibrosis(body: Body, rng: np.random.Generator) -> Lesion:
    """Reticular (net-like) opacities in the lower and peripheral lungs."""
    cv_ = body.canvas
    net = np.abs(cv_.smooth_noise(rng, 5.0)) < 0.25
    where = body.lung_mask() * sigmoid((cv_.v - 0.5) / 0.04) * np.clip(np.abs(cv_.u - 0.5) / 0.25, 0, 1)
    return Lesion("Fibrosis", 0.07 * net * where, where)


def draw_pleural_thickening(body: Body, rng: np.random.Generator) -> Lesion:
    """A thin dense band along the lateral chest wall of one lung."""
    cv_, a = body.canvas, body.canvas.anatomy
    side = _side(rng)
    cu, cv = LUNG_CENTRES[side]
    r = cv_.ellipse_radius(cu, cv, a.lung_half_width, a.lung_half_height)
    lateral = ((cv_.u - cu) * (1 if side == "left" else -1)) > 0.02
    band = np.exp(-((r - 0.97) / 0.035) ** 2) * lateral * (cv_.v < cv + 0.2)
    return Lesion("Pleural_Thickening", 0.11 * band, band)


def draw_hernia(body: Body, rng: np.random.Generator) -> Lesion:
    """Hiatal hernia: a round retrocardiac opacity with an air-fluid level."""
    cv_ = body.canvas
    cu, cvv, rad = 0.53, 0.70, float(rng.uniform(0.045, 0.06))
    blob = cv_.ellipse(cu, cvv, rad, rad * 0.85, softness=3)
    air = blob * sigmoid((cvv - 0.2 * rad - cv_.v) / (cv_.edge * 2))
    return Lesion("Hernia", 0.12 * blob - 0.16 * air, blob)


DRAWERS = {
    "Atelectasis": draw_atelectasis, "Cardiomegaly": draw_cardiomegaly, "Consolidation": draw_consolidation,
    "Edema": draw_edema, "Effusion": draw_effusion, "Emphysema": draw_emphysema, "Fibrosis": draw_fibrosis,
    "Hernia": draw_hernia, "Infiltration": draw_infiltration, "Mass": draw_mass, "Nodule": draw_nodule,
    "Pleural_Thickening": draw_pleural_thickening, "Pneumonia": draw_pneumonia, "Pneumothorax": draw_pneumothorax,
}
#: Drawing order: findings that change the body (heart size, lucency, markings) before the opacities.
DRAW_ORDER = ("Cardiomegaly", "Emphysema", "Pneumothorax") + tuple(c for c in CLASSES if c not in ("Cardiomegaly", "Emphysema", "Pneumothorax"))


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


# ---------------------------------------------------------------------------------------------------------- data set


def finding_weights(enrich: dict[str, float] | None = None) -> dict[str, float]:
    """FINDING_WEIGHTS with the weight of each class in `enrich` multiplied by its factor (e.g. {"Nodule": 3})."""
    enrich = enrich or {}
    unknown = sorted(set(enrich) - set(FINDING_WEIGHTS))
    if unknown:
        raise ValueError(f"cannot enrich unknown class(es) {', '.join(unknown)}; choose from {', '.join(CLASSES)}")
    if any(not (f > 0 and math.isfinite(f)) for f in enrich.values()):
        raise ValueError(f"enrichment factors must be positive numbers, got {enrich}")
    return {name: w * enrich.get(name, 1.0) for name, w in FINDING_WEIGHTS.items()}


def _findings(rng: np.random.Generator, weights_by_name: dict[str, float]) -> tuple[str, ...]:
    """Findings of one image: none with probability NO_FINDING_FRACTION, else 1-3 drawn by the weights plus companions."""
    if rng.random() < NO_FINDING_FRACTION:
        return ()
    names = list(weights_by_name)
    weights = np.array([weights_by_name[n] for n in names])
    n = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
    chosen = set(rng.choice(names, size=n, replace=False, p=weights / weights.sum()).tolist())
    for given, companion, p in COMPANIONS:
        if given in chosen and rng.random() < p:
            chosen.add(companion)
    return tuple(c for c in CLASSES if c in chosen)


def plan(n_images: int, n_patients: int, seed: int, enrich: dict[str, float] | None = None) -> tuple[list[ImageSpec], dict[int, str]]:
    """The specs of every image (patients with 1+ follow-ups) and each patient's split part; deterministic in `seed`.

    `enrich` multiplies the drawing weight of some classes (see `finding_weights`)."""
    if n_images < 1 or not 1 <= n_patients <= n_images:
        raise ValueError(f"need 1 <= patients ({n_patients}) <= images ({n_images})")
    weights = finding_weights(enrich)
    rng = np.random.default_rng([seed, 0])
    # every patient gets one image; the rest go to patients drawn with a skew, so some have many follow-ups
    extra = rng.choice(n_patients, size=n_images - n_patients, p=(w := rng.gamma(0.7, 1.0, n_patients)) / w.sum())
    counts = np.ones(n_patients, int) + np.bincount(extra, minlength=n_patients)
    order = rng.permutation(n_patients)
    cut_train = int(round(SPLIT_FRACTIONS["train"] * n_patients))
    cut_val = cut_train + max(1, int(round(SPLIT_FRACTIONS["val"] * n_patients)))
    parts = {int(p) + 1: ("train" if i < cut_train else "val" if i < cut_val else "test") for i, p in enumerate(order)}
    specs = []
    for patient in range(1, n_patients + 1):
        anatomy = Anatomy.sample(np.random.default_rng([seed, 1, patient]))
        for follow_up in range(counts[patient - 1]):
            image_seed = int(np.random.default_rng([seed, 2, patient, follow_up]).integers(2**62))
            findings = _findings(np.random.default_rng([image_seed, 0]), weights)
            specs.append(ImageSpec(f"{patient:08d}_{follow_up:03d}.png", patient, follow_up, findings, image_seed, anatomy))
    return specs, parts


def _write_image(task: tuple[ImageSpec, int, str]) -> tuple[str, list[tuple[str, tuple[int, int, int, int]]]]:
    spec, size_px, folder = task
    image, boxes = render(spec, size_px)
    path = Path(folder) / spec.name
    tmp = path.with_name(path.name + ".tmp")
    if not cv2.imwrite(str(tmp) + ".png", to_uint8(image), [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"{path}: cannot write image")
    os.replace(str(tmp) + ".png", path)
    return spec.name, boxes


def synthesize(out: str | Path, n_images: int = 1000, n_patients: int | None = None, size_px: int = 1024, seed: int = 0,
               workers: int | None = None, progress: bool = True, enrich: dict[str, float] | None = None) -> dict:
    """Write a phantom data set in the NIH layout under `out`; returns counts. Same arguments -> byte-identical files.

    `enrich` ({class: factor}) draws some findings more often than their real-prevalence weight."""
    from tqdm import tqdm

    from cxrres.errors import CxrresError

    out = Path(out)
    n_patients = n_patients or max(1, round(n_images / 2.5))
    if size_px < 64:
        raise CxrresError(f"phantom size {size_px} px is too small (at least 64)")
    try:
        specs, parts = plan(n_images, n_patients, seed, enrich)
    except ValueError as exc:
        raise CxrresError(str(exc)) from None
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "splits" / "chexnet").mkdir(parents=True, exist_ok=True)
    tasks = [(spec, size_px, str(out / "images")) for spec in specs]
    n_workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    boxes: dict[str, list] = {}
    with tqdm(total=len(tasks), unit="img", desc=f"synth {size_px} px", disable=not progress) as bar:
        for name, image_boxes in ordered_map(_write_image, tasks, n_workers, chunksize=2):
            boxes[name] = image_boxes
            bar.update(1)
    spacing = 0.143 * 1024 / size_px
    entry = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
             "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"]
    for spec in specs:
        meta = np.random.default_rng([spec.seed, 4])
        age = int(meta.integers(18, 88)) + spec.follow_up // 4
        entry.append(f"{spec.name},{'|'.join(spec.findings) or 'No Finding'},{spec.follow_up},{spec.patient_id},{age},"
                     f"{'MF'[spec.patient_id % 2]},{'PA' if meta.random() < 0.6 else 'AP'},{size_px},{size_px},{spacing:.6g},{spacing:.6g}")
    write_text_atomic(out / "Data_Entry_2017_v2020.csv", "\n".join(entry) + "\n")
    box_lines = ["Image Index,Finding Label,Bbox [x,y,w,h],,,"]
    for spec in specs:
        if parts[spec.patient_id] == "test":
            for label, (x, y, w, h) in boxes[spec.name]:
                box_lines.append(f"{spec.name},{'Infiltrate' if label == 'Infiltration' else label},{x},{y},{w},{h}")
    write_text_atomic(out / "BBox_List_2017.csv", "\n".join(box_lines) + "\n")
    write_text_atomic(out / "train_val_list.txt", "\n".join(s.name for s in specs if parts[s.patient_id] != "test"))
    write_text_atomic(out / "test_list.txt", "\n".join(s.name for s in specs if parts[s.patient_id] == "test"))
    for part in ("train", "val", "test"):
        rows = [s.name + " " + " ".join("1" if c in s.findings else "0" for c in CHEXNET_ORDER) for s in specs if parts[s.patient_id] == part]
        write_text_atomic(out / "splits" / "chexnet" / f"{part}_list.txt", "\n".join(rows) + "\n")
    return {"images": len(specs), "patients": n_patients, "boxes": len(box_lines) - 1, "size_px": size_px}


# ---------------------------------------------------------------------------------------------------------- mechanism


def lesion_cnr(with_lesion: np.ndarray, without_lesion: np.ndarray, other_noise: np.ndarray, box_xywh: tuple[int, int, int, int],
               resolution_px: int) -> float:
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


def measure_cnr(label: str, resolutions_px: tuple[int, ...], n: int = 8, size_px: int = 1024, seed: int = 0) -> dict[int, float]:
    """Median `lesion_cnr` of `n` random patients with one `label` lesion, per resolution."""
    values = []
    for i in range(n):
        spec = ImageSpec("cnr.png", i, 0, (label,), int(np.random.default_rng([seed, 9, i]).integers(2**62)), Anatomy.sample(np.random.default_rng([seed, 8, i])))
        with_lesion, boxes = render(spec, size_px)
        without, _ = render(spec, size_px, with_lesions=False)
        other, _ = render(spec, size_px, with_lesions=False, realisation=1)
        box = next(b for name, b in boxes if name == label)
        values.append([lesion_cnr(with_lesion, without, other, box, r) for r in resolutions_px])
    return dict(zip(resolutions_px, np.median(np.asarray(values), axis=0).round(2).tolist()))
