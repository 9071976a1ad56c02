"""Comparisons between runs scored on the same test images: the AUC table, paired DeLong tests per class
(Holm-adjusted within each pair of runs) and paired patient-bootstrap tests of the mean AUC.

Rendering (Markdown, CSV, LaTeX, figures) is in `cxrres.report.comparison`.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres import metrics, runs
from cxrres.errors import CxrresError
from cxrres.evaluate import MEAN, N_BOOT, patient_groups
from cxrres.models import display_name


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run in a comparison: its directory, heading, resolution, arch, label and predictions."""

    run_dir: Path
    heading: str
    resolution_px: int
    arch: str
    label: str | None
    predictions: runs.Predictions


def load_runs(run_dirs: list[str | Path]) -> list[RunInfo]:
    """Runs with headings `<arch> <R> px` (plus seed or label where needed to tell them apart), sorted by resolution."""
    loaded = []
    for run_dir in run_dirs:
        loaded.append((Path(run_dir), runs.read_settings(run_dir), runs.read_predictions(run_dir)))
    loaded.sort(key=lambda item: (item[1].arch, item[1].resolution_px, item[1].label or "", item[1].seed))
    base = [f"{display_name(s.arch)} {s.resolution_px} px" + (f" {s.label}" if s.label else "") for _, s, _ in loaded]
    headings = [b + (f" seed {s.seed}" if base.count(b) > 1 else "") for b, (_, s, _) in zip(base, loaded)]
    headings = [h + (f" ({d.name})" if headings.count(h) > 1 else "") for h, (d, _, _) in zip(headings, loaded)]
    if len(set(headings)) < len(headings):
        raise CxrresError(f"the same run is listed twice: {', '.join(sorted({h for h in headings if headings.count(h) > 1}))}")
    return [RunInfo(d, h, int(s.resolution_px), s.arch, s.label, p) for h, (d, s, p) in zip(headings, loaded)]


def align(infos: list[RunInfo]) -> tuple[list[str], list[str], np.ndarray, dict[str, np.ndarray]]:
    """(images, classes, labels (N, C), scores per heading (N, C) with NaN where a run lacks a class).

    Refuses runs scored on different test images or with different labels for the same image and class.
    """
    reference = sorted(infos[0].predictions.images)
    for info in infos[1:]:
        images = sorted(info.predictions.images)
        if images != reference:
            common = len(set(images) & set(reference))
            raise CxrresError(f"runs scored on different test images: {infos[0].run_dir} has {len(reference):,}, "
                              f"{info.run_dir} has {len(images):,}, {common:,} in common")
    classes = list(dict.fromkeys(c for info in infos for c in info.predictions.classes))
    labels = np.full((len(reference), len(classes)), -1, np.int16)
    scores: dict[str, np.ndarray] = {}
    for info in infos:
        p = info.predictions
        order = np.argsort(np.asarray(p.images))
        own = np.full((len(reference), len(classes)), np.nan)
        for j, name in enumerate(p.classes):
            c = classes.index(name)
            column = p.labels[order, j].astype(np.int16)
            if ((labels[:, c] >= 0) & (labels[:, c] != column)).any():
                raise CxrresError(f"{info.run_dir}: labels of {name} differ from another run's on the same images")
            labels[:, c] = column
            own[:, c] = p.scores[order, j]
        scores[info.heading] = own
    return reference, classes, labels.astype(np.uint8), scores


@dataclass
class Comparison:
    """Everything `cxrres compare` reports."""

    runs: list[RunInfo]
    auc: pd.DataFrame  # long: heading, resolution_px, arch, class, auc, ci_low, ci_high
    delong: pd.DataFrame  # run_a, run_b, class, auc_a, auc_b, z, p, p_holm
    bootstrap: pd.DataFrame  # run_a, run_b, classes, mean_a, mean_b (over common classes), difference, ci_low, ci_high, p
    n_images: int
    n_boot: int
    localization: pd.DataFrame | None = None  # heading, resolution_px, arch, class, n, precision, accuracy, pointing


def localization_long(infos: list[RunInfo]) -> pd.DataFrame | None:
    """The runs' localization.csv tables in long form, when every run has one (else None)."""
    paths = [info.run_dir / runs.LOCALIZATION for info in infos]
    if not all(p.is_file() for p in paths):
        return None
    frames = [pd.read_csv(p).assign(heading=i.heading, resolution_px=i.resolution_px, arch=i.arch) for p, i in zip(paths, infos)]
    return pd.concat(frames, ignore_index=True)


def compare_runs(run_dirs: list[str | Path], level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """AUC table, per-class paired DeLong tests (Holm within each pair) and bootstrap tests of the mean AUC."""
    if len(run_dirs) < 1:
        raise CxrresError("give at least one run directory")
    infos = load_runs(run_dirs)
    images, classes, labels, scores = align(infos)
    defined = np.array([metrics.undefined_reason(labels[:, c]) is None for c in range(len(classes))])
    groups, _ = patient_groups(images)
    weights = metrics.patient_weights(groups, n_boot, seed)
    rows, replicates = [], {}
    for info in infos:
        s = scores[info.heading]
        own = defined & ~np.isnan(s).any(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
            for c, name in enumerate(classes):
                value = metrics.delong_ci(labels[:, c], s[:, c], level) if not np.isnan(s[:, c]).any() else (math.nan,) * 3
                rows.append({"heading": info.heading, "resolution_px": info.resolution_px, "arch": info.arch,
                             "class": name, "auc": value[0], "ci_low": value[1], "ci_high": value[2]})
        replicates[info.heading] = metrics.bootstrap_class_replicates(labels, np.nan_to_num(s), weights, own)
        point = float(np.mean([metrics.auc(labels[:, c], s[:, c]) for c in np.flatnonzero(own)]))
        low, high = metrics.percentile_interval(metrics.replicate_means(replicates[info.heading], own), level)
        rows.append({"heading": info.heading, "resolution_px": info.resolution_px, "arch": info.arch,
                     "class": MEAN, "auc": point, "ci_low": low, "ci_high": high})
    auc = pd.DataFrame(rows)
    delong_rows, boot_rows = [], []
    for a, b in itertools.combinations(infos, 2):
        sa, sb = scores[a.heading], scores[b.heading]
        pair = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
            for c, name in enumerate(classes):
                if not defined[c] or np.isnan(sa[:, c]).any() or np.isnan(sb[:, c]).any():
                    continue
                auc_a, auc_b, z, p = metrics.delong_paired(labels[:, c], sa[:, c], sb[:, c])
                pair.append({"run_a": a.heading, "run_b": b.heading, "class": name, "auc_a": auc_a, "auc_b": auc_b,
                             "z": z, "p": p})
        adjusted = metrics.holm(np.array([r["p"] for r in pair]))
        for r, q in zip(pair, adjusted):
            r["p_holm"] = q
        delong_rows += pair
        common = defined & ~np.isnan(sa).any(axis=0) & ~np.isnan(sb).any(axis=0)
        if not common.any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
            mean_a, mean_b = (float(np.mean([metrics.auc(labels[:, c], s[:, c]) for c in np.flatnonzero(common)])) for s in (sa, sb))
        d = metrics.replicate_means(replicates[a.heading], common) - metrics.replicate_means(replicates[b.heading], common)
        low, high = metrics.percentile_interval(d, level)
        boot_rows.append({"run_a": a.heading, "run_b": b.heading, "classes": int(common.sum()), "mean_a": mean_a,
                          "mean_b": mean_b, "difference": mean_a - mean_b, "ci_low": low, "ci_high": high,
                          "p": metrics.paired_bootstrap_p(d)})
    return Comparison(infos, auc, pd.DataFrame(delong_rows), pd.DataFrame(boot_rows), len(images), n_boot,
                      localization_long(infos))
