"""The phantom's lesions: one drawer per finding, each with a realistic size at 1024 px and its true box."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxrres.data.labels import CLASSES
from cxrres.synthetic.anatomy import Body, LUNG_CENTRES, sigmoid

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


def _point_in_lung(
    body: Body, rng: np.random.Generator, side: str, max_radius: float, v_range: tuple[float, float] = (0.0, 1.0)
) -> tuple[float, float]:
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
        layer = layer + float(rng.uniform(0.13, 0.19)) * np.exp(
            -((cv_.u - su) ** 2 + (cv_.v - sv) ** 2) / (2 * sigma**2)
        )
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
    support = cv_.ellipse(
        cu,
        cvv,
        float(rng.uniform(0.12, 0.14)),
        float(rng.uniform(0.05, 0.065)),
        angle=float(rng.uniform(-0.4, 0.4)),
        softness=6,
    )
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
    pleural_line = 0.07 * np.exp(-((((r - inner) * a.lung_half_width) / 0.0022) ** 2)) * upper * body.lungs[side]
    return Lesion("Pneumothorax", pleural_line, rim)


def _patchy(
    body: Body, rng: np.random.Generator, label: str, radius: float, amplitude: float, grain_1024: float
) -> Lesion:
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
    support = cv_.ellipse(
        0.535 + 0.25 * (hw - a.heart_half_width),
        0.63 + 0.4 * (hh - a.heart_half_height),
        hw,
        hh,
        angle=-0.25,
        softness=2,
    )
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
    band = np.exp(-(((r - 0.97) / 0.035) ** 2)) * lateral * (cv_.v < cv + 0.2)
    return Lesion("Pleural_Thickening", 0.11 * band, band)


def draw_hernia(body: Body, rng: np.random.Generator) -> Lesion:
    """Hiatal hernia: a round retrocardiac opacity with an air-fluid level."""
    cv_ = body.canvas
    cu, cvv, rad = 0.53, 0.70, float(rng.uniform(0.045, 0.06))
    blob = cv_.ellipse(cu, cvv, rad, rad * 0.85, softness=3)
    air = blob * sigmoid((cvv - 0.2 * rad - cv_.v) / (cv_.edge * 2))
    return Lesion("Hernia", 0.12 * blob - 0.16 * air, blob)


DRAWERS = {
    "Atelectasis": draw_atelectasis,
    "Cardiomegaly": draw_cardiomegaly,
    "Consolidation": draw_consolidation,
    "Edema": draw_edema,
    "Effusion": draw_effusion,
    "Emphysema": draw_emphysema,
    "Fibrosis": draw_fibrosis,
    "Hernia": draw_hernia,
    "Infiltration": draw_infiltration,
    "Mass": draw_mass,
    "Nodule": draw_nodule,
    "Pleural_Thickening": draw_pleural_thickening,
    "Pneumonia": draw_pneumonia,
    "Pneumothorax": draw_pneumothorax,
}
#: Drawing order: findings that change the body (heart size, lucency, markings) before the opacities.
DRAW_ORDER = ("Cardiomegaly", "Emphysema", "Pneumothorax") + tuple(
    c for c in CLASSES if c not in ("Cardiomegaly", "Emphysema", "Pneumothorax")
)
