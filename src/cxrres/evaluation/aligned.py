"""The runs of a comparison: their headings and seed groups, and their predictions aligned on the test images they share
(labels checked to agree, masked labels kept apart)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from cxrres import runs
from cxrres.errors import CxrresError
from cxrres.models.registry import display_name


UNFILLED = -2  # a label no run has filled in yet while aligning (-1 is a masked label)


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run in a comparison: directory, heading, resolution (px), arch, label, predictions, seed and
    its group (the heading shared by the seeds of one arch, resolution and label)."""

    run_dir: Path
    heading: str
    resolution_px: int
    arch: str
    label: str | None
    predictions: runs.Predictions
    seed: int = 0
    group: str = ""


def load_runs(run_dirs: list[str | Path]) -> list[RunInfo]:
    """Runs with headings `<arch> <R> px` (plus seed or label where needed to tell them apart), sorted by resolution.

    Runs that differ only by seed share a group named `<arch> <R> px[ <label>]`; a run whose seed repeats within its
    group (the same run in two directories) is a group of its own."""
    loaded = []
    for run_dir in run_dirs:
        loaded.append((Path(run_dir), runs.read_settings(run_dir), runs.read_predictions(run_dir)))
    loaded.sort(key=lambda item: (item[1].arch, item[1].resolution_px, item[1].label or "", item[1].seed))
    base = [f"{display_name(s.arch)} {s.resolution_px} px" + (f" {s.label}" if s.label else "") for _, s, _ in loaded]
    headings = [b + (f" seed {s.seed}" if base.count(b) > 1 else "") for b, (_, s, _) in zip(base, loaded)]
    headings = [h + (f" ({d.name})" if headings.count(h) > 1 else "") for h, (d, _, _) in zip(headings, loaded)]
    if len(set(headings)) < len(headings):
        raise CxrresError(
            f"the same run is listed twice: {', '.join(sorted({h for h in headings if headings.count(h) > 1}))}"
        )
    seeds_of = {b: [s.seed for bb, (_, s, _) in zip(base, loaded) if bb == b] for b in base}
    groups = [b if len(set(seeds_of[b])) == len(seeds_of[b]) else h for b, h in zip(base, headings)]
    return [
        RunInfo(d, h, int(s.resolution_px), s.arch, s.label, p, int(s.seed), g)
        for h, g, (d, s, p) in zip(headings, groups, loaded)
    ]


def seed_groups(infos: list[RunInfo]) -> dict[str, list[RunInfo]]:
    """Group heading -> its runs (ascending seed), groups in run order."""
    out: dict[str, list[RunInfo]] = {}
    for info in infos:
        out.setdefault(info.group or info.heading, []).append(info)
    return {g: sorted(members, key=lambda i: i.seed) for g, members in out.items()}


class Aligned(NamedTuple):
    """Runs on one test set, rows in sorted image order: labels (N, C) int8 (1, 0, -1 masked out of that class),
    scores per heading (N, C) with NaN where a run lacks a class, and the patients where a run recorded them."""

    images: list[str]
    classes: list[str]
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    patient_ids: list[str] | None


def align(infos: list[RunInfo]) -> Aligned:
    """The runs' predictions on their common test images and classes.

    Refuses runs scored on different test images, with different labels for the same image and class, or recording
    different patients for the same image.
    """
    reference = sorted(infos[0].predictions.images)
    for info in infos[1:]:
        images = sorted(info.predictions.images)
        if images != reference:
            common = len(set(images) & set(reference))
            raise CxrresError(
                f"runs scored on different test images: {infos[0].run_dir} has {len(reference):,}, "
                f"{info.run_dir} has {len(images):,}, {common:,} in common"
            )
    classes = list(dict.fromkeys(c for info in infos for c in info.predictions.classes))
    labels = np.full((len(reference), len(classes)), UNFILLED, np.int16)
    scores: dict[str, np.ndarray] = {}
    for info in infos:
        labels, scores[info.heading] = _aligned(info.predictions, classes, labels, str(info.run_dir))
    return Aligned(reference, classes, labels.astype(np.int8), scores, _patients(infos))


def _patients(infos: list[RunInfo]) -> list[str] | None:
    """The patient of each image in sorted image order, from the runs that record them (None if none does)."""
    found: list[str] | None = None
    for info in infos:
        p = info.predictions
        if p.patient_ids is None:
            continue
        mine = [p.patient_ids[i] for i in np.argsort(np.asarray(p.images))]
        if found is not None and mine != found:
            where = next(i for i, (a, b) in enumerate(zip(mine, found)) if a != b)
            raise CxrresError(
                f"{info.run_dir}: records patient {mine[where]} for {sorted(p.images)[where]}, "
                f"another run {found[where]}"
            )
        found = mine
    return found


def _aligned(p: runs.Predictions, classes: list[str], labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels filled in, scores (N, C) in sorted-image order with NaN for classes `p` lacks); refuses other labels."""
    order = np.argsort(np.asarray(p.images))
    own = np.full((len(p.images), len(classes)), np.nan)
    for j, name in enumerate(p.classes):
        c = classes.index(name)
        column = p.labels[order, j].astype(np.int16)
        if ((labels[:, c] != UNFILLED) & (labels[:, c] != column)).any():
            raise CxrresError(
                f"{where}: labels of {name} differ from another run's on the same images (e.g. another "
                "`uncertain` policy); such runs cannot be compared"
            )
        labels[:, c] = column
        own[:, c] = p.scores[order, j]
    return labels, own


def label_counts(labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Per class: the test images labelled positive, negative and masked out (-1) of its AUC."""
    return pd.DataFrame(
        {
            "class": classes,
            "n_pos": (labels == 1).sum(axis=0),
            "n_neg": (labels == 0).sum(axis=0),
            "n_masked": (labels == -1).sum(axis=0),
        }
    )
