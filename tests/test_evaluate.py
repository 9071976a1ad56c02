"""cxrres evaluate / compare on hand-made run directories: tables, tests, refusals, JSON, files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxrres import runs
from cxrres.evaluation import bootstrap
from cxrres.evaluation import metrics
from cxrres.cli import main
from cxrres.errors import CxrresError, DataFormatError
from cxrres.evaluation.compare import compare_runs
from cxrres.evaluation.evaluate import TIED, evaluate_run, format_table

CLASSES3 = ["Effusion", "Mass", "Nodule"]


def make_run(path, resolution_px: int, signal: float, n: int = 300, seed: int = 0, images=None, classes=CLASSES3):
    """A run directory with config.yaml and predictions whose separation grows with `signal`."""
    rng = np.random.default_rng(seed)
    label_rng = np.random.default_rng(99)  # the same labels for every run
    images = images or [f"{i // 3:08d}_{i % 3:03d}.png" for i in range(n)]
    labels = (label_rng.random((len(images), len(classes))) < 0.3).astype(np.uint8)
    scores = 1 / (1 + np.exp(-(signal * labels + rng.normal(size=labels.shape))))
    path.mkdir(parents=True)
    runs.write_yaml_atomic(
        path / runs.CONFIG,
        {"settings": {"arch": "densenet121", "resolution_px": resolution_px, "seed": 0, "label": None}},
    )
    runs.write_predictions(path / runs.PREDICTIONS, runs.Predictions(images, classes, scores, labels))
    return path


def test_evaluate_writes_auc_csv_matching_delong(tmp_path):
    run = make_run(tmp_path / "r", 64, 1.0)
    table = evaluate_run(run, n_boot=200)
    written = pd.read_csv(run / "auc.csv")
    assert written.columns.tolist() == ["class", "n_pos", "n_neg", "auc", "ci_low", "ci_high", "note", "few_positives"]
    assert not written["few_positives"].any()  # about 90 positives per class
    assert written["class"].tolist() == CLASSES3 + ["mean"]
    p = runs.read_predictions(run)
    for c, name in enumerate(CLASSES3):
        expected = metrics.delong_ci(p.labels[:, c], p.scores[:, c])
        assert tuple(table.iloc[c][["auc", "ci_low", "ci_high"]]) == pytest.approx(expected)
        assert table.iloc[c]["n_pos"] + table.iloc[c]["n_neg"] == 300
    mean = table.iloc[-1]
    assert mean["auc"] == pytest.approx(table["auc"][:3].mean())
    assert mean["ci_low"] < mean["auc"] < mean["ci_high"] and "by patient" in mean["note"]


def test_evaluate_json_and_undefined_class(tmp_path, capsys):
    run = make_run(tmp_path / "r", 64, 1.0)
    frame = pd.read_csv(run / runs.PREDICTIONS)
    frame["label_Mass"] = 0  # no positives: undefined, stated, excluded from the mean
    frame.to_csv(run / runs.PREDICTIONS, index=False)
    assert main(["evaluate", str(run), "--json", "--n-boot", "100"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["auc"]) == set(CLASSES3) | {"mean"}
    assert payload["auc"]["Mass"] == {"auc": None, "ci_low": None, "ci_high": None}
    assert payload["auc"]["mean"]["auc"] == pytest.approx(
        (payload["auc"]["Effusion"]["auc"] + payload["auc"]["Nodule"]["auc"]) / 2, abs=1e-6
    )
    assert "undefined: no positive cases" in pd.read_csv(run / "auc.csv").set_index("class").loc["Mass", "note"]


def test_few_positives_are_flagged_in_auc_csv_and_printed(tmp_path, capsys):
    run = make_run(tmp_path / "r", 64, 1.0, n=60)
    frame = pd.read_csv(run / runs.PREDICTIONS)
    frame["label_Mass"] = 0
    frame.loc[[3, 17, 40, 41], "label_Mass"] = 1  # 4 positives: below MIN_POSITIVES = 5
    frame["label_Nodule"] = 0
    frame.loc[[5, 6, 7, 8, 9], "label_Nodule"] = 1  # exactly 5 positives: not flagged
    frame.to_csv(run / runs.PREDICTIONS, index=False)
    assert main(["evaluate", str(run), "--n-boot", "50"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    written = pd.read_csv(run / "auc.csv").set_index("class")
    assert written["few_positives"].to_dict() == {"Effusion": False, "Mass": True, "Nodule": False, "mean": False}
    assert written.loc["Mass", "n_pos"] == 4 and written.loc["Nodule", "n_pos"] == 5
    assert "(fewer than 5 positives: interval and tests rest on too few cases)" in lines["Mass"]
    assert "fewer than" not in lines["Nodule"] + lines["Effusion"] + lines["mean"]
    old = written.drop(columns="few_positives").reset_index()  # an auc.csv written before the column existed
    assert "(fewer than 5 positives" in format_table(old).splitlines()[1]


def test_degenerate_intervals_say_why(tmp_path, capsys):
    """One test patient: every bootstrap replicate is the same sample, so the mean's interval is a point, and says
    so."""
    images = [f"00000007_{i:03d}.png" for i in range(40)]
    run = make_run(tmp_path / "one", 64, 1.0, images=images)
    assert main(["evaluate", str(run), "--n-boot", "50"]) == 0
    mean = [line for line in capsys.readouterr().out.splitlines() if line.startswith("mean")][0]
    table = pd.read_csv(run / "auc.csv").set_index("class")
    assert table.loc["mean", "ci_low"] == table.loc["mean", "auc"] == table.loc["mean", "ci_high"]
    assert mean.endswith("(mean of 3 classes; 50 bootstrap replicates by patient; interval degenerate: 1 patient)")
    frame = pd.read_csv(run / runs.PREDICTIONS)
    frame["Mass"] = 0.5  # constant scores: the class's DeLong interval is the point [0.5, 0.5]
    frame.to_csv(run / runs.PREDICTIONS, index=False)
    table = evaluate_run(run, n_boot=20).set_index("class")
    assert (table.loc["Mass", "auc"], table.loc["Mass", "ci_low"], table.loc["Mass", "note"]) == (0.5, 0.5, TIED)
    assert table.loc["mean", "note"].startswith("mean of 3 classes")  # a tied class still counts in the mean


def test_malformed_predictions_name_file_and_line(tmp_path, capsys):
    run = make_run(tmp_path / "r", 64, 1.0, n=10)
    frame = pd.read_csv(run / runs.PREDICTIONS)
    frame.loc[4, "Mass"] = np.nan
    frame.to_csv(run / runs.PREDICTIONS, index=False)
    with pytest.raises(DataFormatError, match=r"predictions_test.csv:6: score is empty, NaN or infinite"):
        runs.read_predictions(run)
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "not a run directory" in capsys.readouterr().err


def test_compare_tables_tests_and_figure(tmp_path, capsys):
    dirs = [make_run(tmp_path / f"r{r}", r, s, seed=i) for i, (r, s) in enumerate([(64, 0.3), (128, 1.0), (256, 2.5)])]
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, dirs), "--out", str(out), "--n-boot", "300"]) == 0
    printed = capsys.readouterr().out
    assert "| Class | DenseNet-121 64 px | DenseNet-121 128 px | DenseNet-121 256 px |" in printed
    table = pd.read_csv(out / "auc_table.csv")
    assert (table["best"] == "DenseNet-121 256 px").all()
    assert r"\textbf{" in (out / "auc_table.tex").read_text()
    delong = pd.read_csv(out / "delong_tests.csv")
    assert len(delong) == 3 * 3  # 3 pairs x 3 classes
    assert (delong["p_holm"] >= delong["p"] - 1e-12).all()
    boot = pd.read_csv(out / "bootstrap_tests.csv")
    row = boot[(boot["run_a"] == "DenseNet-121 64 px") & (boot["run_b"] == "DenseNet-121 256 px")].iloc[0]
    assert row["difference"] < 0 and row["ci_high"] < 0 and row["p"] < 0.01
    assert "Per-class DeLong tests against DenseNet-121 256 px" in (out / "compare.md").read_text()
    assert (out / "auc_vs_resolution.png").stat().st_size > 10_000 and (out / "auc_vs_resolution.svg").is_file()


def test_compare_refuses_different_test_images(tmp_path):
    a = make_run(tmp_path / "a", 64, 1.0, n=30)
    b = make_run(tmp_path / "b", 128, 1.0, images=[f"{i:08d}_000.png" for i in range(31)])
    with pytest.raises(CxrresError, match=r"different test images: .* has 30, .* has 31, \d+ in common"):
        compare_runs([a, b])


def test_compare_adds_localization_tables_when_every_run_has_them(tmp_path):
    dirs = [make_run(tmp_path / f"r{r}", r, 1.0, seed=i) for i, r in enumerate((64, 256))]
    for d, acc in zip(dirs, (0.2, 0.6)):
        pd.DataFrame(
            {
                "class": ["Nodule", "Mass", "mean"],
                "n": [4, 6, 10],
                "precision": [acc / 2, acc, 0.75 * acc],
                "accuracy": [acc, acc, acc],
            }
        ).to_csv(d / "localization.csv", index=False)
    out = tmp_path / "cmp"
    comparison = compare_runs(dirs, n_boot=50)
    from cxrres.report.comparison import write_comparison

    names = {p.name for p in write_comparison(comparison, out)}
    assert {
        "localization_accuracy.csv",
        "localization_precision.csv",
        "localization_accuracy_vs_resolution.png",
        "localization_precision_vs_resolution.png",
    } <= names
    text = (out / "compare.md").read_text()
    assert "| Nodule | 0.200 | **0.600** |" in text and "Localization precision" in text
    # one run without localization: no tables
    (dirs[0] / "localization.csv").unlink()
    assert compare_runs(dirs, n_boot=50).localization is None


def _mann_whitney(y: np.ndarray, s: np.ndarray) -> float:
    """AUC by counting every positive-negative pair (ties 1/2), independent of cxrres.evaluation.metrics."""
    pos, neg = s[y == 1], s[y == 0]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def test_masked_labels_are_left_out_of_their_class_auc(tmp_path):
    run = make_run(tmp_path / "r", 64, 1.0, n=60)
    p = runs.read_predictions(run)
    labels = p.labels.astype(np.int8)
    labels[::4, 1] = -1  # Mass: every 4th image masked out (uncertain under `ignore`)
    runs.write_predictions(run / runs.PREDICTIONS, runs.Predictions(p.images, p.classes, p.scores, labels))
    again = runs.read_predictions(run)
    assert again.labels.dtype == np.int8 and (again.labels == labels).all()
    table = evaluate_run(run, n_boot=50).set_index("class")
    kept = labels[:, 1] != -1
    assert kept.sum() == 45
    assert table.loc["Mass", "auc"] == pytest.approx(_mann_whitney(labels[kept, 1], p.scores[kept, 1]), abs=1e-12)
    assert table.loc["Mass", "n_pos"] + table.loc["Mass", "n_neg"] == 45
    assert table.loc["Mass", ["auc", "ci_low", "ci_high"]].tolist() == pytest.approx(
        metrics.delong_ci(labels[kept, 1], p.scores[kept, 1])
    )
    assert table.loc["Effusion", "auc"] == pytest.approx(_mann_whitney(labels[:, 0], p.scores[:, 0]), abs=1e-12)
    assert table.loc["mean", "auc"] == pytest.approx(table["auc"].iloc[:3].mean(), abs=1e-12)
    # a bootstrap of the kept cases alone gives the same replicates for the masked class
    weights = bootstrap.patient_weights(np.arange(60), 20, 0)
    full = bootstrap.bootstrap_class_replicates(labels, p.scores, weights, np.ones(3, bool))
    alone = bootstrap.weighted_auc(labels[kept, 1], p.scores[kept, 1], weights[:, kept])
    assert np.allclose(full[:, 1], alone, equal_nan=True)


def test_predictions_labels_other_than_one_zero_minus_one_are_refused(tmp_path):
    run = make_run(tmp_path / "r", 64, 1.0, n=10)
    frame = pd.read_csv(run / runs.PREDICTIONS)
    frame.loc[2, "label_Mass"] = 2
    frame.to_csv(run / runs.PREDICTIONS, index=False)
    with pytest.raises(DataFormatError, match=r"predictions_test.csv:4: labels must be 1, 0 or -1"):
        runs.read_predictions(run)
