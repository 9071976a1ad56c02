"""Published results shipped as package data, and our figures set beside them.

`published_results()` reads `resources/published/published_results.csv`: Wollek et al. 2023's Tables 3-5 (test AUC,
Grad-CAM precision and accuracy at IoU >= 0.1, DenseNet-121, ChestX-ray14 with the CheXNet split, 64-1024 px) and the
four AUCs stated in Sabottke & Spieler 2020's abstract. Provenance: `resources/published/README.md`.
`reference_for(dataset, split)` says whether a study has a published reference (only ChestX-ray14 with the CheXNet
split does); `compare_with_published` puts one metric of ours beside it. All pure except the one package-data read.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import pandas as pd

from cxrres.errors import CxrresError

COLUMNS = ["source", "table", "metric", "dataset", "split", "arch", "class", "resolution_px", "value"]
METRICS = ("auc", "precision", "accuracy")
REFERENCE_SOURCE = "wollek2023"
CHESTXRAY14_NAMES = frozenset({"chestxray14", "nihchestxray14", "nih"})  # spellings of the data set, normalised


def _normalise(name: str) -> str:
    """Lower case without spaces, dashes or underscores: 'ChestX-ray14' -> 'chestxray14'."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


@lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    """The package CSV, read once (resolution_px int, value float)."""
    path = resources.files("cxrres") / "resources" / "published" / "published_results.csv"
    with path.open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, dtype={"table": str, "arch": str})
    if list(frame.columns) != COLUMNS:
        raise CxrresError(f"{path}: columns {list(frame.columns)}, expected {COLUMNS}")
    return frame.astype({"resolution_px": int, "value": float})


def published_results(metric: str | None = None, source: str | None = None) -> pd.DataFrame:
    """Published figures, one row each (columns `COLUMNS`; value in [0, 1]), optionally of one metric and/or source."""
    if metric is not None and metric not in METRICS:
        raise CxrresError(f"unknown published metric {metric!r}; one of {', '.join(METRICS)}")
    frame = _table()
    if source is not None and source not in set(frame["source"]):
        raise CxrresError(f"unknown source {source!r}; one of {', '.join(sorted(set(frame['source'])))}")
    keep = pd.Series(True, index=frame.index)
    if metric is not None:
        keep &= frame["metric"] == metric
    if source is not None:
        keep &= frame["source"] == source
    return frame[keep].reset_index(drop=True)


def reference_for(dataset: str, split: str) -> pd.DataFrame | None:
    """Wollek et al. 2023's rows (all metrics) for a study on ChestX-ray14 with the CheXNet split; None for any
    other."""
    if _normalise(dataset) in CHESTXRAY14_NAMES and _normalise(split) == "chexnet":
        return published_results(source=REFERENCE_SOURCE)
    return None


def compare_with_published(
    ours: pd.DataFrame, published: pd.DataFrame, value: str = "auc", low: str = "ci_low", high: str = "ci_high"
) -> pd.DataFrame:
    """Per class and resolution present in both: ours, our interval, published, difference (ours - published), and
    whether the published value lies inside our closed interval [low, high] (<NA> where we have no interval).

    `ours`: one row per (`class`, `resolution_px`) with column `value` (and optionally `low`, `high`); `published`:
    rows of one metric from `published_results` / `reference_for`. Classes match case-insensitively ('Mean' = 'mean');
    rows come in the published order; our class spelling is kept.
    """
    if published["metric"].nunique() > 1:
        raise CxrresError(f"compare one metric at a time, got {sorted(published['metric'].unique())}")
    missing = [c for c in ("class", "resolution_px", value) if c not in ours.columns]
    if missing:
        raise CxrresError(f"our table has no column(s) {missing}")
    key = ours["class"].map(_normalise)
    duplicated = pd.concat([key, ours["resolution_px"]], axis=1).duplicated()
    if duplicated.any():
        row = ours[duplicated].iloc[0]
        raise CxrresError(
            f"our table has several rows for {row['class']} at {row['resolution_px']} px "
            "(select one architecture and aggregate seeds first)"
        )
    has_interval = low in ours.columns and high in ours.columns
    mine = pd.DataFrame(
        {
            "key": key,
            "class": ours["class"],
            "resolution_px": ours["resolution_px"].astype(int),
            "ours": ours[value].astype(float),
            "ci_low": ours[low].astype(float) if has_interval else float("nan"),
            "ci_high": ours[high].astype(float) if has_interval else float("nan"),
        }
    )
    theirs = pd.DataFrame(
        {
            "key": published["class"].map(_normalise),
            "resolution_px": published["resolution_px"].astype(int),
            "published": published["value"].astype(float),
        }
    )
    merged = theirs.merge(mine, on=["key", "resolution_px"], how="inner", sort=False)
    merged["difference"] = merged["ours"] - merged["published"]
    known = merged["ci_low"].notna() & merged["ci_high"].notna()
    inside = (merged["ci_low"] <= merged["published"]) & (merged["published"] <= merged["ci_high"])
    merged["inside"] = pd.array([bool(v) if k else pd.NA for v, k in zip(inside, known)], dtype="boolean")
    return merged[["class", "resolution_px", "ours", "ci_low", "ci_high", "published", "difference", "inside"]]
