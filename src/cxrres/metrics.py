"""AUC, DeLong variances, intervals and paired tests, a patient bootstrap, the best run per class, and Holm's correction.

Pure functions on numpy arrays. Conventions:

- ``y_true`` holds 0/1 labels, ``y_score`` finite real scores (higher = more likely positive); m positives, n negatives.
- AUC is the Mann-Whitney statistic  A = 1/(m n) * sum_i sum_j psi(X_i, Y_j)  with X the positive and Y the negative
  scores and psi(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise, i.e. ties count one half.
- DeLong, DeLong & Clarke-Pearson (1988): structural components V10(X_i) = 1/n sum_j psi(X_i, Y_j) and
  V01(Y_j) = 1/m sum_i psi(X_i, Y_j); Var(A) = S10/m + S01/n with S10, S01 their sample (co)variances.
  They are computed with midranks in O(N log N) as in Sun & Xu (2014), IEEE Signal Process. Lett. 21(11):1389:
  V10(X_i) = (T_Z(X_i) - T_X(X_i)) / n and V01(Y_j) = 1 - (T_Z(Y_j) - T_Y(Y_j)) / m, where T_* are midranks of a
  score within the positives, the negatives, or all cases.
- Intervals (`auc_interval`, `delong_ci`): DeLong on the logit scale, logit(A) ± z·sqrt(Var)/(A(1-A)), which stays
  inside (0, 1); at A = 0 or 1 the Wilson-type score interval with the Birnbaum-Klose maximal variance
  θ(1-θ)/min(m, n); all scores tied gives [0.5, 0.5]. docs/statistics.md has the references and the edge-case table.
- A side with a single case (m = 1 or n = 1): its sample variance S10 (or S01) is undefined, not 0 (setting it to 0
  gave 95 % intervals that covered the true AUC in 9-82 % of samples). cxrres uses the largest value it can take,
  A(1-A): a structural component lies in [0, 1] with mean A, and a 0/1 variable maximises its variance (the per-side
  form of the Birnbaum-Klose bound). Distribution-free, hence conservative; 0 where all scores tie. Off the diagonal
  (two scorings) that term is NaN: a paired test with a single positive or negative is undefined (NaN, warning).
- Fewer than MIN_POSITIVES positives: computed as usual, but flagged by callers (evaluate, compare, the report).
- Bootstrap p-values are (1 + count) / (B + 1) (two-sided: doubled, capped at 1), never below 2/(B + 1).
- Malformed input (lengths differ, NaN/inf scores, labels other than 0/1, nothing to score) raises
  :class:`MetricError`. An AUC that is undefined (no positives or no negatives) is NaN with an
  :class:`UndefinedMetricWarning` that says why; so is a test whose variance is zero.
"""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.special import ndtr
from scipy.stats import rankdata

from cxrres.errors import CxrresError


class MetricError(CxrresError, ValueError):
    """Input a metric cannot be computed from (mismatched lengths, NaN scores, non-binary labels)."""


class UndefinedMetricWarning(UserWarning):
    """A metric is NaN for a stated reason (no positives, no negatives, zero variance, a single case on one side)."""


#: A class with fewer positive test cases than this has an AUC whose interval and paired tests rest on too few cases
#: to mean much: `evaluate`, `compare` and the report flag it (docs/statistics.md, "Edge cases").
MIN_POSITIVES = 5


def few_positives(n_pos: int) -> bool:
    """Whether `n_pos` positive cases are fewer than MIN_POSITIVES (the flag evaluate, compare and the report show)."""
    return int(n_pos) < MIN_POSITIVES


def _check(y_true: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Validate labels and score vectors; return them as bool and float64 arrays."""
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise MetricError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise MetricError(f"labels must be 0 or 1, got values {np.unique(y)[:5].tolist()}")
    out = []
    for s in scores:
        s = np.asarray(s, dtype=np.float64)
        if s.shape != y.shape:
            raise MetricError(f"{s.shape[0] if s.ndim else 0} scores for {y.shape[0]} labels (shapes {s.shape} vs {y.shape})")
        if not np.isfinite(s).all():
            raise MetricError(f"{int((~np.isfinite(s)).sum())} scores are NaN or infinite")
        out.append(s)
    return y.astype(bool), out


def undefined_reason(y_true: np.ndarray) -> str | None:
    """Why an AUC cannot be computed for these labels (no positives / no negatives), or None when it can."""
    y = np.asarray(y_true).astype(bool)
    if not y.any():
        return "no positive cases"
    if y.all():
        return "no negative cases"
    return None


def _warn(reason: str) -> None:
    warnings.warn(reason, UndefinedMetricWarning, stacklevel=3)


def _structural_components(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fast DeLong: (auc (k,), V10 (k, m), V01 (k, n)) for k score rows; `pos` (k, m) and `neg` (k, n)."""
    m, n = pos.shape[1], neg.shape[1]
    tx = rankdata(pos, axis=1)
    ty = rankdata(neg, axis=1)
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    aucs = v10.mean(axis=1)
    return aucs, v10, v01


def _side_covariance(v: np.ndarray, aucs: np.ndarray, tied: np.ndarray) -> np.ndarray:
    """Sample covariance (k, k) of one side's structural components v (k, cases); for a single case, where it is
    undefined, the bound A(1-A) on the diagonal (0 where all scores tie) and NaN off it (see the module docstring)."""
    if v.shape[1] > 1:
        return np.atleast_2d(np.cov(v))
    out = np.full((v.shape[0],) * 2, np.nan)
    np.fill_diagonal(out, np.where(tied, 0.0, aucs * (1.0 - aucs)))
    return out


def _covariance(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    """DeLong covariance matrix S10/m + S01/n of k AUCs from their structural components."""
    m, n = v10.shape[1], v01.shape[1]
    aucs = v10.mean(axis=1)
    tied = (v10 == 0.5).all(axis=1) & (v01 == 0.5).all(axis=1)  # with m or n = 1: exactly "all scores tied"
    return _side_covariance(v10, aucs, tied) / m + _side_covariance(v01, aucs, tied) / n


def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties count 1/2); NaN with a warning when there are no positives or no negatives."""
    y, (s,) = _check(y_true, y_score)
    reason = undefined_reason(y)
    if reason:
        _warn(f"AUC undefined: {reason}")
        return math.nan
    m = int(y.sum())
    n = y.size - m
    ranks = rankdata(s)
    return float((ranks[y].sum() - m * (m + 1) / 2.0) / (m * n))


def delong(y_true: np.ndarray, y_score: np.ndarray) -> tuple[float, float]:
    """(AUC, DeLong variance of the AUC); both NaN with a warning when the AUC is undefined."""
    y, (s,) = _check(y_true, y_score)
    reason = undefined_reason(y)
    if reason:
        _warn(f"AUC undefined: {reason}")
        return math.nan, math.nan
    aucs, v10, v01 = _structural_components(s[y][None, :], s[~y][None, :])
    return float(aucs[0]), float(_covariance(v10, v01)[0, 0])


def normal_quantile(level: float) -> float:
    """Two-sided standard-normal quantile z with P(|Z| <= z) = level (1.959964 for 0.95)."""
    if not 0.0 < level < 1.0:
        raise MetricError(f"confidence level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


INTERVAL_METHODS = ("logit", "wald")


def auc_interval(value: float, variance: float, n_pos: int, n_neg: int, level: float = 0.95,
                 method: str = "logit") -> tuple[float, float]:
    """(low, high) confidence interval of an AUC from its DeLong variance and the numbers of positives and negatives.

    `logit` (default): logit(A) ± z·sqrt(Var)/(A(1-A)), back-transformed (Pepe 2003; Pohar Perme & Manevski 2019).
    At A = 0 or 1 (perfect separation, Var = 0) the Wilson-type score interval with the Birnbaum-Klose (1957) maximal
    variance θ(1-θ)/min(m, n): [N/(N+z²), 1] at A = 1 and [0, z²/(N+z²)] at A = 0, N = min(m, n). Var = 0 with
    0 < A < 1 happens only when every score is tied; that AUC is 0.5 in every sample and the interval is [A, A].
    `wald`: A ± z·sqrt(Var) clipped to [0, 1] (degenerate [A, A] whenever Var = 0). NaN in, NaN out.
    """
    if method not in INTERVAL_METHODS:
        raise MetricError(f"interval method must be one of {INTERVAL_METHODS}, got {method!r}")
    z = normal_quantile(level)
    if math.isnan(value) or math.isnan(variance):
        return math.nan, math.nan
    if method == "wald":
        half = z * math.sqrt(max(variance, 0.0))
        return max(0.0, value - half), min(1.0, value + half)
    if value <= 0.0 or value >= 1.0:
        n = min(n_pos, n_neg)
        if n < 1:
            raise MetricError(f"an AUC interval needs positives and negatives, got m={n_pos}, n={n_neg}")
        bound = n / (n + z * z)
        return (bound, 1.0) if value >= 1.0 else (0.0, 1.0 - bound)
    if not variance > 0.0:
        return value, value
    centre = math.log(value / (1.0 - value))
    half = z * math.sqrt(variance) / (value * (1.0 - value))
    return _expit(centre - half), _expit(centre + half)


def _expit(x: float) -> float:
    """Logistic function 1/(1+exp(-x)), without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def delong_ci(y_true: np.ndarray, y_score: np.ndarray, level: float = 0.95, method: str = "logit"
              ) -> tuple[float, float, float]:
    """(AUC, low, high): DeLong interval on the logit scale with the edge rule of `auc_interval` (`method="wald"`:
    the untransformed A ± z·sqrt(Var) clipped to [0, 1]); all NaN with a warning when the AUC is undefined."""
    auc_interval(0.5, 0.0, 1, 1, level, method)  # rejects a bad level or method before any work
    value, variance = delong(y_true, y_score)
    if math.isnan(value):
        return math.nan, math.nan, math.nan
    y = np.asarray(y_true).astype(bool)
    m = int(y.sum())
    return (value, *auc_interval(value, variance, m, y.size - m, level, method))


def delong_paired(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> tuple[float, float, float, float]:
    """(AUC_a, AUC_b, z, two-sided p) of DeLong's test for two scorings of the same cases.

    z = (A_a - A_b) / sqrt(Var_a + Var_b - 2 Cov_ab). z and p are NaN (with a warning) when that variance is zero,
    e.g. for identical scorings, or undefined: a single positive or negative case gives no estimate of Cov_ab.
    """
    y, (a, b) = _check(y_true, score_a, score_b)
    reason = undefined_reason(y)
    if reason:
        _warn(f"AUC undefined: {reason}")
        return math.nan, math.nan, math.nan, math.nan
    single = "positive" if y.sum() == 1 else "negative" if (~y).sum() == 1 else None
    both = np.stack([a, b])
    aucs, v10, v01 = _structural_components(both[:, y], both[:, ~y])
    cov = _covariance(v10, v01)
    variance = cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]
    auc_a, auc_b = float(aucs[0]), float(aucs[1])
    if single:
        _warn(f"paired DeLong test undefined: a single {single} case (the covariance of two AUCs cannot be estimated "
              "from one case)")
        return auc_a, auc_b, math.nan, math.nan
    if not variance > 1e-15:
        _warn("paired DeLong test undefined: the variance of the AUC difference is zero (identical or degenerate scores)")
        return auc_a, auc_b, math.nan, math.nan
    z = (auc_a - auc_b) / math.sqrt(variance)
    p = 2.0 * NormalDist().cdf(-abs(z))
    return auc_a, auc_b, float(z), float(p)


def delong_matrix(y_true: np.ndarray, score_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUCs (R,), DeLong covariance (R, R)) of R scorings (R, N) of the same cases, from one midrank pass.

    NaN (with a warning) when the AUC is undefined; off the diagonal NaN with a single positive or negative case.
    Any pair's paired test follows from it: see `delong_pairs`.
    """
    rows = np.atleast_2d(np.asarray(score_rows, dtype=np.float64))
    y, checked = _check(y_true, *rows)
    reason = undefined_reason(y)
    if reason:
        _warn(f"AUC undefined: {reason}")
        return np.full(rows.shape[0], np.nan), np.full((rows.shape[0],) * 2, np.nan)
    both = np.stack(checked)
    aucs, v10, v01 = _structural_components(both[:, y], both[:, ~y])
    return aucs, _covariance(v10, v01)


def delong_pairs(aucs: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, two-sided p), each (R, R), of DeLong's paired test for every pair of R scorings; z[a, b] tests A_a - A_b.

    Equal to `delong_paired` pair by pair; NaN on the diagonal and where the variance of the difference is zero or
    undefined (no warning here: the caller sees the NaN).
    """
    a = np.asarray(aucs, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    d = np.diag(cov)
    variance = d[:, None] + d[None, :] - 2.0 * cov
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(variance > 1e-15, (a[:, None] - a[None, :]) / np.sqrt(np.where(variance > 0, variance, 1.0)), np.nan)
    return z, 2.0 * ndtr(-np.abs(z))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN entries stay NaN and do not count."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    k = valid.size
    if k == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    steps = (k - np.arange(k)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted


# --- bootstrap by patient -------------------------------------------------------------------------------------------


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
    indicator = sparse.csr_matrix((np.ones(s.size, weights_t.dtype), (cell, np.arange(s.size))), shape=(3 * g + 1, s.size))
    sums = np.asarray(indicator @ weights_t, dtype=np.float64)  # (3G+1, B)
    negative, positive = sums[: 2 * g + 1], sums[2 * g + 1:]
    cumulative = np.cumsum(negative, axis=0)
    credit = cumulative[0: 2 * g: 2] + 0.5 * negative[1: 2 * g + 1: 2]  # L_g
    numerator = (positive * credit).sum(axis=0)
    denominator = positive.sum(axis=0) * cumulative[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def bootstrap_class_replicates(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, defined: np.ndarray) -> np.ndarray:
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


def bootstrap_mean_replicates(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, defined: np.ndarray) -> np.ndarray:
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
    / (B + 1)) (Davison & Hinkley 1997, sec. 4.2; North et al. 2002), never below `bootstrap_p_floor(B)`; NaN for B = 0."""
    d = differences[~np.isnan(differences)]
    if not d.size:
        return math.nan
    count = min(int(np.count_nonzero(d <= 0)), int(np.count_nonzero(d >= 0)))
    return min(1.0, 2.0 * (1 + count) / (d.size + 1))


def bootstrap_p_floor(n_replicates: int) -> float:
    """The smallest two-sided p `paired_bootstrap_p` gives from `n_replicates` replicates: 2/(B + 1) (no replicate on
    the other side of 0); a p at this floor says only "at most this"."""
    return min(1.0, 2.0 / (int(n_replicates) + 1))


def kept_rows(labels: np.ndarray) -> np.ndarray:
    """Mask of the cases of one class whose label counts: every case but those labelled -1 (masked out)."""
    return np.asarray(labels) != -1


def defined_classes(labels: np.ndarray) -> np.ndarray:
    """Mask of the columns of (N, C) labels (1/0, -1 masked) that have both positives and negatives (a defined AUC)."""
    labels = np.asarray(labels)
    return (labels == 1).any(axis=0) & (labels == 0).any(axis=0)


def check_matrix(labels: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Validate (N, C) labels (1/0, -1 = masked out of that class) and scores; return labels as int8 (bool when none
    is masked), the scores, and the mask of classes with positives and negatives among their kept cases."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise MetricError(f"labels must be an (N, C) array, got shape {labels.shape}")
    checked = [np.asarray(s, dtype=np.float64) for s in scores]
    for s in checked:
        if s.shape != labels.shape:
            raise MetricError(f"scores of shape {s.shape} for labels of shape {labels.shape}")
    kept = [kept_rows(labels[:, c]) for c in range(labels.shape[1])]
    for c in range(labels.shape[1]):
        if kept[c].any():
            _check(labels[kept[c], c], *(s[kept[c], c] for s in checked))
    defined = np.array([kept[c].any() and undefined_reason(labels[kept[c], c]) is None for c in range(labels.shape[1])])
    if not defined.any():
        raise MetricError("no class has both positive and negative cases; a mean AUC is undefined")
    masked = not all(k.all() for k in kept)
    return (labels.astype(np.int8) if masked else labels.astype(bool)), checked, defined


def masked_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """AUC of one class over its kept cases (label -1 = masked out)."""
    kept = kept_rows(y_true)
    return auc(np.asarray(y_true)[kept], np.asarray(y_score)[kept])


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile bootstrap interval of the non-NaN `samples` at `level`."""
    samples = samples[~np.isnan(samples)]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_mean_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, n_boot: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean AUC over classes, percentile-interval low, high) from a bootstrap over patients.

    `labels`, `scores`: (N, C); `groups`: patient id per case. A label -1 masks the case out of that class. The mean
    runs over the classes that have positives and negatives among their kept cases in the full sample.
    """
    labels, (scores,), defined = check_matrix(labels, scores)
    point = float(np.mean([masked_auc(labels[:, c], scores[:, c]) for c in np.flatnonzero(defined)]))
    samples = bootstrap_mean_replicates(labels, scores, patient_weights(groups, n_boot, seed), defined)
    return (point, *percentile_interval(samples, level))


def bootstrap_mean_auc_difference(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, groups: np.ndarray,
                                  n_boot: int = 1000, seed: int = 0, level: float = 0.95
                                  ) -> tuple[float, float, float, float]:
    """(mean AUC_a - mean AUC_b, interval low, high, two-sided p) from one paired bootstrap over patients.

    Both runs are scored on the same resampled cases in each replicate; p is `paired_bootstrap_p` of the replicate
    differences.
    """
    labels, (a, b), defined = check_matrix(labels, scores_a, scores_b)
    point = float(np.mean([masked_auc(labels[:, c], a[:, c]) - masked_auc(labels[:, c], b[:, c]) for c in np.flatnonzero(defined)]))
    weights = patient_weights(groups, n_boot, seed)
    diffs = bootstrap_mean_replicates(labels, a, weights, defined) - bootstrap_mean_replicates(labels, b, weights, defined)
    return (point, *percentile_interval(diffs, level), paired_bootstrap_p(diffs))
