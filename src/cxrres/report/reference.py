"""The report's "Against the published study" section: whether a published reference applies to the runs' data,
and our AUC and localization figures beside Wollek et al. 2023's Tables 3-5.

A reference applies when the split is `chexnet` and its test part is the CheXNet test list (the same 22,433 image
names with the same labels as the list bundled in `cxrres/resources/chexnet`): that is NIH ChestX-ray14 scored as
in the paper. A phantom or another data set carrying its own `splits/chexnet` has other test images and gets none.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from cxrres.data.metadata import read_split_file
from cxrres.data.datasets import DatasetTable
from cxrres.data.splits import bundled_chexnet_dir, find_part_files
from cxrres.evaluation import published
from cxrres.evaluation.seeds import format_mean_sd
from cxrres.report import tables

ARCH = "densenet121"  # the architecture of the published tables
METRIC_TITLES = {
    "auc": "Test AUC (Table 3)",
    "precision": "Grad-CAM localization precision at IoU ≥ 0.1 (Table 4)",
    "accuracy": "Grad-CAM localization accuracy at IoU ≥ 0.1 (Table 5)",
}


@dataclass(frozen=True)
class PublishedReference:
    """Whether Wollek et al. 2023 applies to a study's data, why (one sentence), and its rows when it does."""

    applies: bool
    reason: str
    rows: pd.DataFrame | None = None

    def metric(self, name: str) -> pd.DataFrame | None:
        """The published rows of one metric (`auc`, `precision`, `accuracy`), None when no reference applies."""
        if self.rows is None:
            return None
        part = self.rows[self.rows["metric"] == name]
        return part.reset_index(drop=True) if len(part) else None


@lru_cache(maxsize=1)
def chexnet_test_list() -> tuple[tuple[str, ...], np.ndarray]:
    """The bundled CheXNet test list: image names and (N, 14) labels in CLASSES order (read once)."""
    names, labels = read_split_file(find_part_files(bundled_chexnet_dir())["test"])
    return tuple(names), labels


def detect_reference(table: DatasetTable, n_scored: int | None = None) -> PublishedReference:
    """Wollek et al. 2023 applies when `table` is ChestX-ray14 whose split of record is `chexnet` (or read from a
    --split-dir) and whose test part has exactly the CheXNet test list's images and labels; `n_scored`, the runs'
    number of test images, is mentioned when it is fewer. No other data set has one."""
    split = table.split
    if split is None:
        return PublishedReference(
            False,
            f"The runs are on the {table.dataset} data set; the published results are for "
            "NIH ChestX-ray14 with the CheXNet split, so no published reference applies.",
        )
    if split.name == "official":  # a --split-dir split (dir:...) may hold the CheXNet lists: checked below
        return PublishedReference(
            False,
            f"The runs use the `{split.name}` split; the published results are for "
            "NIH ChestX-ray14 with the CheXNet split, so no published reference applies.",
        )
    names, labels = chexnet_test_list()
    test = split.part("test")
    if len(test) != len(names) or set(test.index) != set(names):
        common = len(set(test.index) & set(names))
        return PublishedReference(
            False,
            f"The test part ({len(test):,} images, {common:,} of them in the CheXNet test list "
            f"of {len(names):,}) is not NIH ChestX-ray14's CheXNet test list (e.g. a phantom or "
            "another data set), so no published reference applies.",
        )
    ours = split.labels("test")[pd.Index(test.index).get_indexer(list(names))]
    if not np.array_equal(ours, labels):
        differ = int((ours != labels).any(axis=1).sum())
        return PublishedReference(
            False,
            f"The test part has the CheXNet test list's images but other labels on {differ:,} "
            "of them, so no published reference applies.",
        )
    scored = (
        ""
        if n_scored is None or n_scored >= len(names)
        else (
            f" Our runs were scored on {n_scored:,} of its {len(names):,} images (the others are missing), so the "
            "comparison is approximate."
        )
    )
    return PublishedReference(
        True,
        f"NIH ChestX-ray14 with the CheXNet split: the runs' test part is the CheXNet test "
        f"list ({len(names):,} images), as in Wollek et al. 2023.{scored}",
        published.reference_for("chestxray14", "chexnet"),
    )


def against_published(long: pd.DataFrame, rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per class and resolution: the published value, ours (mean over seeds, sd, n), the difference (mean − published)
    and in how many seeds the published value lies inside our 95 % interval (of `n_interval` seeds with one).

    `long`: one row per run and class (heading, arch, seed, class, resolution_px, `value`, optional ci_low/ci_high),
    only DenseNet-121 runs without a single label are used; `rows`: one metric's published rows."""
    mine = long[(long["arch"] == ARCH) & (long["label"].isna() if "label" in long.columns else True)]
    per_seed = []
    for seed, part in mine.groupby("seed", sort=True):
        merged = published.compare_with_published(part.drop_duplicates(["class", "resolution_px"]), rows, value)
        per_seed.append(merged.assign(seed=seed))
    columns = ["class", "resolution_px", "published", "ours", "sd", "n", "difference", "inside", "n_interval"]
    if not per_seed:
        return pd.DataFrame(columns=columns)
    every = pd.concat(per_seed, ignore_index=True)
    every["inside_int"] = every["inside"].astype("Int64")
    out = (
        every.groupby(["class", "resolution_px"], sort=False)
        .agg(
            published=("published", "first"),
            ours=("ours", "mean"),
            sd=("ours", lambda v: v.std(ddof=1) if v.count() > 1 else np.nan),
            n=("ours", "count"),
            inside=("inside_int", "sum"),
            n_interval=("inside_int", "count"),
        )
        .reset_index()
    )
    out["difference"] = out["ours"] - out["published"]
    return out[columns]


def published_table(frame: pd.DataFrame) -> tables.Table:
    """Rows: classes; columns: resolutions; cells `ours / published (ours − published)` and, where we have intervals,
    ✓ (published inside our 95 % interval) or ✗, or `k/n` seeds inside."""
    resolutions = sorted(frame["resolution_px"].unique())
    rows = []
    for name in dict.fromkeys(frame["class"]):
        cells = [str(name)]
        for r in resolutions:
            hit = frame[(frame["class"] == name) & (frame["resolution_px"] == r)]
            if hit.empty or np.isnan(hit["ours"].iloc[0]):
                cells.append("–")
                continue
            row = hit.iloc[0]
            text = (
                f"{format_mean_sd(row['ours'], row['sd'], int(row['n']))} / {row['published']:.3f} "
                f"({row['difference']:+.3f})"
            )
            if row["n_interval"] == 1:
                text += " ✓" if row["inside"] == 1 else " ✗"
            elif row["n_interval"] > 1:
                text += f" {int(row['inside'])}/{int(row['n_interval'])}"
            cells.append(text)
        rows.append(cells)
    return tables.Table(["Class", *(f"{r} px" for r in resolutions)], rows)


def published_long(comparison, reference: PublishedReference) -> pd.DataFrame:
    """Every metric of ours beside the published one (`against_published` per metric, with a `metric` column)."""
    frames = []
    sources = {"auc": comparison.auc}
    if comparison.localization is not None:
        loc = comparison.localization
        sources.update({m: loc for m in ("precision", "accuracy") if m in loc.columns})
    for metric, long in sources.items():
        rows = reference.metric(metric)
        if rows is None:
            continue
        table = long if metric == "auc" else long.drop(columns=[c for c in ("ci_low", "ci_high") if c in long.columns])
        frames.append(against_published(table, rows, metric).assign(metric=metric))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
