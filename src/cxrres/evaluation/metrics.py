"""AUC, DeLong variances, intervals and paired tests, a patient bootstrap, the best run per class, and Holm's
correction.

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

import numpy as np
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
            raise MetricError(
                f"{s.shape[0] if s.ndim else 0} scores for {y.shape[0]} labels (shapes {s.shape} vs {y.shape})"
            )
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


def auc_interval(
    value: float, variance: float, n_pos: int, n_neg: int, level: float = 0.95, method: str = "logit"
) -> tuple[float, float]:
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


def delong_ci(
    y_true: np.ndarray, y_score: np.ndarray, level: float = 0.95, method: str = "logit"
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
        _warn(
            f"paired DeLong test undefined: a single {single} case (the covariance of two AUCs cannot be estimated "
            "from one case)"
        )
        return auc_a, auc_b, math.nan, math.nan
    if not variance > 1e-15:
        _warn(
            "paired DeLong test undefined: the variance of the AUC difference is zero (identical or degenerate scores)"
        )
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
        z = np.where(
            variance > 1e-15, (a[:, None] - a[None, :]) / np.sqrt(np.where(variance > 0, variance, 1.0)), np.nan
        )
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
