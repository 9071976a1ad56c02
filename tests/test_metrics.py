"""cxrres.metrics: AUC, DeLong (fast vs an independent O(n^2) form), intervals, paired tests, bootstrap, Holm."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrres import metrics
from cxrres.metrics import MetricError, UndefinedMetricWarning


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
    s10 = np.array([[np.sum((v10[i] - v10[i].mean()) * (v10[j] - v10[j].mean())) / (m - 1) for j in range(k)] for i in range(k)])
    s01 = np.array([[np.sum((v01[i] - v01[i].mean()) * (v01[j] - v01[j].mean())) / (n - 1) for j in range(k)] for i in range(k)])
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


def test_delong_ci_is_wald_interval_clipped(cases):
    y, a, _ = cases
    value, low, high = metrics.delong_ci(y, a, level=0.95)
    _, variance = metrics.delong(y, a)
    assert low == pytest.approx(value - 1.959963985 * math.sqrt(variance))
    assert high == pytest.approx(value + 1.959963985 * math.sqrt(variance))
    perfect = metrics.delong_ci([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])
    assert perfect == (1.0, 1.0, 1.0)
    v, lo, hi = metrics.delong_ci([1, 1, 0, 0], [0.9, 0.4, 0.3, 0.6])
    assert hi == 1.0 and lo < v  # clipped at 1


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


@pytest.mark.parametrize("y,s,message", [
    ([0, 1, 1], [0.1, 0.2], "2 scores for 3 labels"),
    ([0, 1], [0.1, float("nan")], "1 scores are NaN"),
    ([0, 2], [0.1, 0.2], "labels must be 0 or 1"),
    ([], [], "non-empty"),
])
def test_malformed_input_raises(y, s, message):
    with pytest.raises(MetricError, match=message):
        metrics.auc(y, s)


def test_holm_known_values():
    adjusted = metrics.holm(np.array([0.01, 0.04, 0.03, np.nan, 0.005]))
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> monotone .06
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, np.nan, 0.02])
    assert metrics.holm(np.array([0.9, 0.8])).tolist() == [1.0, 1.0]


def test_weighted_auc_equals_auc_of_replicated_cases(cases):
    y, _, b = cases
    rng = np.random.default_rng(1)
    weights = rng.integers(0, 3, size=(4, y.size))
    got = metrics.weighted_auc(y, b, weights)
    for row, value in zip(weights, got):
        idx = np.repeat(np.arange(y.size), row)
        assert value == pytest.approx(metrics.auc(y[idx], b[idx]), abs=1e-12)


def test_patient_bootstrap_resamples_whole_patients():
    groups = np.array([5, 5, 9, 9, 9, 2])
    w = metrics.patient_weights(groups, n_boot=50, seed=3)
    assert w.shape == (50, 6)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 2] == w[:, 4]).all()
    assert (w[:, [0, 2, 5]].sum(axis=1) == 3).all()  # three patients drawn per replicate
    np.testing.assert_array_equal(w, metrics.patient_weights(groups, n_boot=50, seed=3))


def test_bootstrap_mean_auc_and_difference():
    rng = np.random.default_rng(0)
    n, c = 400, 3
    groups = rng.integers(0, 150, n)
    labels = (rng.random((n, c)) < 0.3).astype(int)
    good = labels * 1.5 + rng.normal(size=(n, c))
    bad = labels * 0.3 + rng.normal(size=(n, c))
    point, low, high = metrics.bootstrap_mean_auc(labels, good, groups, n_boot=300)
    assert point == pytest.approx(np.mean([metrics.auc(labels[:, k], good[:, k]) for k in range(c)]))
    assert low < point < high and high - low < 0.15
    diff, dlow, dhigh, p = metrics.bootstrap_mean_auc_difference(labels, good, bad, groups, n_boot=300)
    assert dlow > 0 and p < 0.01 and dlow < diff < dhigh
    same = metrics.bootstrap_mean_auc_difference(labels, good, good, groups, n_boot=100)
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
