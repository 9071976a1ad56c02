"""Average precision, Brier score and ECE (cxrres.evaluation.calibration) against scikit-learn and a loop from the
definition; RUN/calibration.csv written by evaluate; the comparison's long table and the report's reliability
diagram."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss

from cxrres import runs
from cxrres.evaluation import calibration
from cxrres.evaluation import bootstrap


def _ece_loop(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """ECE from the definition, one bin at a time: [b/n, (b+1)/n), the last bin closed."""
    total = 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        inside = [(yi, pi) for yi, pi in zip(y, p) if low <= pi < high or (b == n_bins - 1 and pi == 1.0)]
        if inside:
            ys, ps = zip(*inside)
            total += len(inside) / len(y) * abs(sum(ys) / len(ys) - sum(ps) / len(ps))
    return total


def test_metrics_against_sklearn_and_loop() -> None:
    rng = np.random.default_rng(1)
    for trial in range(40):
        n = int(rng.integers(5, 200))
        y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
        y[:2] = [0, 1]
        p = rng.random(n) if trial % 2 else np.round(rng.random(n), 1)  # every other trial: many tied scores
        p[0] = 1.0 if trial % 3 == 0 else p[0]
        assert calibration.average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
        assert calibration.brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
        assert calibration.expected_calibration_error(y, p) == pytest.approx(_ece_loop(y, p), abs=1e-12)


def test_known_values() -> None:
    y, p = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.1])
    assert calibration.average_precision(y, p) == pytest.approx((1 + 2 / 3) / 2)  # 0.5 * 1 + 0.5 * 2/3
    assert calibration.brier_score(y, p) == pytest.approx((0.01 + 0.64 + 0.49 + 0.01) / 4)
    # bins: 0.9 -> 13, 0.8 -> 12, 0.3 -> 4, 0.1 -> 1; each bin alone: ECE = mean |y - p|
    assert calibration.expected_calibration_error(y, p) == pytest.approx((0.1 + 0.8 + 0.7 + 0.1) / 4)
    perfect = calibration.reliability_bins(np.array([1, 0, 1, 1]), np.array([1.0, 0.0, 1.0, 1.0]))
    assert (
        perfect["n"].tolist() == [1] + [0] * 13 + [3]
        and calibration.expected_calibration_error([1, 0, 1, 1], [1, 0, 1, 1]) == 0
    )


def test_weighted_ap_is_ap_of_the_resampled_cases() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(60) < 0.3).astype(int)
    y[:2] = [0, 1]
    p = np.round(rng.random(60), 2)
    weights = bootstrap.patient_weights(np.arange(60) // 2, 30, seed=4)
    got = calibration.weighted_average_precision(y, p, weights)
    for w, value in zip(weights, got):
        repeat = w.astype(int)
        yy, pp = np.repeat(y, repeat), np.repeat(p, repeat)
        assert (math.isnan(value) and yy.sum() == 0) or value == pytest.approx(
            average_precision_score(yy, pp), abs=1e-9
        )


def test_table_masks_and_undefined_classes() -> None:
    rng = np.random.default_rng(5)
    n = 80
    labels = np.stack(
        [(rng.random(n) < 0.4).astype(np.int8), np.zeros(n, np.int8), (rng.random(n) < 0.5).astype(np.int8)], 1
    )
    labels[:10, 0] = -1
    labels[0, 0], labels[10, 0], labels[11, 0] = -1, 1, 0
    scores = rng.random((n, 3))
    predictions = runs.Predictions([f"i{k}" for k in range(n)], ["A", "B", "C"], scores, labels)
    table = calibration.calibration_table(predictions, np.arange(n) // 2, n_boot=50).set_index("class")
    assert list(table.reset_index().columns) == list(calibration.COLUMNS)
    kept = labels[:, 0] >= 0
    assert table.loc["A", "n_pos"] + table.loc["A", "n_neg"] == kept.sum() == n - 10
    assert table.loc["A", "average_precision"] == pytest.approx(
        average_precision_score(labels[kept, 0], scores[kept, 0])
    )
    assert table.loc["A", "brier"] == pytest.approx(brier_score_loss(labels[kept, 0], scores[kept, 0]))
    assert table.loc["B"][["average_precision", "ap_low", "ap_high", "brier", "ece"]].isna().all()
    assert table.loc["A", "ap_low"] <= table.loc["A", "average_precision"] <= table.loc["A", "ap_high"]
    for column in ("average_precision", "brier", "ece"):
        assert table.loc["mean", column] == pytest.approx(table.loc[["A", "C"], column].mean())


def _run_dir(tmp_path: Path) -> tuple[Path, runs.Predictions]:
    """A run directory holding only predictions_test.csv: 90 images of 30 patients, three classes (one never
    positive)."""
    rng = np.random.default_rng(7)
    n = 90
    labels = np.stack([(rng.random(n) < 0.3), np.zeros(n, bool), (rng.random(n) < 0.6)], 1).astype(np.int8)
    labels[5:9, 2] = -1
    scores = np.clip(0.5 * labels + 0.6 * rng.random((n, 3)), 0, 1).astype(np.float32)
    predictions = runs.Predictions(
        [f"{k:03d}.png" for k in range(n)], ["A", "B", "C"], scores, labels, [str(k // 3) for k in range(n)]
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    runs.write_predictions(tmp_path / runs.PREDICTIONS, predictions)
    return tmp_path, runs.read_predictions(tmp_path)


def test_evaluate_writes_calibration_csv(tmp_path: Path, capsys) -> None:
    from cxrres.cli import main

    run_dir, predictions = _run_dir(tmp_path / "run")
    assert main(["evaluate", str(run_dir), "--n-boot", "40"]) == 0
    out = capsys.readouterr().out
    assert (
        f"wrote {run_dir / runs.AUC} and {run_dir / runs.CALIBRATION}" in out
        and "calibration: mean average precision" in out
    )
    table = pd.read_csv(run_dir / runs.CALIBRATION)
    assert table.columns.tolist() == list(calibration.COLUMNS) and table["class"].tolist() == ["A", "B", "C", "mean"]
    keep = predictions.labels[:, 2] >= 0
    y, p = predictions.labels[keep, 2], predictions.scores[keep, 2].astype(np.float64)
    row = table.set_index("class").loc["C"]
    assert (row["n_pos"], row["n_neg"]) == (y.sum(), (y == 0).sum()) and keep.sum() == 86
    assert row["average_precision"] == pytest.approx(average_precision_score(y, p), abs=1e-9)
    assert row["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-9)
    assert row["ece"] == pytest.approx(_ece_loop(y, p), abs=1e-9)
    assert row["ap_low"] < row["average_precision"] < row["ap_high"]
    assert table.set_index("class").loc["B", ["average_precision", "brier", "ece"]].isna().all()
    # the interval is the patient bootstrap's: the same weights give the same replicates
    weights = bootstrap.patient_weights(np.arange(90) // 3, 40, 0)
    reps = calibration.weighted_average_precision(y, p, weights[:, keep])
    assert (row["ap_low"], row["ap_high"]) == pytest.approx(bootstrap.percentile_interval(reps, 0.95))


def test_comparison_and_report_show_calibration(tmp_path: Path) -> None:
    from cxrres.report.calibration import calibration_table, reliability_figure

    run_dir, predictions = _run_dir(tmp_path / "run")
    long, bins = calibration.comparison_tables(
        [("r32", 32)], predictions.labels, {"r32": predictions.scores.astype(float)}, predictions.classes
    )
    assert long.columns.tolist() == ["heading", "resolution_px", "class", "average_precision", "brier", "ece"]
    table = calibration.calibration_table(predictions, np.arange(90) // 3, n_boot=10)
    assert np.allclose(
        long[["average_precision", "brier", "ece"]].to_numpy(dtype=float),
        table[["average_precision", "brier", "ece"]].to_numpy(dtype=float),
        equal_nan=True,
    )
    kept = predictions.labels >= 0
    assert bins["n"].sum() == kept.sum() and len(bins) == calibration.N_BINS
    pooled = calibration.reliability_bins(predictions.labels[kept], predictions.scores[kept])
    assert np.allclose(bins["frequency"], pooled["frequency"], equal_nan=True)
    assert reliability_figure(bins, tmp_path / "rel.png").stat().st_size > 1000
    shown = calibration_table(long)
    assert shown.rows == [["r32", *(f"{v:.3f}" for v in long.iloc[-1][["average_precision", "brier", "ece"]])]]
