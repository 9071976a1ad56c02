"""Precision and calibration beside AUC: per class average precision (with a patient-bootstrap interval), Brier score
and expected calibration error (ECE), and the reliability bins behind a reliability diagram.

Pure functions on numpy arrays (labels 1/0, -1 masked out of a class). `calibration_table` is what `cxrres evaluate`
writes as RUN/calibration.csv (`runs.CALIBRATION`); definitions in docs/statistics.md.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from cxrres import runs
from cxrres.evaluation import bootstrap
from cxrres.evaluation import metrics

MEAN = "mean"
N_BINS = 15  # equal-width bins of the predicted probability on [0, 1]
COLUMNS: tuple[str, ...] = ("class", "n_pos", "n_neg", "average_precision", "ap_low", "ap_high", "brier", "ece")
_CHUNK = 64  # bootstrap replicates per vectorised block (bounds memory at 64 x N floats per array)


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Average precision sum_k (R_k - R_k-1) P_k over the distinct score thresholds, highest first (as scikit-learn's
    `average_precision_score`); NaN without a positive."""
    return float(weighted_average_precision(y_true, y_score, np.ones((1, len(y_true))))[0])


def weighted_average_precision(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B,) average precision under each row of case weights `weights` (B, N); NaN where a row has no positive weight.

    Cases sorted by descending score; at the last case of each run of tied scores (a threshold) the weighted true and
    false positives above it give precision P_k and recall R_k; AP = sum_k (R_k - R_k-1) P_k."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last index of each distinct score (a threshold)
    out = np.empty(w.shape[0])
    for start in range(0, w.shape[0], _CHUNK):
        block = w[start : start + _CHUNK][:, order]
        tp = np.cumsum(block * y, axis=1)[:, last]
        fp = np.cumsum(block * ~y, axis=1)[:, last]
        positives = tp[:, -1:] if tp.size else np.zeros((block.shape[0], 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall = tp / positives
        gain = np.diff(np.concatenate([np.zeros((block.shape[0], 1)), recall], axis=1), axis=1)
        ap = (gain * precision).sum(axis=1)
        out[start : start + block.shape[0]] = np.where(positives[:, 0] > 0, ap, np.nan)
    return out


def brier_score(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean squared difference between the predicted probability and the 1/0 label; NaN for no cases."""
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_prob, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if y.size else math.nan


def bin_index(y_prob: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The equal-width bin of each probability: floor(n_bins * p), with p = 1 in the last bin
    (bin b is [b/n, (b+1)/n))."""
    p = np.clip(np.asarray(y_prob, dtype=np.float64), 0.0, 1.0)
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)


def reliability_bins(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = N_BINS) -> pd.DataFrame:
    """Per bin (`bin`, `low`, `high`): count `n`, mean predicted probability `mean_prob` and observed frequency
    `frequency` (NaN in empty bins) of 1/0 labels and probabilities."""
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_prob, dtype=np.float64)
    b = bin_index(p, n_bins)
    n = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(b, weights=p, minlength=n_bins) / n
        frequency = np.bincount(b, weights=y, minlength=n_bins) / n
    edges = np.arange(n_bins + 1) / n_bins
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "low": edges[:-1],
            "high": edges[1:],
            "n": n.astype(np.int64),
            "mean_prob": mean_prob,
            "frequency": frequency,
        }
    )


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE = sum_b (n_b / N) |mean(y)_b - mean(p)_b| over `n_bins` equal-width bins on [0, 1]; NaN for no cases."""
    if np.asarray(y_true).size == 0:
        return math.nan
    bins = reliability_bins(y_true, y_prob, n_bins)
    full = bins["n"] > 0
    gap = (bins["frequency"] - bins["mean_prob"]).abs()[full]
    return float((bins["n"][full] * gap).sum() / bins["n"].sum())


def class_row(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, level: float = 0.95
) -> tuple[dict, np.ndarray]:
    """One class's row (n_pos, n_neg, AP and its percentile interval over the replicate `weights` (B, N), Brier, ECE;
    NaN without positives or negatives; labels -1 masked out) and its (B,) replicate APs."""
    kept = metrics.kept_rows(labels)
    y, p = labels[kept].astype(np.int64), scores[kept].astype(np.float64)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    row = {"n_pos": n_pos, "n_neg": n_neg}
    if n_pos == 0 or n_neg == 0:
        return row | dict.fromkeys(COLUMNS[3:], math.nan), np.full(weights.shape[0], math.nan)
    replicates = weighted_average_precision(y, p, weights[:, kept])
    low, high = bootstrap.percentile_interval(replicates, level) if (~np.isnan(replicates)).any() else (math.nan,) * 2
    return row | {
        "average_precision": average_precision(y, p),
        "ap_low": low,
        "ap_high": high,
        "brier": brier_score(y, p),
        "ece": expected_calibration_error(y, p),
    }, replicates


def calibration_table(
    predictions: runs.Predictions, groups: np.ndarray, level: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """RUN/calibration.csv: one row per class (`COLUMNS`) and a `mean` row over the defined classes (its AP interval
    from the replicates' mean AP over those classes). `groups`: the patient of each case (the bootstrap's unit)."""
    weights = bootstrap.patient_weights(groups, n_boot, seed)
    rows, replicates = [], []
    for c, name in enumerate(predictions.classes):
        row, reps = class_row(predictions.labels[:, c], predictions.scores[:, c], weights, level)
        rows.append({"class": name, **row})
        replicates.append(reps)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    defined = table["average_precision"].notna().to_numpy()
    mean = {"class": MEAN, "n_pos": math.nan, "n_neg": math.nan}
    if defined.any():
        reps = np.stack(replicates, axis=1)[:, defined]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_reps = np.nanmean(reps, axis=1)
        low, high = bootstrap.percentile_interval(mean_reps, level) if (~np.isnan(mean_reps)).any() else (math.nan,) * 2
        mean |= {
            "average_precision": table.loc[defined, "average_precision"].mean(),
            "ap_low": low,
            "ap_high": high,
            "brier": table.loc[defined, "brier"].mean(),
            "ece": table.loc[defined, "ece"].mean(),
        }
    else:
        mean |= dict.fromkeys(COLUMNS[3:], math.nan)
    return pd.concat([table, pd.DataFrame([mean], columns=list(COLUMNS))], ignore_index=True)


def pooled_reliability(labels: np.ndarray, scores: np.ndarray, n_bins: int = N_BINS) -> pd.DataFrame:
    """`reliability_bins` of every (case, class) pair with a 1/0 label and a score (labels -1 and NaN scores left out),
    pooled over the classes: what a run's line in the report's reliability diagram shows."""
    keep = (np.asarray(labels) >= 0) & ~np.isnan(np.asarray(scores, dtype=np.float64))
    return reliability_bins(np.asarray(labels)[keep], np.asarray(scores, dtype=np.float64)[keep], n_bins)


def summary_line(table: pd.DataFrame) -> str:
    """The line `cxrres evaluate` prints under the AUC table: the mean row's AP [interval], Brier and ECE."""
    mean = table[table["class"] == MEAN].iloc[0]
    if pd.isna(mean["average_precision"]):
        return "calibration: undefined (no class has positive and negative test images)"
    return (
        f"calibration: mean average precision {mean['average_precision']:.3f} [{mean['ap_low']:.3f}, "
        f"{mean['ap_high']:.3f}], Brier {mean['brier']:.4f}, ECE {mean['ece']:.4f} (per class in {runs.CALIBRATION})"
    )


def comparison_tables(
    runs_px: list[tuple[str, int]],
    labels: np.ndarray,
    scores: dict[str, np.ndarray],
    classes: list[str],
    n_bins: int = N_BINS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For runs (heading, resolution px) scored on the same images (`labels` (N, C), `scores` by heading (N, C), NaN for
    classes a run lacks): the long table heading, resolution_px, class, average_precision, brier, ece (classes, then
    `mean` over the run's defined classes), and the pooled reliability bins of each run (heading, resolution_px, bin,
    low, high, n, mean_prob, frequency)."""
    rows, bins = [], []
    for heading, resolution in runs_px:
        own = scores[heading]
        values = []
        for c, name in enumerate(classes):
            keep = (labels[:, c] >= 0) & ~np.isnan(own[:, c])
            y, p = labels[keep, c], own[keep, c]
            defined = bool(y.sum()) and bool((y == 0).sum())
            value = (
                (average_precision(y, p), brier_score(y, p), expected_calibration_error(y, p))
                if defined
                else (math.nan,) * 3
            )
            values.append(value)
            rows.append(
                {
                    "heading": heading,
                    "resolution_px": resolution,
                    "class": name,
                    **dict(zip(("average_precision", "brier", "ece"), value)),
                }
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.array(values, dtype=np.float64).reshape(-1, 3), axis=0)
        rows.append(
            {
                "heading": heading,
                "resolution_px": resolution,
                "class": MEAN,
                **dict(zip(("average_precision", "brier", "ece"), mean)),
            }
        )
        bins.append(pooled_reliability(labels, own, n_bins).assign(heading=heading, resolution_px=resolution))
    reliability = pd.concat(bins, ignore_index=True) if bins else pd.DataFrame()
    front = ["heading", "resolution_px"]
    return pd.DataFrame(rows), reliability[front + [c for c in reliability.columns if c not in front]]
