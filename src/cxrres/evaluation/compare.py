"""Comparisons between runs scored on the same test images: the AUC table, paired DeLong tests per class
(Holm-adjusted within each pair of runs), paired patient-bootstrap tests of the mean AUC, and the best resolution
per class from the same bootstrap replicates.

Labels are 1/0, or -1 where masked out of a class (uncertain under `uncertain: ignore`): a class's AUC, DeLong tests
and bootstrap replicates use the images where its label is 1 or 0 (the same images for every run, whose labels must
agree). The bootstrap resamples the patients the predictions record (else those NIH names encode, else images).

Several seeds of one (architecture, resolution, label) form a group: its seed ensemble (mean of the seeds'
probabilities, `seeds.seed_ensemble`) is scored like a run, and the paired tests run per seed and between the
ensembles (the `scope` column). Rendering (Markdown, CSV, LaTeX, figures) is in `cxrres.report`.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres import runs
from cxrres.evaluation import calibration
from cxrres.evaluation import bootstrap
from cxrres.evaluation import metrics
from cxrres.evaluation import seeds
from cxrres.errors import CxrresError
from cxrres.evaluation.cross_resolution import train_test_long
from cxrres.evaluation.evaluate import MEAN, N_BOOT, patient_groups
from cxrres.models.registry import display_name
from cxrres.evaluation.aligned import RunInfo, _aligned, align, label_counts, load_runs, seed_groups

ENSEMBLE = "seed ensemble"  # the scope (and heading suffix) of the seed ensembles
SINGLE = "runs"  # the scope of the paired tests when no group has several seeds


@dataclass(frozen=True)
class Scoring:
    """One set of test scores that the statistics treat as a run: a run, or the seed ensemble of a group."""

    heading: str
    group: str
    arch: str
    resolution_px: int
    label: str | None
    seed: int | None  # None for a seed ensemble
    n_seeds: int
    scores: np.ndarray  # (N, C) aligned to the comparison's images and classes, NaN for classes not predicted

    @property
    def series(self) -> str:
        """The runs that compete for 'best resolution': same architecture and label, e.g. 'DenseNet-121'."""
        return display_name(self.arch) + (f" {self.label}" if self.label else "")


@dataclass
class Comparison:
    """Everything `cxrres compare` reports."""

    runs: list[RunInfo]
    auc: pd.DataFrame  # long: heading, group, seed, resolution_px, arch, label, class, auc, ci_low, ci_high
    delong: pd.DataFrame  # scope, run_a, run_b, class, auc_a, auc_b, z, p, p_holm, n_pos, few_positives
    bootstrap: (
        pd.DataFrame
    )  # scope, run_a, run_b, classes, mean_a, mean_b, difference, ci_low, ci_high, p, n_replicates
    n_images: int
    n_boot: int
    localization: pd.DataFrame | None = (
        None  # heading, group, seed, resolution_px, arch, class, n, precision, accuracy, pointing
    )
    ensemble_auc: pd.DataFrame = field(default_factory=pd.DataFrame)  # like `auc` for the seed ensembles, plus n_seeds
    best: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # scope, series, class, heading, resolution_px, auc, share, best, n_replicates
    level: float = 0.95
    unit: str = "patient"  # what the bootstrap resamples: patient, or image where no patient is known
    test_labels: pd.DataFrame = field(default_factory=pd.DataFrame)  # class, n_pos, n_neg, n_masked (`label_counts`)
    calibration: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # heading, resolution_px, class, average_precision, brier, ece
    reliability: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # heading, resolution_px, bin, low, high, n, mean_prob, frequency
    test_resolution: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # heading, resolution_px, test_resolution_px, auc (mean)

    @property
    def several_seeds(self) -> bool:
        """Whether some (arch, resolution, label) has several seeds."""
        return any(len(m) > 1 for m in seed_groups(self.runs).values())

    @property
    def main_scope(self) -> str:
        """The scope the report leads with: the seed ensembles when there are several seeds, else the single runs."""
        return ENSEMBLE if self.several_seeds else SINGLE


def localization_long(infos: list[RunInfo]) -> pd.DataFrame | None:
    """The runs' localization.csv tables in long form, when every run has one (else None)."""
    paths = [info.run_dir / runs.LOCALIZATION for info in infos]
    if not all(p.is_file() for p in paths):
        return None
    frames = [
        pd.read_csv(p).assign(
            heading=i.heading, group=i.group or i.heading, seed=i.seed, resolution_px=i.resolution_px, arch=i.arch
        )
        for p, i in zip(paths, infos)
    ]
    return pd.concat(frames, ignore_index=True)


def summarise_seeds(long: pd.DataFrame, value: str = "auc") -> pd.DataFrame:
    """Per group and class: n seeds, mean, sd (ddof 1) of `value` and every seed's value (`<value>_seed<k>`, and
    `ci_low_seed<k>`/`ci_high_seed<k>` where present), with the group's arch and resolution_px; group order kept."""
    keep = [c for c in ("ci_low", "ci_high") if c in long.columns and value == "auc"]
    frame = long[["group", "resolution_px", "seed", "class", value, *keep]].rename(columns={"group": "arch"})
    summary = seeds.seed_summary(frame, value).rename(columns={"arch": "group"})
    arch = long.drop_duplicates("group").set_index("group")["arch"]
    summary.insert(1, "arch", summary["group"].map(arch).to_numpy())
    return summary


def _score(
    scoring: Scoring, labels: np.ndarray, classes: list[str], defined: np.ndarray, weights: np.ndarray, level: float
) -> tuple[list[dict], np.ndarray]:
    """(AUC rows per class and the mean, (B, C) bootstrap replicates) of one scoring."""
    s = scoring.scores
    own = defined & ~np.isnan(s).any(axis=0)
    meta = {
        "heading": scoring.heading,
        "group": scoring.group,
        "seed": scoring.seed,
        "resolution_px": scoring.resolution_px,
        "arch": scoring.arch,
        "label": scoring.label,
    }
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
        for c, name in enumerate(classes):
            kept = metrics.kept_rows(labels[:, c])
            scored = kept.any() and not np.isnan(s[:, c]).any()
            value = metrics.delong_ci(labels[kept, c], s[kept, c], level) if scored else (math.nan,) * 3
            rows.append({**meta, "class": name, "auc": value[0], "ci_low": value[1], "ci_high": value[2]})
    replicates = bootstrap.bootstrap_class_replicates(labels, np.nan_to_num(s), weights, own)
    point = float(np.mean([rows[c]["auc"] for c in np.flatnonzero(own)])) if own.any() else math.nan
    low, high = (
        bootstrap.percentile_interval(bootstrap.replicate_means(replicates, own), level)
        if own.any()
        else (math.nan,) * 2
    )
    rows.append({**meta, "class": MEAN, "auc": point, "ci_low": low, "ci_high": high})
    return rows, replicates


def _pair_tests(
    scope: str,
    a: Scoring,
    b: Scoring,
    labels: np.ndarray,
    classes: list[str],
    defined: np.ndarray,
    replicates: dict[str, np.ndarray],
    level: float,
) -> tuple[list[dict], dict | None]:
    """Per-class paired DeLong tests and the paired bootstrap test of the mean AUC of a and b. A class with fewer than
    `metrics.MIN_POSITIVES` positives keeps its p but is flagged (`few_positives`) and left out of Holm's adjustment
    (p_holm NaN): its p is not a meaningful member of the family. The bootstrap row counts its valid replicates."""
    sa, sb = a.scores, b.scores
    pair = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
        for c, name in enumerate(classes):
            if not defined[c] or np.isnan(sa[:, c]).any() or np.isnan(sb[:, c]).any():
                continue
            kept = metrics.kept_rows(labels[:, c])
            auc_a, auc_b, z, p = metrics.delong_paired(labels[kept, c], sa[kept, c], sb[kept, c])
            n_pos = int(labels[kept, c].sum())
            pair.append(
                {
                    "scope": scope,
                    "run_a": a.heading,
                    "run_b": b.heading,
                    "class": name,
                    "auc_a": auc_a,
                    "auc_b": auc_b,
                    "z": z,
                    "p": p,
                    "p_holm": math.nan,
                    "n_pos": n_pos,
                    "few_positives": metrics.few_positives(n_pos),
                }
            )
    family = np.array([math.nan if r["few_positives"] else r["p"] for r in pair])
    for r, q in zip(pair, metrics.holm(family)):
        r["p_holm"] = q
    common = defined & ~np.isnan(sa).any(axis=0) & ~np.isnan(sb).any(axis=0)
    if not common.any():
        return pair, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
        mean_a, mean_b = (
            float(np.mean([metrics.masked_auc(labels[:, c], s[:, c]) for c in np.flatnonzero(common)]))
            for s in (sa, sb)
        )
    d = bootstrap.replicate_means(replicates[a.heading], common) - bootstrap.replicate_means(
        replicates[b.heading], common
    )
    low, high = bootstrap.percentile_interval(d, level)
    return pair, {
        "scope": scope,
        "run_a": a.heading,
        "run_b": b.heading,
        "classes": int(common.sum()),
        "mean_a": mean_a,
        "mean_b": mean_b,
        "difference": mean_a - mean_b,
        "ci_low": low,
        "ci_high": high,
        "p": bootstrap.paired_bootstrap_p(d),
        "n_replicates": int(np.count_nonzero(~np.isnan(d))),
    }


def best_resolution(
    scope: str, scorings: list[Scoring], points: pd.DataFrame, replicates: dict[str, np.ndarray], classes: list[str]
) -> pd.DataFrame:
    """Per series (arch, label) and class: each resolution's point AUC, share of paired replicates in which it is best
    (`bootstrap.best_run_shares`), whether it has the highest point AUC, and the replicates counted."""
    rows = []
    for series in dict.fromkeys(s.series for s in scorings):
        members = sorted((s for s in scorings if s.series == series), key=lambda s: s.resolution_px)
        table = points[points["class"] != MEAN].pivot(index="heading", columns="class", values="auc")
        point = table.reindex(index=[m.heading for m in members], columns=classes).to_numpy(np.float64)
        result = bootstrap.best_run_shares(point, np.stack([replicates[m.heading] for m in members]))
        for c, name in enumerate(classes):
            if result.best[c] < 0:
                continue
            for r, m in enumerate(members):
                if not np.isnan(point[r, c]):
                    rows.append(
                        {
                            "scope": scope,
                            "series": series,
                            "class": name,
                            "heading": m.heading,
                            "resolution_px": m.resolution_px,
                            "auc": point[r, c],
                            "share": result.shares[r, c],
                            "best": bool(result.best[c] == r),
                            "n_replicates": int(result.n_replicates[c]),
                        }
                    )
    return pd.DataFrame(
        rows, columns=["scope", "series", "class", "heading", "resolution_px", "auc", "share", "best", "n_replicates"]
    )


def scopes(infos: list[RunInfo], scorings: dict[str, Scoring]) -> list[tuple[str, list[Scoring]]]:
    """The sets of scorings compared pairwise: all runs when no group has several seeds; else each seed's runs and the
    seed ensembles (groups with several seeds)."""
    groups = seed_groups(infos)
    if not any(len(m) > 1 for m in groups.values()):
        return [(SINGLE, [scorings[i.heading] for i in infos])]
    out = [(f"seed {s}", [scorings[i.heading] for i in infos if i.seed == s]) for s in sorted({i.seed for i in infos})]
    return out + [(ENSEMBLE, [s for s in scorings.values() if s.seed is None])]


def compare_runs(run_dirs: list[str | Path], level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """AUC table, per-class paired DeLong tests (Holm within each pair), bootstrap tests of the mean AUC and the best
    resolution per class, per run and on the seed ensembles (one patient-bootstrap weight matrix for all; labels -1
    masked out of their class)."""
    if len(run_dirs) < 1:
        raise CxrresError("give at least one run directory")
    infos = load_runs(run_dirs)
    images, classes, labels, scores, patient_ids = align(infos)
    scorings = {
        i.heading: Scoring(
            i.heading, i.group or i.heading, i.arch, i.resolution_px, i.label, i.seed, 1, scores[i.heading]
        )
        for i in infos
    }
    for group, members in seed_groups(infos).items():
        if len(members) > 1:
            ensemble = seeds.seed_ensemble([m.predictions for m in members])
            _, own = _aligned(ensemble, classes, labels.astype(np.int16), group)
            first = members[0]
            heading = f"{group} {ENSEMBLE}"
            scorings[heading] = Scoring(
                heading, group, first.arch, first.resolution_px, first.label, None, len(members), own
            )
    defined = metrics.defined_classes(labels)
    groups, unit = patient_groups(images, patient_ids)
    weights = bootstrap.patient_weights(groups, n_boot, seed)
    rows, replicates = [], {}
    for heading, scoring in scorings.items():
        scored, replicates[heading] = _score(scoring, labels, classes, defined, weights, level)
        rows += [{**r, "n_seeds": scoring.n_seeds} for r in scored]
    every = pd.DataFrame(rows)
    runs_auc = every[every["seed"].notna()].drop(columns="n_seeds").astype({"seed": int}).reset_index(drop=True)
    ensemble_auc = every[every["seed"].isna()].drop(columns="seed").reset_index(drop=True)
    delong_rows, boot_rows, best = [], [], []
    for scope, members in scopes(infos, scorings):
        for a, b in itertools.combinations(members, 2):
            pair, boot = _pair_tests(scope, a, b, labels, classes, defined, replicates, level)
            delong_rows += pair
            boot_rows += [boot] if boot else []
        best.append(best_resolution(scope, members, every, replicates, classes))
    calibrated, reliability = calibration.comparison_tables(
        [(i.heading, i.resolution_px) for i in infos], labels, scores, classes
    )
    test_resolution = train_test_long(
        [i.run_dir for i in infos], [i.heading for i in infos], [i.resolution_px for i in infos]
    )
    return Comparison(
        infos,
        runs_auc,
        pd.DataFrame(delong_rows),
        pd.DataFrame(boot_rows),
        len(images),
        n_boot,
        localization_long(infos),
        ensemble_auc,
        pd.concat(best, ignore_index=True),
        level,
        unit,
        label_counts(labels, classes),
        calibrated,
        reliability,
        test_resolution,
    )
