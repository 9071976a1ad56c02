"""The patient bootstrap: replicate weights by patient, weighted AUCs, the mean AUC's interval, paired differences
and their p-values ((1 + count) / (B + 1)), and how often each run is best. Pure functions on numpy arrays; AUC and
DeLong themselves are `metrics`."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from scipy import sparse

from cxrres.evaluation.metrics import MetricError, check_matrix, kept_rows, masked_auc


def patient_weights(groups: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, N) case weights of a bootstrap that resamples whole patients (`groups`: one id per case).

    Each replicate draws as many patients as there are, with replacement; a case's weight is how often its patient
    was drawn. Deterministic for a seed.
    """
    _, patient_index = np.unique(np.asarray(groups), return_inverse=True)
    n_patients = int(patient_index.max()) + 1
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=n_boot)
    return counts[:, patient_index].astype(np.float32)  # small integers: exact in float32, half the memory traffic


def weighted_auc(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (ties 1/2) of one labelled scoring under each row of case weights `weights` (B, N) -> (B,).

    NaN where a replicate has no positive or no negative weight. See `_weighted_auc_by_case` for the method.
    """
    return _weighted_auc_by_case(y_true, y_score, _cases_first(weights))


def _cases_first(weights: np.ndarray) -> np.ndarray:
    """(N, B) C-contiguous floating copy of (B, N) case weights: one row of B replicate weights per case."""
    w = np.atleast_2d(np.asarray(weights))
    if not np.issubdtype(w.dtype, np.floating):
        w = w.astype(np.float64)
    return np.ascontiguousarray(w.T)


def _weighted_auc_by_case(y_true: np.ndarray, y_score: np.ndarray, weights_t: np.ndarray) -> np.ndarray:
    """Weighted AUC of every replicate from (N, B) case weights `weights_t`, O(N log N + N B) with one sparse product.

    Let u_1 < ... < u_G be the distinct positive scores. Every case falls in one cell: a positive in "positive at u_g",
    a negative in "negative at u_g" (tied with positives) or "negative strictly between u_g and u_g+1". One sparse
    (cells x N) @ (N x B) product gives each cell's weight in every replicate (exact for integer weights in float32
    below 2**24). With P_g the positive weight at u_g and L_g = (negative weight below u_g) + 1/2 (negative weight
    at u_g): A = sum_g P_g L_g / (P N).
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=np.float64)
    levels = np.unique(s[y])
    g = levels.size
    below = np.searchsorted(levels, s, side="left")  # number of positive levels strictly below each score
    tied = (below < g) & (levels[np.minimum(below, max(g - 1, 0))] == s) if g else np.zeros(s.size, bool)
    cell = np.where(y, 2 * g + 1 + below, np.where(tied, 2 * below + 1, 2 * below))
    indicator = sparse.csr_matrix(
        (np.ones(s.size, weights_t.dtype), (cell, np.arange(s.size))), shape=(3 * g + 1, s.size)
    )
    sums = np.asarray(indicator @ weights_t, dtype=np.float64)  # (3G+1, B)
    negative, positive = sums[: 2 * g + 1], sums[2 * g + 1 :]
    cumulative = np.cumsum(negative, axis=0)
    credit = cumulative[0 : 2 * g : 2] + 0.5 * negative[1 : 2 * g + 1 : 2]  # L_g
    numerator = (positive * credit).sum(axis=0)
    denominator = positive.sum(axis=0) * cumulative[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def bootstrap_class_replicates(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, defined: np.ndarray
) -> np.ndarray:
    """(B, C) AUC of each class in each replicate of case `weights` (B, N); NaN for classes not `defined`.

    Runs scored on the same cases and given the same weights give paired replicates.
    """
    weights_t = _cases_first(weights)
    out = np.full((weights_t.shape[1], labels.shape[1]), np.nan)
    for c in np.flatnonzero(defined):
        kept = kept_rows(labels[:, c])
        w = weights_t if kept.all() else weights_t[kept]
        out[:, c] = _weighted_auc_by_case(labels[kept, c], scores[kept, c], w)
    return out


def replicate_means(per_class: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(B,) mean over the selected `classes` (mask) of (B, C) replicate AUCs; a class undefined in one replicate
    (no positive or no negative weight) is left out of that replicate's mean."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_class[:, classes], axis=1)


def bootstrap_mean_replicates(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, defined: np.ndarray
) -> np.ndarray:
    """(B,) mean AUC over the `defined` classes in each replicate of case `weights` (B, N)."""
    return replicate_means(bootstrap_class_replicates(labels, scores, weights, defined), defined)


class BestRuns(NamedTuple):
    """Which run is best per class: by the point AUC, and how often in paired bootstrap replicates."""

    best: np.ndarray  # (C,) index of the run with the highest point AUC (first of tied runs); -1 when none has one
    shares: np.ndarray  # (R, C) share of the valid replicates in which each run is best; NaN for runs not competing
    n_replicates: np.ndarray  # (C,) replicates used (those in which every competing run's AUC is defined)


def best_run_shares(point_aucs: np.ndarray, replicates: np.ndarray) -> BestRuns:
    """Per class, the best of R runs by point AUC (R, C) and the share of paired replicates (R, B, C) it is best in.

    The runs competing for a class are those with a point AUC (not NaN). A replicate counts for a class when every
    competing run's replicate AUC is defined; the runs whose AUC equals that replicate's maximum exactly share the
    win equally (1/k each of k tied runs). Shares of the competing runs sum to 1; all NaN when no replicate counts.
    `replicates` must come from the same case weights for every run (e.g. `bootstrap_class_replicates` with one
    `patient_weights` matrix), so that each replicate compares the runs on the same resampled patients.
    """
    points = np.asarray(point_aucs, dtype=np.float64)
    reps = np.asarray(replicates, dtype=np.float64)
    if points.ndim != 2 or reps.ndim != 3 or reps.shape[0] != points.shape[0] or reps.shape[2] != points.shape[1]:
        raise MetricError(f"point AUCs (R, C) and replicates (R, B, C) do not match: {points.shape} vs {reps.shape}")
    competing = ~np.isnan(points)  # (R, C)
    any_competing = competing.any(axis=0)
    best = np.where(any_competing, np.argmax(np.where(competing, points, -np.inf), axis=0), -1)
    in_play = np.broadcast_to(competing[:, None, :], reps.shape)
    valid = ~np.isnan(np.where(in_play, reps, 0.0)).any(axis=0) & any_competing  # (B, C)
    contest = np.where(in_play, reps, -np.inf)
    winners = (contest == contest.max(axis=0)) & in_play & valid  # (R, B, C)
    n_winners = winners.sum(axis=0)
    wins = (winners / np.maximum(n_winners, 1)).sum(axis=1)  # (R, C)
    n_valid = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(competing & (n_valid > 0), wins / n_valid, np.nan)
    return BestRuns(best.astype(int), shares, n_valid.astype(int))


def paired_bootstrap_p(differences: np.ndarray) -> float:
    """Two-sided bootstrap p of a difference from its B non-NaN replicates d: min(1, 2 (1 + min(#{d <= 0}, #{d >= 0}))
    / (B + 1)) (Davison & Hinkley 1997, sec. 4.2; North et al. 2002), never below `bootstrap_p_floor(B)`;
    NaN for B = 0."""
    d = differences[~np.isnan(differences)]
    if not d.size:
        return math.nan
    count = min(int(np.count_nonzero(d <= 0)), int(np.count_nonzero(d >= 0)))
    return min(1.0, 2.0 * (1 + count) / (d.size + 1))


def bootstrap_p_floor(n_replicates: int) -> float:
    """The smallest two-sided p `paired_bootstrap_p` gives from `n_replicates` replicates: 2/(B + 1) (no replicate on
    the other side of 0); a p at this floor says only "at most this"."""
    return min(1.0, 2.0 / (int(n_replicates) + 1))


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile bootstrap interval of the non-NaN `samples` at `level`."""
    samples = samples[~np.isnan(samples)]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_mean_auc(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean AUC over classes, percentile-interval low, high) from a bootstrap over patients.

    `labels`, `scores`: (N, C); `groups`: patient id per case. A label -1 masks the case out of that class. The mean
    runs over the classes that have positives and negatives among their kept cases in the full sample.
    """
    labels, (scores,), defined = check_matrix(labels, scores)
    point = float(np.mean([masked_auc(labels[:, c], scores[:, c]) for c in np.flatnonzero(defined)]))
    samples = bootstrap_mean_replicates(labels, scores, patient_weights(groups, n_boot, seed), defined)
    return (point, *percentile_interval(samples, level))


def bootstrap_mean_auc_difference(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float, float]:
    """(mean AUC_a - mean AUC_b, interval low, high, two-sided p) from one paired bootstrap over patients.

    Both runs are scored on the same resampled cases in each replicate; p is `paired_bootstrap_p` of the replicate
    differences.
    """
    labels, (a, b), defined = check_matrix(labels, scores_a, scores_b)
    point = float(
        np.mean(
            [masked_auc(labels[:, c], a[:, c]) - masked_auc(labels[:, c], b[:, c]) for c in np.flatnonzero(defined)]
        )
    )
    weights = patient_weights(groups, n_boot, seed)
    diffs = bootstrap_mean_replicates(labels, a, weights, defined) - bootstrap_mean_replicates(
        labels, b, weights, defined
    )
    return (point, *percentile_interval(diffs, level), paired_bootstrap_p(diffs))
