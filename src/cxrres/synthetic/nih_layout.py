"""The phantom data set: which patients and findings (`plan`), written in the NIH layout (`synthesize`)."""

from __future__ import annotations

import argparse

import math
import os
from pathlib import Path

import cv2
import numpy as np

from cxrres.data.labels import CHEXNET_ORDER, CLASSES, NIH_BOX_NAMES
from cxrres.data.metadata import BBOX_HEADER, DATA_ENTRY_HEADER
from cxrres.errors import CxrresError
from cxrres.util.parallel import ordered_map, write_text_atomic
from cxrres.synthetic.anatomy import Anatomy
from cxrres.synthetic.images import ImageSpec, render, to_uint8
from cxrres.synthetic.writing import write_phantom_marker

#: Relative frequency of each finding among abnormal images: real ChestX-ray14 prevalences raised to 0.6, so that
#: rare classes still get positives in a phantom of a few hundred images (order of frequency kept).
_REAL_PREVALENCE = {
    "Infiltration": 17.7,
    "Effusion": 11.9,
    "Atelectasis": 10.3,
    "Nodule": 5.6,
    "Mass": 5.2,
    "Pneumothorax": 4.7,
    "Consolidation": 4.2,
    "Pleural_Thickening": 3.0,
    "Cardiomegaly": 2.5,
    "Emphysema": 2.2,
    "Edema": 2.1,
    "Fibrosis": 1.5,
    "Pneumonia": 1.3,
    "Hernia": 0.2,
}
FINDING_WEIGHTS = {name: p**0.6 for name, p in _REAL_PREVALENCE.items()}
#: Findings that tend to come together in ChestX-ray14: (given, companion, probability).
COMPANIONS = (
    ("Effusion", "Atelectasis", 0.30),
    ("Cardiomegaly", "Effusion", 0.35),
    ("Edema", "Effusion", 0.40),
    ("Pneumonia", "Infiltration", 0.40),
    ("Mass", "Nodule", 0.25),
    ("Atelectasis", "Infiltration", 0.25),
    ("Consolidation", "Effusion", 0.20),
    ("Emphysema", "Pneumothorax", 0.15),
)
NO_FINDING_FRACTION = 0.5
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


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
    """Findings of one image: none with probability NO_FINDING_FRACTION, else 1-3 drawn by the weights plus
    companions."""
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


def plan(
    n_images: int, n_patients: int, seed: int, enrich: dict[str, float] | None = None
) -> tuple[list[ImageSpec], dict[int, str]]:
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
            specs.append(
                ImageSpec(f"{patient:08d}_{follow_up:03d}.png", patient, follow_up, findings, image_seed, anatomy)
            )
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


def image_meta(spec: ImageSpec) -> tuple[int, str, str]:
    """(age in years, sex M/F, view PA/AP) of one phantom image, the same in every layout."""
    meta = np.random.default_rng([spec.seed, 4])
    age = int(meta.integers(18, 88)) + spec.follow_up // 4
    return age, "MF"[spec.patient_id % 2], "PA" if meta.random() < 0.6 else "AP"


def checked_plan(
    n_images: int, n_patients: int | None, size_px: int, seed: int, enrich: dict[str, float] | None = None
) -> tuple[list[ImageSpec], dict[int, str], int]:
    """`plan` for a writer: (specs, parts, patients), patients defaulting to images / 2.5; CxrresError on bad
    arguments."""
    n_patients = n_patients or max(1, round(n_images / 2.5))
    if size_px < 64:
        raise CxrresError(f"phantom size {size_px} px is too small (at least 64)")
    try:
        specs, parts = plan(n_images, n_patients, seed, enrich)
    except ValueError as exc:
        raise CxrresError(str(exc)) from None
    return specs, parts, n_patients


def synthesize(
    out: str | Path,
    n_images: int = 1000,
    n_patients: int | None = None,
    size_px: int = 1024,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    enrich: dict[str, float] | None = None,
) -> dict:
    """Write a phantom data set in the NIH layout under `out`; returns counts. Same arguments -> byte-identical files.

    `enrich` ({class: factor}) draws some findings more often than their real-prevalence weight."""
    from tqdm import tqdm

    out = Path(out)
    specs, parts, n_patients = checked_plan(n_images, n_patients, size_px, seed, enrich)
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
    entry = [",".join(DATA_ENTRY_HEADER)]
    for spec in specs:
        age, sex, view = image_meta(spec)
        entry.append(
            f"{spec.name},{'|'.join(spec.findings) or 'No Finding'},{spec.follow_up},{spec.patient_id},{age},"
            f"{sex},{view},{size_px},{size_px},{spacing:.6g},{spacing:.6g}"
        )
    write_text_atomic(out / "Data_Entry_2017_v2020.csv", "\n".join(entry) + "\n")
    box_lines = [",".join(BBOX_HEADER) + ",,,"]  # NIH's header has three trailing empty fields
    for spec in specs:
        if parts[spec.patient_id] == "test":
            for label, (x, y, w, h) in boxes[spec.name]:
                box_lines.append(f"{spec.name},{NIH_BOX_NAMES.get(label, label)},{x},{y},{w},{h}")
    write_text_atomic(out / "BBox_List_2017.csv", "\n".join(box_lines) + "\n")
    write_text_atomic(out / "train_val_list.txt", "\n".join(s.name for s in specs if parts[s.patient_id] != "test"))
    write_text_atomic(out / "test_list.txt", "\n".join(s.name for s in specs if parts[s.patient_id] == "test"))
    for part in ("train", "val", "test"):
        rows = [
            s.name + " " + " ".join("1" if c in s.findings else "0" for c in CHEXNET_ORDER)
            for s in specs
            if parts[s.patient_id] == part
        ]
        write_text_atomic(out / "splits" / "chexnet" / f"{part}_list.txt", "\n".join(rows) + "\n")
    write_phantom_marker(out, "nih", seed, size_px)
    return {"images": len(specs), "patients": n_patients, "boxes": len(box_lines) - 1, "size_px": size_px}


def parse_enrichment(text: str) -> dict[str, float]:
    """'Nodule=3,Cardiomegaly=2' -> {"Nodule": 3.0, "Cardiomegaly": 2.0} (`cxrres synth --enrich`'s argparse type)."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, factor = item.partition("=")
        try:
            out[name.strip()] = float(factor)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected CLASS=FACTOR, got {item!r}") from None
    return out
