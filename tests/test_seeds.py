"""cxrres.evaluation.seeds: mean ± sd over seeds with the per-seed values kept, and the seed ensemble."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cxrres.evaluation import seeds
from cxrres.errors import CxrresError
from cxrres.runs import Predictions


def per_run_table() -> pd.DataFrame:
    rows = [
        # arch, resolution_px, seed, class, auc, ci_low, ci_high
        ("densenet121", 256, 0, "Nodule", 0.70, 0.65, 0.75),
        ("densenet121", 256, 1, "Nodule", 0.74, 0.69, 0.79),
        ("densenet121", 256, 2, "Nodule", 0.78, 0.73, 0.83),
        ("densenet121", 256, 0, "Mass", 0.80, 0.75, 0.85),
        ("densenet121", 256, 1, "Mass", 0.82, 0.77, 0.87),
        ("densenet121", 256, 2, "Mass", math.nan, math.nan, math.nan),  # undefined in this run
        ("densenet121", 1024, 0, "Nodule", 0.81, 0.77, 0.85),  # one seed only
    ]
    return pd.DataFrame(rows, columns=["arch", "resolution_px", "seed", "class", "auc", "ci_low", "ci_high"])


def test_seed_summary_hand_computed():
    got = seeds.seed_summary(per_run_table())
    assert got[["arch", "resolution_px", "class"]].values.tolist() == [
        ["densenet121", 256, "Nodule"],
        ["densenet121", 256, "Mass"],
        ["densenet121", 1024, "Nodule"],
    ]
    assert got["n"].tolist() == [3, 2, 1]
    # Nodule 256: mean 0.74, deviations ±0.04 and 0 -> sd = sqrt((0.0016 + 0 + 0.0016) / 2) = 0.04
    # Mass 256: mean 0.81, sd = sqrt((0.0001 + 0.0001) / 1) = 0.0141421...
    assert got["mean"].tolist() == pytest.approx([0.74, 0.81, 0.81])
    assert got["sd"].iloc[:2].tolist() == pytest.approx([0.04, math.sqrt(0.0002)])
    assert math.isnan(got["sd"].iloc[2])  # n = 1
    assert [c for c in got.columns if "seed" in c] == [
        "auc_seed0",
        "auc_seed1",
        "auc_seed2",
        "ci_low_seed0",
        "ci_low_seed1",
        "ci_low_seed2",
        "ci_high_seed0",
        "ci_high_seed1",
        "ci_high_seed2",
    ]
    assert got.loc[0, ["auc_seed0", "auc_seed1", "auc_seed2"]].tolist() == [0.70, 0.74, 0.78]
    assert got.loc[0, "ci_high_seed2"] == 0.83
    assert math.isnan(got.loc[1, "auc_seed2"]) and math.isnan(got.loc[2, "auc_seed1"])


def test_seed_summary_label_column_and_errors():
    table = per_run_table().rename(columns={"class": "label"}).drop(columns=["ci_low", "ci_high"])
    got = seeds.seed_summary(table, class_column="label")
    assert [c for c in got.columns if "seed" in c] == ["auc_seed0", "auc_seed1", "auc_seed2"]
    with pytest.raises(CxrresError, match="no column"):
        seeds.seed_summary(table)
    with pytest.raises(CxrresError, match="several rows for densenet121 at 256 px, seed 0, class Nodule"):
        seeds.seed_summary(pd.concat([per_run_table(), per_run_table().iloc[:1]]))


def test_format_mean_sd():
    assert seeds.format_mean_sd(0.8421, 0.0043, 3) == "0.842 ± 0.004"
    assert seeds.format_mean_sd(0.8421, math.nan, 1) == "0.842"
    assert seeds.format_mean_sd(math.nan, math.nan, 0) == "–"


def test_seed_ensemble_hand_computed():
    a = Predictions(
        ["i1", "i2", "i3"],
        ["A", "B"],
        np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]),
        np.array([[0, 1], [1, 0], [1, 1]], np.uint8),
    )
    b = Predictions(
        ["i3", "i1", "i4"],
        ["A", "B"],
        np.array([[0.7, 0.2], [0.3, 0.0], [0.9, 0.9]]),
        np.array([[1, 1], [0, 1], [0, 0]], np.uint8),
    )
    got = seeds.seed_ensemble([a, b])
    assert got.images == ["i1", "i3"] and got.classes == ["A", "B"]  # shared images, first run's order
    np.testing.assert_allclose(got.scores, [[0.2, 0.1], [0.6, 0.4]])
    np.testing.assert_array_equal(got.labels, [[0, 1], [1, 1]])
    single = seeds.seed_ensemble([a])
    np.testing.assert_array_equal(single.scores, a.scores)


def test_seed_ensemble_rejects_mismatches():
    a = Predictions(["i1", "i2"], ["A"], np.array([[0.1], [0.2]]), np.array([[0], [1]], np.uint8))
    with pytest.raises(CxrresError, match="different classes"):
        seeds.seed_ensemble([a, Predictions(["i1"], ["B"], np.array([[0.1]]), np.array([[0]], np.uint8))])
    with pytest.raises(CxrresError, match="share no test image"):
        seeds.seed_ensemble([a, Predictions(["i9"], ["A"], np.array([[0.1]]), np.array([[0]], np.uint8))])
    with pytest.raises(CxrresError, match="disagree on the labels of 1 shared image"):
        seeds.seed_ensemble([a, Predictions(["i2"], ["A"], np.array([[0.1]]), np.array([[0]], np.uint8))])
    with pytest.raises(CxrresError, match="at least one run"):
        seeds.seed_ensemble([])
