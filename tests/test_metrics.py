"""cxrres.evaluation.metrics: AUC, DeLong (fast vs an independent O(n^2) form), intervals, paired tests, bootstrap,
Holm."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from cxrres.evaluation import bootstrap
from cxrres.evaluation import metrics
from cxrres.evaluation.metrics import MetricError, UndefinedMetricWarning


def slow_delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) written from the definition: psi over all pairs, O(m n) per scoring."""
    y = y.astype(bool)
    comps10, comps01, aucs = [], [], []
    for s in scores:
        x, yy = s[y], s[~y]
        psi = (x[:, None] > yy[None, :]).astype(float) + 0.5 * (x[:, None] == yy[None, :])
        comps10.append(psi.mean(axis=1))
        comps01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    v10, v01 = np.array(comps10), np.array(comps01)
    m, n = v10.shape[1], v01.shape[1]
    k = len(scores)
    s10 = np.array(
        [[np.sum((v10[i] - v10[i].mean()) * (v10[j] - v10[j].mean())) / (m - 1) for j in range(k)] for i in range(k)]
    )
    s01 = np.array(
        [[np.sum((v01[i] - v01[i].mean()) * (v01[j] - v01[j].mean())) / (n - 1) for j in range(k)] for i in range(k)]
    )
    return np.array(aucs), s10 / m + s01 / n


@pytest.fixture
def cases() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.random(300) < 0.3
    a = y * 0.8 + rng.normal(size=300)
    b = np.round(y * 0.4 + rng.normal(size=300), 1)  # coarse scores: many ties
    return y.astype(int), a, b


def test_auc_matches_sklearn_with_ties(cases):
    y, a, b = cases
    assert metrics.auc(y, a) == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert metrics.auc(y, b) == pytest.approx(roc_auc_score(y, b), abs=1e-12)


def test_auc_known_values():
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert metrics.auc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts one half
    # pairs (pos, neg): (0.3>0.1) (0.3>0.2) (0.2=0.2 -> 1/2) (0.2>0.1): 3.5 of 4
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.2, 0.3]) == 3.5 / 4


def test_delong_matches_slow_definition(cases):
    y, a, b = cases
    for s in (a, b):
        value, variance = metrics.delong(y, s)
        slow_auc, slow_cov = slow_delong(y, [s])
        assert value == pytest.approx(slow_auc[0], abs=1e-12)
        assert variance == pytest.approx(slow_cov[0, 0], rel=1e-10)


def test_delong_paired_matches_slow_definition(cases):
    y, a, b = cases
    auc_a, auc_b, z, p = metrics.delong_paired(y, a, b)
    aucs, cov = slow_delong(y, [a, b])
    expected_z = (aucs[0] - aucs[1]) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert (auc_a, auc_b) == pytest.approx(tuple(aucs), abs=1e-12)
    assert z == pytest.approx(expected_z, rel=1e-10)
    assert p == pytest.approx(math.erfc(abs(expected_z) / math.sqrt(2)), rel=1e-10)
    _, _, z_swapped, p_swapped = metrics.delong_paired(y, b, a)
    assert z_swapped == pytest.approx(-z) and p_swapped == pytest.approx(p)


def test_delong_known_value():
    # m = n = 2; psi matrix [[1, 1], [1, 0]] -> AUC 3/4, V10 = (1, 1/2), V01 = (1, 1/2):
    # S10 = S01 = var([1, .5]) = 1/8, Var = 1/16 + 1/16 = 1/8.
    value, variance = metrics.delong([1, 1, 0, 0], [0.9, 0.4, 0.3, 0.6])
    assert value == 0.75
    assert variance == pytest.approx(0.125)


def test_delong_ci_wald_method_is_wald_interval_clipped(cases):
    """The untransformed interval, kept as method="wald" (it was the default before the logit interval)."""
    y, a, _ = cases
    value, low, high = metrics.delong_ci(y, a, level=0.95, method="wald")
    _, variance = metrics.delong(y, a)
    assert low == pytest.approx(value - 1.959963985 * math.sqrt(variance))
    assert high == pytest.approx(value + 1.959963985 * math.sqrt(variance))
    perfect = metrics.delong_ci([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], method="wald")
    assert perfect == (1.0, 1.0, 1.0)  # the degenerate interval the logit default replaces
    v, lo, hi = metrics.delong_ci([1, 1, 0, 0], [0.9, 0.4, 0.3, 0.6], method="wald")
    assert hi == 1.0 and lo < v  # clipped at 1


def logit_reference(auc: float, variance: float, level: float) -> tuple[float, float]:
    """The logit interval written out by hand: expit(log(A/(1-A)) ± z sqrt(Var) / (A (1-A))), z from scipy."""
    z = norm.ppf(0.5 + level / 2)
    se = math.sqrt(variance) / (auc * (1 - auc))
    centre = math.log(auc / (1 - auc))
    return 1 / (1 + math.exp(-(centre - z * se))), 1 / (1 + math.exp(-(centre + z * se)))


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_delong_ci_is_logit_interval_by_default(cases, level):
    y, a, b = cases
    for s in (a, b):
        slow_auc, slow_cov = slow_delong(y, [s])
        value, low, high = metrics.delong_ci(y, s, level)
        assert value == pytest.approx(slow_auc[0], abs=1e-12)
        assert (low, high) == pytest.approx(logit_reference(slow_auc[0], slow_cov[0, 0], level), rel=1e-10)
        assert 0 < low < value < high < 1


def test_logit_interval_known_value():
    # the m = n = 2 case of test_delong_known_value: A = 3/4, Var = 1/8; logit(3/4) = ln 3, SE = sqrt(1/8) / (3/16)
    value, low, high = metrics.delong_ci([1, 1, 0, 0], [0.9, 0.4, 0.3, 0.6])
    half = 1.959963984540054 * math.sqrt(0.125) / 0.1875
    assert value == 0.75
    assert low == pytest.approx(3 * math.exp(-half) / (1 + 3 * math.exp(-half)), rel=1e-12)
    assert high == pytest.approx(3 * math.exp(half) / (1 + 3 * math.exp(half)), rel=1e-12)


def score_interval_root(n: int, level: float) -> float:
    """Independent root of the score equation (1 - θ)² = z² θ (1 - θ) / n on (0, 1), by bisection (scipy brentq)."""
    z = norm.ppf(0.5 + level / 2)
    return brentq(lambda theta: (1 - theta) ** 2 - z * z * theta * (1 - theta) / n, 1e-12, 1 - 1e-12)


@pytest.mark.parametrize("m,n", [(2, 3), (5, 40), (40, 5), (300, 9000)])
def test_edge_intervals_are_score_intervals_with_maximal_variance(m, n):
    """AUC = 1 or 0: the Wilson-type interval with Var = θ(1-θ)/min(m, n) (Birnbaum & Klose 1957)."""
    y = np.r_[np.ones(m, int), np.zeros(n, int)]
    s = np.r_[np.linspace(2, 3, m), np.linspace(0, 1, n)]
    lower = score_interval_root(min(m, n), 0.95)
    assert metrics.delong(y, s)[1] == 0.0  # DeLong's variance is 0 here: the Wald interval would be [1, 1]
    value, low, high = metrics.delong_ci(y, s)
    assert (value, high) == (1.0, 1.0) and low == pytest.approx(lower, rel=1e-9) and low < 1
    value, low, high = metrics.delong_ci(y, -s)
    assert (value, low) == (0.0, 0.0) and high == pytest.approx(1 - lower, rel=1e-9) and high > 0


def test_edge_interval_small_case_by_hand():
    # m = 2, n = 3, AUC = 1: N = 2, low = 2 / (2 + z²) with z = 1.959964, z² = 3.841459 -> 0.342380
    value, low, high = metrics.delong_ci([1, 1, 0, 0, 0], [5, 4, 3, 2, 1])
    assert (value, high) == (1.0, 1.0)
    assert low == pytest.approx(2 / (2 + 1.959963984540054**2), rel=1e-12)
    assert low == pytest.approx(0.342380, abs=1e-6)


def test_logit_intervals_stay_inside_and_contain_the_estimate():
    rng = np.random.default_rng(11)
    for trial in range(200):
        size = int(rng.integers(2, 40))
        y = np.r_[1, 0, rng.integers(0, 2, size)]
        s = np.round(y * rng.normal(1.5, 1) + rng.normal(size=y.size), int(rng.integers(0, 3)))
        value, low, high = metrics.delong_ci(y, s)
        assert 0.0 <= low <= value <= high <= 1.0
        if np.ptp(s) > 0:
            assert low < high, (y, s)  # only constant scores give a point interval


def test_near_edge_logit_interval_is_not_degenerate():
    # one discordant pair out of m n = 20 x 30: DeLong's variance is small but positive and the logit interval opens
    y = np.r_[np.ones(20, int), np.zeros(30, int)]
    s = np.r_[np.linspace(2, 3, 20), np.linspace(0, 1, 30)]
    s[0] = 0.99  # one positive below the highest negative (1.0), above all the others
    value, low, high = metrics.delong_ci(y, s)
    _, variance = metrics.delong(y, s)
    assert value == pytest.approx(1 - 1 / 600) and variance > 0
    assert low < value < high < 1
    assert (low, high) == pytest.approx(logit_reference(value, variance, 0.95), rel=1e-10)


def test_interval_method_and_level_are_checked():
    with pytest.raises(MetricError, match="interval method"):
        metrics.delong_ci([0, 1], [0.1, 0.2], method="exact")
    with pytest.raises(MetricError, match="confidence level"):
        metrics.delong_ci([0, 0], [0.1, 0.2], level=1.5)
    assert all(math.isnan(v) for v in metrics.auc_interval(math.nan, math.nan, 0, 3))


@pytest.mark.parametrize("y", [[0, 0, 0], [1, 1, 1]])
def test_undefined_auc_is_nan_with_reason(y):
    with pytest.warns(UndefinedMetricWarning, match="no (positive|negative) cases"):
        assert math.isnan(metrics.auc(y, [0.1, 0.2, 0.3]))
    with pytest.warns(UndefinedMetricWarning):
        assert all(math.isnan(v) for v in metrics.delong_ci(y, [0.1, 0.2, 0.3]))


def test_constant_scores():
    y = np.array([0, 1, 0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.delong_ci(y, np.full(5, 0.3)) == (0.5, 0.5, 0.5)
    with pytest.warns(UndefinedMetricWarning, match="variance of the AUC difference is zero"):
        a, b, z, p = metrics.delong_paired(y, np.full(5, 0.3), np.full(5, 0.7))
    assert (a, b) == (0.5, 0.5) and math.isnan(z) and math.isnan(p)


@pytest.mark.parametrize(
    "y,s,message",
    [
        ([0, 1, 1], [0.1, 0.2], "2 scores for 3 labels"),
        ([0, 1], [0.1, float("nan")], "1 scores are NaN"),
        ([0, 2], [0.1, 0.2], "labels must be 0 or 1"),
        ([], [], "non-empty"),
    ],
)
def test_malformed_input_raises(y, s, message):
    with pytest.raises(MetricError, match=message):
        metrics.auc(y, s)


def test_delong_matrix_and_pairs_match_slow_definition_and_delong_paired(cases):
    y, a, b = cases
    rng = np.random.default_rng(5)
    c = np.round(a + rng.normal(size=a.size), 1)
    aucs, cov = metrics.delong_matrix(y, np.stack([a, b, c]))
    slow_aucs, slow_cov = slow_delong(y, [a, b, c])
    np.testing.assert_allclose(aucs, slow_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, slow_cov, rtol=1e-10)
    z, p = metrics.delong_pairs(aucs, cov)
    assert np.isnan(np.diag(z)).all() and np.isnan(np.diag(p)).all()
    for i, j in [(0, 1), (1, 2), (2, 0)]:
        _, _, z_ij, p_ij = metrics.delong_paired(y, [a, b, c][i], [a, b, c][j])
        assert z[i, j] == pytest.approx(z_ij, rel=1e-10) and z[j, i] == pytest.approx(-z_ij, rel=1e-10)
        assert p[i, j] == pytest.approx(p_ij, rel=1e-10)
    same_z, _ = metrics.delong_pairs(*metrics.delong_matrix(y, np.stack([a, a])))
    assert np.isnan(same_z).all()  # identical scorings: zero variance of the difference
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(metrics.delong_matrix(np.zeros(4, int), np.ones((2, 4)))[0]).all()


def brute_force_best(points: np.ndarray, reps: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Loops over classes and replicates; ties split by counting."""
    r, b, c = reps.shape
    best, shares = [], np.full((r, c), np.nan)
    for k in range(c):
        runs = [i for i in range(r) if not math.isnan(points[i, k])]
        best.append(max(runs, key=lambda i: (points[i, k], -i)) if runs else -1)
        counts, used = dict.fromkeys(runs, 0.0), 0
        for j in range(b):
            values = [reps[i, j, k] for i in runs]
            if not runs or any(math.isnan(v) for v in values):
                continue
            used += 1
            top = max(values)
            winners = [i for i in runs if reps[i, j, k] == top]
            for i in winners:
                counts[i] += 1 / len(winners)
        for i in runs:
            shares[i, k] = counts[i] / used if used else math.nan
    return best, shares


def test_best_run_shares_against_brute_force():
    rng = np.random.default_rng(3)
    r, b, c = 4, 200, 6
    reps = np.round(rng.normal(0.8, 0.02, size=(r, b, c)), 2)  # coarse: many ties
    reps[:, rng.random(b) < 0.1, 1] = np.nan  # replicates without positives for class 1 (NaN for every run)
    reps[2, :5, 3] = np.nan  # a few undefined replicates of one run
    points = np.nanmean(reps, axis=1)
    points[2, 3] = 0.8
    points[1, 4] = np.nan  # run 1 has no score for class 4 (e.g. a per-label net): it does not compete
    reps[1, :, 4] = np.nan
    points[:, 5] = np.nan  # class 5 undefined everywhere
    got = bootstrap.best_run_shares(points, reps)
    best, shares = brute_force_best(points, reps)
    assert got.best.tolist() == best
    np.testing.assert_allclose(got.shares, shares, rtol=1e-12, equal_nan=True)
    assert got.n_replicates[3] == b - 5 and got.n_replicates[5] == 0
    np.testing.assert_allclose(np.nansum(got.shares[:, :5], axis=0), 1.0)


def test_best_run_shares_hand_made():
    points = np.array([[0.70, 0.9], [0.80, 0.9], [0.75, np.nan]])
    reps = np.array(
        [  # 3 runs x 4 replicates x 2 classes
            [[0.70, 0.9], [0.80, 0.9], [0.70, 0.9], [np.nan, 0.9]],
            [[0.80, 0.8], [0.80, 0.9], [0.60, 0.9], [np.nan, 0.9]],
            [[0.75, 0.1], [0.70, 0.1], [0.65, 0.1], [np.nan, 0.1]],
        ]
    )
    got = bootstrap.best_run_shares(points, reps)
    assert got.best.tolist() == [1, 0]  # class 1: runs 0 and 1 tie at 0.9 -> the first
    # class 0: replicate 1 run 1, replicate 2 a tie of runs 0 and 1, replicate 3 run 0; replicate 4 undefined
    np.testing.assert_allclose(got.shares[:, 0], [1.5 / 3, 1.5 / 3, 0.0])
    # class 1: run 2 does not compete; run 0 wins outright once, ties three times
    np.testing.assert_allclose(got.shares[:, 1], [2.5 / 4, 1.5 / 4, np.nan])
    assert got.n_replicates.tolist() == [3, 4]
    with pytest.raises(MetricError, match="do not match"):
        bootstrap.best_run_shares(points[:2], reps)


def test_holm_known_values():
    adjusted = metrics.holm(np.array([0.01, 0.04, 0.03, np.nan, 0.005]))
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> monotone .06
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, np.nan, 0.02])
    assert metrics.holm(np.array([0.9, 0.8])).tolist() == [1.0, 1.0]


def test_weighted_auc_equals_auc_of_replicated_cases(cases):
    y, _, b = cases
    rng = np.random.default_rng(1)
    weights = rng.integers(0, 3, size=(4, y.size))
    got = bootstrap.weighted_auc(y, b, weights)
    for row, value in zip(weights, got):
        idx = np.repeat(np.arange(y.size), row)
        assert value == pytest.approx(metrics.auc(y[idx], b[idx]), abs=1e-12)


def test_weighted_auc_edge_rows_and_float32_weights(cases):
    y, a, b = cases
    rng = np.random.default_rng(2)
    weights = rng.integers(0, 4, size=(6, y.size)).astype(np.float32)
    weights[0] = 0  # nothing drawn
    weights[1] = np.where(y == 1, 0, weights[1])  # no positive drawn
    weights[2] = np.where(y == 0, 0, weights[2])  # no negative drawn
    got = bootstrap.weighted_auc(y, b, weights)
    assert np.isnan(got[:3]).all()
    for row, value in zip(weights[3:].astype(int), got[3:]):
        idx = np.repeat(np.arange(y.size), row)
        assert value == pytest.approx(roc_auc_score(y[idx], b[idx]), abs=1e-12)
    labels = np.stack([y, 1 - y, y], axis=1)
    scores = np.stack([a, b, -a], axis=1)
    per_class = bootstrap.bootstrap_class_replicates(labels, scores, weights[3:], np.array([True, True, False]))
    for c in range(2):
        np.testing.assert_array_equal(per_class[:, c], bootstrap.weighted_auc(labels[:, c], scores[:, c], weights[3:]))
    assert np.isnan(per_class[:, 2]).all()


def test_patient_bootstrap_resamples_whole_patients():
    groups = np.array([5, 5, 9, 9, 9, 2])
    w = bootstrap.patient_weights(groups, n_boot=50, seed=3)
    assert w.shape == (50, 6)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 2] == w[:, 4]).all()
    assert (w[:, [0, 2, 5]].sum(axis=1) == 3).all()  # three patients drawn per replicate
    np.testing.assert_array_equal(w, bootstrap.patient_weights(groups, n_boot=50, seed=3))


def test_bootstrap_mean_auc_and_difference():
    rng = np.random.default_rng(0)
    n, c = 400, 3
    groups = rng.integers(0, 150, n)
    labels = (rng.random((n, c)) < 0.3).astype(int)
    good = labels * 1.5 + rng.normal(size=(n, c))
    bad = labels * 0.3 + rng.normal(size=(n, c))
    point, low, high = bootstrap.bootstrap_mean_auc(labels, good, groups, n_boot=300)
    assert point == pytest.approx(np.mean([metrics.auc(labels[:, k], good[:, k]) for k in range(c)]))
    assert low < point < high and high - low < 0.15
    diff, dlow, dhigh, p = bootstrap.bootstrap_mean_auc_difference(labels, good, bad, groups, n_boot=300)
    assert dlow > 0 and p < 0.01 and dlow < diff < dhigh
    same = bootstrap.bootstrap_mean_auc_difference(labels, good, good, groups, n_boot=100)
    assert same[0] == 0 and same[3] == 1.0


def test_delong_speed_chexnet_test_size():
    """DeLong with intervals for 22,433 cases x 14 classes: well under a second (docs/statistics.md)."""
    rng = np.random.default_rng(0)
    labels = rng.random((22_433, 14)) < 0.05
    scores = labels * 1.0 + rng.normal(size=labels.shape)
    start = time.perf_counter()
    for c in range(14):
        metrics.delong_ci(labels[:, c], scores[:, c])
    assert time.perf_counter() - start < 1.0


# --- a side with a single case (issue 23, finding 6) ----------------------------------------------------------------


def single_side_delong(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(AUC, variance) from the psi matrix, O(m n): a side with one case contributes A(1-A) instead of a sample
    variance."""
    y = np.asarray(y).astype(bool)
    psi = (s[y][:, None] > s[~y][None, :]) + 0.5 * (s[y][:, None] == s[~y][None, :])
    a = psi.mean()
    m, n = psi.shape
    s10 = a * (1 - a) if m == 1 else psi.mean(axis=1).var(ddof=1)
    s01 = a * (1 - a) if n == 1 else psi.mean(axis=0).var(ddof=1)
    return a, s10 / m + s01 / n


def test_single_positive_or_negative_by_hand():
    # one positive (0.5) above 3 of 4 negatives: A = 3/4; S10 := A(1-A) = 3/16, V01 = (1, 0, 1, 1): S01 = 1/4, /4 = 1/16
    value, variance = metrics.delong([1, 0, 0, 0, 0], [0.5, 0.1, 0.6, 0.2, 0.3])
    assert (value, variance) == (0.75, pytest.approx(0.25))
    # the mirror image (labels swapped, scores negated) is the single-negative case with the same numbers
    assert metrics.delong([0, 1, 1, 1, 1], [-0.5, -0.1, -0.6, -0.2, -0.3]) == (0.75, pytest.approx(0.25))
    rng = np.random.default_rng(11)
    for m, n in [(1, 7), (7, 1), (1, 300), (300, 1), (1, 1)]:
        y = np.r_[np.ones(m, int), np.zeros(n, int)]
        s = np.round(rng.normal(size=m + n) + y, 1)
        assert metrics.delong(y, s) == pytest.approx(single_side_delong(y, s), rel=1e-12, abs=1e-15)


def test_single_case_interval_is_not_narrow_and_ties_stay_a_point():
    y = np.r_[1, np.zeros(50, int)]
    s = np.r_[0.0, np.linspace(-3, 3, 50)]  # the positive in the middle: A = 1/2
    value, low, high = metrics.delong_ci(y, s)
    variance = 0.25 + 0.25 * 50 / 49 / 50  # A(1-A) + S01/n, S01 = var of 25 ones and 25 zeros (ddof 1)
    h = norm.ppf(0.975) * math.sqrt(variance) / 0.25
    assert value == 0.5 and (low, high) == pytest.approx((1 / (1 + math.exp(h)), 1 / (1 + math.exp(-h))), rel=1e-12)
    assert low < 0.05 and high > 0.95  # one positive says little about the AUC
    assert metrics.delong_ci(y, np.zeros(51)) == (0.5, 0.5, 0.5)  # all tied: a point, as with more cases
    assert metrics.delong_ci(y, np.r_[5.0, np.zeros(50)])[1:] == pytest.approx((1 / (1 + norm.ppf(0.975) ** 2), 1.0))


def old_rule_interval(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """The logit interval with the single side's variance term set to 0 (before issue 23), for comparison."""
    a, variance = single_side_delong(y, s)
    m = int(y.sum())
    variance -= a * (1 - a) / m if m == 1 else a * (1 - a) / (y.size - m)
    return metrics.auc_interval(a, variance, m, y.size - m)


@pytest.mark.parametrize("single", ["positive", "negative"])
def test_single_case_interval_coverage_is_near_nominal(single):
    """One case against 50 (binormal, true AUC 0.8), 2,000 draws: the interval covers the true AUC in >= 90 % of them;
    the old zero term covered it in about half."""
    rng = np.random.default_rng(2023)
    delta = math.sqrt(2) * norm.ppf(0.8)  # P(X > Y) = Phi(delta / sqrt 2) = 0.8
    y = np.r_[1, np.zeros(50, int)] if single == "positive" else np.r_[0, np.ones(50, int)]
    hits = old_hits = 0
    draws = 2000
    for _ in range(draws):
        s = rng.normal(size=51) + delta * y
        _, low, high = metrics.delong_ci(y, s)
        hits += low <= 0.8 <= high
        old_low, old_high = old_rule_interval(y, s)
        old_hits += old_low <= 0.8 <= old_high
    assert hits / draws >= 0.93
    assert old_hits / draws < 0.6


def test_paired_test_with_a_single_case_is_undefined():
    y = np.array([1, 0, 0, 0, 0])
    a, b = np.array([0.5, 0.1, 0.6, 0.2, 0.3]), np.array([0.9, 0.1, 0.6, 0.2, 0.3])
    with pytest.warns(UndefinedMetricWarning, match="single positive case"):
        auc_a, auc_b, z, p = metrics.delong_paired(y, a, b)
    assert (auc_a, auc_b) == (0.75, 1.0) and math.isnan(z) and math.isnan(p)
    with pytest.warns(UndefinedMetricWarning, match="single negative case"):
        assert math.isnan(metrics.delong_paired(1 - y, -a, -b)[3])
    aucs, cov = metrics.delong_matrix(y, np.stack([a, b]))
    assert cov[0, 0] == pytest.approx(metrics.delong(y, a)[1]) and np.isnan(cov[0, 1])
    assert np.isnan(metrics.delong_pairs(aucs, cov)[1]).all()


def test_bootstrap_p_counts_the_observed_replicate():
    """p = 2 (1 + count on the far side) / (B + 1): never 0, and 1 for identical runs."""
    assert bootstrap.paired_bootstrap_p(np.ones(1000)) == pytest.approx(2 / 1001) == bootstrap.bootstrap_p_floor(1000)
    d = np.array([-1, -1, 0, 1, 1, 1, 1, 1, 1, np.nan])  # B = 9: 3 at or below 0, 7 at or above
    assert bootstrap.paired_bootstrap_p(d) == pytest.approx(2 * 4 / 10)
    assert bootstrap.paired_bootstrap_p(np.zeros(50)) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(bootstrap.paired_bootstrap_p(np.full(5, np.nan)))
    assert metrics.few_positives(metrics.MIN_POSITIVES - 1) and not metrics.few_positives(metrics.MIN_POSITIVES)
