"""Report statistics on hand-made runs: seeds (mean ± sd, ensembles, per-seed and ensemble tests), the best
resolution per class against a brute-force count, the published-study section and its detection, shared y-axes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrres import runs
from cxrres.evaluation import bootstrap
from cxrres.evaluation.compare import ENSEMBLE, SINGLE, compare_runs
from cxrres.data.datasets import DataOptions
from cxrres.data.source import open_table
from cxrres.data.splits import Split
from cxrres.evaluation.evaluate import patient_groups
from cxrres.report import plots, tables
from cxrres.report.comparison import best_resolution_table, comparison_markdown, write_comparison
from cxrres.evaluation.seeds import format_mean_sd
from cxrres.report.document import cost_table, heatmap_blocks, key_table, published_blocks
from cxrres.report.reference import PublishedReference, against_published, detect_reference, published_table

CLASSES = ["Effusion", "Mass", "Nodule"]


def make_run(
    path, resolution_px: int, signal: np.ndarray | float, seed: int = 0, n: int = 90, noise_seed: int | None = None
):
    """A run directory (config.yaml, predictions) whose per-class separation grows with `signal`; same labels always."""
    rng = np.random.default_rng(noise_seed if noise_seed is not None else resolution_px * 10 + seed)
    images = [f"{i // 3:08d}_{i % 3:03d}.png" for i in range(n)]
    labels = (np.random.default_rng(99).random((n, len(CLASSES))) < 0.3).astype(np.uint8)
    scores = 1 / (1 + np.exp(-(np.asarray(signal) * labels + rng.normal(size=labels.shape))))
    path.mkdir(parents=True)
    runs.write_yaml_atomic(
        path / runs.CONFIG,
        {"settings": {"arch": "densenet121", "resolution_px": resolution_px, "seed": seed, "label": None}},
    )
    runs.write_predictions(path / runs.PREDICTIONS, runs.Predictions(images, CLASSES, np.round(scores, 2), labels))
    return path


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUC from every (positive, negative) pair, ties counting one half."""
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return np.nan
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


@pytest.fixture
def two_by_two(tmp_path):
    """2 resolutions x 2 seeds; 128 px separates better."""
    return [make_run(tmp_path / f"r{r}s{s}", r, 0.6 if r == 64 else 1.6, seed=s) for r in (64, 128) for s in (0, 1)]


def test_best_resolution_shares_match_brute_force_count(tmp_path):
    dirs = [
        make_run(tmp_path / f"r{r}", r, sig)
        for r, sig in ((64, [0.9, 0.2, 1.0]), (128, [1.0, 0.3, 1.0]), (256, [1.1, 1.5, 1.0]))
    ]
    n_boot = 40
    comparison = compare_runs(dirs, n_boot=n_boot, seed=7)
    preds = [runs.read_predictions(d) for d in dirs]
    order = np.argsort(preds[0].images)
    groups, _ = patient_groups(sorted(preds[0].images))
    weights = bootstrap.patient_weights(groups, n_boot, 7)  # the same resampled patients compare_runs uses
    for c, name in enumerate(CLASSES):
        y = preds[0].labels[order, c]
        wins, counted = np.zeros(3), 0
        for b in range(n_boot):
            idx = np.repeat(np.arange(len(y)), weights[b].astype(int))  # the replicate as repeated cases
            aucs = np.array([brute_auc(y[idx], p.scores[order, c][idx]) for p in preds])
            if np.isnan(aucs).any():
                continue
            counted += 1
            top = aucs == aucs.max()
            wins += top / top.sum()
        got = comparison.best[(comparison.best["class"] == name)].sort_values("resolution_px")
        assert got["share"].to_numpy() == pytest.approx(wins / counted, abs=1e-12)
        assert (got["n_replicates"] == counted).all()
        points = [brute_auc(preds[0].labels[:, c], p.scores[:, c]) for p in preds]
        assert got.loc[got["best"], "resolution_px"].tolist() == [(64, 128, 256)[int(np.argmax(points))]]
    assert set(comparison.best["scope"]) == {SINGLE}
    text = best_resolution_table(comparison.best).to_markdown()
    mass = comparison.best[(comparison.best["class"] == "Mass") & comparison.best["best"]].iloc[0]
    assert (
        f"| Mass | {mass.resolution_px} px | {mass.resolution_px} px best in {100 * mass.share:.0f} % of "
        f"{mass.n_replicates} replicates |" in text
    )
    paths = write_comparison(comparison, tmp_path / "cmp")
    written = pd.read_csv(tmp_path / "cmp" / "best_resolution.csv")
    assert len(written) == 9 and (tmp_path / "cmp" / "best_resolution.png") in paths


def test_seeds_mean_sd_ensemble_and_scoped_tests(two_by_two, tmp_path):
    comparison = compare_runs(two_by_two, n_boot=60)
    assert comparison.several_seeds and comparison.main_scope == ENSEMBLE
    assert [r.heading for r in comparison.runs] == [
        "DenseNet-121 64 px seed 0",
        "DenseNet-121 64 px seed 1",
        "DenseNet-121 128 px seed 0",
        "DenseNet-121 128 px seed 1",
    ]
    assert {r.group for r in comparison.runs} == {"DenseNet-121 64 px", "DenseNet-121 128 px"}
    # the seed ensemble is scored on the mean of the seeds' probabilities
    preds = [runs.read_predictions(d) for d in two_by_two[2:]]
    mean = (preds[0].scores.astype(np.float64) + preds[1].scores.astype(np.float64)) / 2  # as compare: in float64
    ens = comparison.ensemble_auc.set_index(["heading", "class"])
    for c, name in enumerate(CLASSES):
        assert ens.loc[("DenseNet-121 128 px seed ensemble", name), "auc"] == pytest.approx(
            brute_auc(preds[0].labels[:, c], mean[:, c])
        )
    assert (comparison.ensemble_auc["n_seeds"] == 2).all()
    # paired tests per seed and between ensembles only, each labelled
    pairs = {(r.scope, r.run_a, r.run_b) for r in comparison.bootstrap.itertuples()}
    assert pairs == {
        ("seed 0", "DenseNet-121 64 px seed 0", "DenseNet-121 128 px seed 0"),
        ("seed 1", "DenseNet-121 64 px seed 1", "DenseNet-121 128 px seed 1"),
        (ENSEMBLE, "DenseNet-121 64 px seed ensemble", "DenseNet-121 128 px seed ensemble"),
    }
    assert len(comparison.delong) == 3 * len(CLASSES)
    assert set(comparison.best["scope"]) == {"seed 0", "seed 1", ENSEMBLE}
    # files: per-seed values kept, mean ± sd in the Markdown
    write_comparison(comparison, tmp_path / "cmp")
    summary = pd.read_csv(tmp_path / "cmp" / "auc_seeds.csv")
    row = summary[(summary["group"] == "DenseNet-121 64 px") & (summary["class"] == "Mass")].iloc[0]
    per_run = comparison.auc.set_index(["heading", "class"])["auc"]
    values = [per_run[("DenseNet-121 64 px seed 0", "Mass")], per_run[("DenseNet-121 64 px seed 1", "Mass")]]
    close = lambda x: pytest.approx(x, abs=1e-6)  # noqa: E731 (the CSV keeps 6 decimals)
    assert (row["n"], row["auc_seed0"], row["auc_seed1"]) == (2, close(values[0]), close(values[1]))
    assert row["mean"] == close(np.mean(values)) and row["sd"] == close(np.std(values, ddof=1))
    assert {"ci_low_seed0", "ci_high_seed1"} <= set(summary.columns)
    md = comparison_markdown(comparison)
    assert f"| Mass | {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} |" in md
    assert "| Class | DenseNet-121 64 px (n = 2) | DenseNet-121 128 px (n = 2) |" in md
    assert "paired differences: seed ensembles" in md and "paired differences: seed 1 runs" in md
    key = key_table(comparison)
    assert key.header == ["", "DenseNet-121 64 px (n = 2)", "DenseNet-121 128 px (n = 2)"]
    rows = {row[0]: row[1:] for row in key.rows}
    assert " ± " in rows["mean AUC"][0] and list(rows)[-1] == "mean ECE"
    ece = comparison.calibration.set_index(["heading", "class"])["ece"]
    seeds = [ece[(f"DenseNet-121 64 px seed {s}", "mean")] for s in (0, 1)]
    assert rows["mean ECE"][0] == format_mean_sd(np.mean(seeds), np.std(seeds, ddof=1), 2)


def test_single_seed_keeps_run_tables(tmp_path):
    dirs = [make_run(tmp_path / f"r{r}", r, 1.0, seed=r) for r in (64, 128)]  # different seeds, one per resolution
    comparison = compare_runs(dirs, n_boot=30)
    assert not comparison.several_seeds and comparison.ensemble_auc.empty
    assert comparison.bootstrap["scope"].tolist() == [SINGLE]
    key = key_table(comparison)
    assert key.header == ["", "DenseNet-121 64 px", "DenseNet-121 128 px"]
    ece = comparison.calibration.set_index(["heading", "class"])["ece"]  # ECE rows: the comparison's 15-bin values
    assert {row[0]: row[1:] for row in key.rows}["mean ECE"] == [
        f"{ece[(heading, 'mean')]:.3f}" for heading in ("DenseNet-121 64 px", "DenseNet-121 128 px")
    ]
    assert "±" not in comparison_markdown(comparison)


def test_few_positives_are_flagged_in_compare_and_report(tmp_path):
    """Mass with 2 positive test images: its paired DeLong p is kept in the CSV but flagged, left out of Holm, shown as
    'n/a (<5 pos)'; the AUC tables mark the class with a footnote; a bootstrap p at its floor 2/(B+1) prints as such."""
    dirs = [make_run(tmp_path / f"r{r}", r, sig) for r, sig in ((64, 0.0), (128, 4.0))]
    for d in dirs:
        p = runs.read_predictions(d)
        p.labels[:, 1] = 0
        p.labels[[4, 50], 1] = 1
        runs.write_predictions(d / runs.PREDICTIONS, p)
    comparison = compare_runs(dirs, n_boot=99)
    tests = comparison.delong.set_index("class")
    assert tests["few_positives"].to_dict() == {"Effusion": False, "Mass": True, "Nodule": False}
    assert (
        tests.loc["Mass", "n_pos"] == 2 and 0 <= tests.loc["Mass", "p"] <= 1 and np.isnan(tests.loc["Mass", "p_holm"])
    )
    others = tests.loc[["Effusion", "Nodule"], "p"].to_numpy()
    expected = np.minimum(1, np.maximum.accumulate(np.sort(others) * [2, 1]))[np.argsort(np.argsort(others))]
    np.testing.assert_allclose(tests.loc[["Effusion", "Nodule"], "p_holm"], expected)  # Holm over 2 classes, not 3
    boot = comparison.bootstrap.iloc[0]
    assert boot["n_replicates"] == 99 and boot["p"] == pytest.approx(2 / 100)  # 128 px better in every replicate
    md = comparison_markdown(comparison)
    assert "| Mass † | n/a (<5 pos) |" in md and "| Effusion | <0.001 |" in md
    assert md.count("† fewer than 5 positive test images") == 3  # under the AUC, best-resolution and DeLong tables
    assert "\n| Mass † | 64 px | 64 px best in " in md
    assert "| 0.02 |" not in md and "| ≤0.02 |" in md
    write_comparison(comparison, tmp_path / "cmp")
    table = pd.read_csv(tmp_path / "cmp" / "auc_table.csv")
    assert table["few_positives"].tolist() == [False, True, False, False]
    assert pd.read_csv(tmp_path / "cmp" / "delong_tests.csv").columns.tolist() == [
        "scope",
        "run_a",
        "run_b",
        "class",
        "auc_a",
        "auc_b",
        "z",
        "p",
        "p_holm",
        "n_pos",
        "few_positives",
    ]
    tex = (tmp_path / "cmp" / "auc_table.tex").read_text()
    assert "\nMass † & " in tex and "\\par{\\footnotesize † fewer than 5 positive" in tex


def test_seed_table_shows_n_where_a_class_has_fewer_seeds():
    summary = pd.DataFrame(
        {
            "group": ["A", "A", "B", "B"],
            "class": ["x", "y", "x", "y"],
            "mean": [0.8, 0.7, 0.9, 0.6],
            "sd": [0.01, np.nan, 0.02, 0.03],
            "n": [3, 1, 3, 3],
        }
    )
    table = tables.seed_table(summary)
    assert table.header == ["Class", "A", "B (n = 3)"]
    assert table.rows == [["x", "0.800 ± 0.010 (n = 3)", "0.900 ± 0.020"], ["y", "0.700 (n = 1)", "0.600 ± 0.030"]]
    assert table.bold == {(0, 2), (1, 1)}


def published_rows(metric: str = "auc") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": "wollek2023",
            "table": "3",
            "metric": metric,
            "dataset": "chestxray14",
            "split": "chexnet",
            "arch": "densenet121",
            "class": ["Nodule", "Nodule", "Mean"],
            "resolution_px": [64, 256, 64],
            "value": [0.70, 0.80, 0.75],
        }
    )


def test_against_published_by_hand():
    ours = pd.DataFrame(
        {
            "heading": "h",
            "arch": "densenet121",
            "label": None,
            "seed": [0, 0, 1, 1, 0, 1],
            "class": ["Nodule", "Nodule", "Nodule", "Nodule", "mean", "mean"],
            "resolution_px": [64, 256, 64, 256, 64, 64],
            "auc": [0.72, 0.78, 0.68, 0.74, 0.76, 0.74],
            "ci_low": [0.69, 0.70, 0.60, 0.75, 0.70, 0.70],
            "ci_high": [0.75, 0.85, 0.71, 0.79, 0.80, 0.80],
        }
    )
    frame = against_published(ours, published_rows(), "auc").set_index(["class", "resolution_px"])
    nodule64 = frame.loc[("Nodule", 64)]
    assert nodule64["ours"] == pytest.approx(0.70) and nodule64["published"] == pytest.approx(0.70)
    assert nodule64["sd"] == pytest.approx(np.std([0.72, 0.68], ddof=1)) and nodule64["difference"] == pytest.approx(
        0.0
    )
    assert (nodule64["inside"], nodule64["n_interval"]) == (2, 2)
    nodule256 = frame.loc[("Nodule", 256)]
    assert (nodule256["inside"], nodule256["n_interval"]) == (1, 2)  # seed 1's interval [0.75, 0.79] misses 0.80
    assert nodule256["difference"] == pytest.approx(-0.04)
    assert frame.loc[("mean", 64), "difference"] == pytest.approx(0.0)
    table = published_table(frame.reset_index())
    assert table.header == ["Class", "64 px", "256 px"]
    assert table.rows[0] == ["Nodule", "0.700 ± 0.028 / 0.700 (+0.000) 2/2", "0.760 ± 0.028 / 0.800 (-0.040) 1/2"]
    assert table.rows[1] == ["mean", "0.750 ± 0.014 / 0.750 (+0.000) 2/2", "–"]
    one_seed = against_published(ours[ours["seed"] == 1], published_rows(), "auc")
    assert published_table(one_seed).rows[0][2] == "0.740 / 0.800 (-0.060) ✗"
    loc = against_published(
        ours.drop(columns=["ci_low", "ci_high"]).rename(columns={"auc": "accuracy"}),
        published_rows("accuracy"),
        "accuracy",
    )
    assert (loc["n_interval"] == 0).all() and not published_table(loc).rows[0][1].endswith(("✓", "✗", "/2"))
    assert against_published(ours.assign(arch="resnet34"), published_rows(), "auc").empty  # other architectures: none


def test_no_reference_says_so(two_by_two):
    comparison = compare_runs(two_by_two, n_boot=20)
    blocks = published_blocks(
        comparison, PublishedReference(False, "The runs use the `official` split; no published reference applies.")
    )
    assert len(blocks) == 1 and "no published reference applies" in blocks[0].text


def test_detect_reference_on_real_chestxray14(real_root):
    table = open_table(real_root, DataOptions(split="chexnet"))
    found = detect_reference(table)
    assert found.applies and "CheXNet test list (22,433 images)" in found.reason
    assert set(found.rows["metric"]) == {"auc", "precision", "accuracy"}
    assert "400 of its 22,433" in detect_reference(table, n_scored=400).reason
    frame = table.split.frame.copy()
    first_test = frame.index[frame["part"] == "test"][0]
    frame.loc[first_test, "Hernia"] = 1 - frame.loc[first_test, "Hernia"]
    changed = detect_reference(dataclasses.replace(table, split=Split("chexnet", frame)))
    assert not changed.applies and "other labels on 1 " in changed.reason
    assert not detect_reference(dataclasses.replace(table, split=Split("official", table.split.frame))).applies
    # the CheXNet lists read from a folder (--split-dir; named dir:<folder>) are checked by their content, as before
    assert detect_reference(
        open_table(real_root, DataOptions(split="chexnet", split_dir=str(real_root / "splits" / "chexnet")))
    ).applies
    # a table without NIH's split of record (any other data set) has none
    other = detect_reference(dataclasses.replace(table, dataset="chexpert", split=None))
    assert not other.applies and "The runs are on the chexpert data set" in other.reason


def test_detect_reference_refuses_phantom_with_own_chexnet_split(tmp_path):
    from cxrres.synthetic import synthesize

    # 40 images: a test part with boxes (an NIH root whose BBox_List has no rows is refused when read)
    synthesize(tmp_path / "phantom", n_images=40, size_px=64, seed=1, workers=1, progress=False)
    found = detect_reference(open_table(tmp_path / "phantom", DataOptions(split="chexnet")))
    assert not found.applies and found.rows is None and "no published reference applies" in found.reason
    assert "is not NIH ChestX-ray14's CheXNet test list" in found.reason


def test_shared_y_axis_and_published_dashed_line():
    long = pd.DataFrame(
        {
            "arch": "densenet121",
            "class": ["Nodule", "Nodule", "Mass", "Mass"],
            "resolution_px": [64, 256] * 2,
            "auc": [0.30, 0.95, 0.96, 0.99],
            "ci_low": [0.25, 0.9, 0.95, 0.98],
            "ci_high": [0.35, 0.97, 0.97, 1.0],
        }
    )
    reference = pd.DataFrame({"class": ["nodule", "nodule"], "resolution_px": [64, 256], "value": [0.7, 0.8]})
    shared = plots.draw_vs_resolution(long, reference=reference)
    limits = [ax.get_ylim() for ax in shared.axes[:2]]
    assert limits[0] == limits[1] and limits[0][0] <= 0.25 and limits[0][1] >= 1.0
    dashed = [line for line in shared.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata().tolist() == [0.7, 0.8]
    assert not [line for line in shared.axes[1].get_lines() if line.get_linestyle() == "--"]  # no published Mass here
    own = plots.draw_vs_resolution(long, shared_y=False)
    mass = own.axes[1].get_ylim()
    assert mass[0] > 0.9  # the Mass panel scales itself to 0.95-1.0
    for fig in (shared, own):
        plots.plt.close(fig)


def test_seed_band_spans_the_seeds():
    long = pd.DataFrame(
        {
            "arch": "densenet121",
            "class": "Nodule",
            "resolution_px": [64, 64, 256, 256],
            "seed": [0, 1, 0, 1],
            "auc": [0.60, 0.70, 0.80, 0.84],
        }
    )
    fig = plots.draw_vs_resolution(long, low=None, high=None)
    ax = fig.axes[0]
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(0.60) and band[:, 1].max() == pytest.approx(0.84)
    assert ax.get_lines()[0].get_ydata().tolist() == pytest.approx([0.65, 0.82])
    plots.plt.close(fig)


def test_published_section_and_files_when_the_reference_applies(two_by_two, tmp_path):
    from cxrres.evaluation import published

    comparison = compare_runs(two_by_two, n_boot=20)
    reference = PublishedReference(
        True, "NIH ChestX-ray14 with the CheXNet split.", published.reference_for("chestxray14", "chexnet")
    )
    blocks = published_blocks(comparison, reference)
    assert [b.text for b in blocks if b.text and b.text.endswith(":")] == [
        "Test AUC (Table 3):"
    ]  # no localization here
    table = next(b.table for b in blocks if b.table is not None)
    assert table.header == ["Class", "64 px", "128 px"] and [r[0] for r in table.rows] == [
        "Effusion",
        "Mass",
        "Nodule",
        "mean",
    ]
    auc = comparison.auc.set_index(["heading", "class"])["auc"]
    ours = np.mean([auc[(f"DenseNet-121 128 px seed {s}", "Nodule")] for s in (0, 1)])
    theirs = (
        published.published_results("auc", "wollek2023")
        .set_index(["class", "resolution_px"])
        .loc[("Nodule", 128), "value"]
    )
    assert table.rows[2][2].split(" / ")[1].startswith(f"{theirs:.3f} ({ours - theirs:+.3f})")
    write_comparison(comparison, tmp_path / "cmp", reference)
    frame = pd.read_csv(tmp_path / "cmp" / "published_comparison.csv")
    assert set(frame["metric"]) == {"auc"} and len(frame) == 4 * 2
    row = frame[(frame["class"] == "Nodule") & (frame["resolution_px"] == 128)].iloc[0]
    assert row["ours"] == pytest.approx(ours, abs=1e-6) and row["n"] == 2 and row["n_interval"] == 2


def test_one_localized_class_gets_one_heatmap_grid_and_the_cost_table_shows_threads_and_kernels(tmp_path):
    dirs = [make_run(tmp_path / f"r{r}", r, 1.0) for r in (64, 128)]
    for d, threads in zip(dirs, (1, 2)):
        pd.DataFrame(
            {
                "class": ["Mass", "mean"],
                "n": [4, 4],
                "precision": [0.5, 0.5],
                "accuracy": [0.25, 0.25],
                "pointing": [0.5, 0.5],
            }
        ).to_csv(d / runs.LOCALIZATION, index=False)
        (d / runs.LOCALIZATION_EXAMPLES).mkdir()
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(
            d / runs.LOCALIZATION_EXAMPLES / "Mass_00000001_000.png"
        )
        runs.write_status(
            d,
            runs.RunStatus(
                status="finished",
                epochs=2,
                threads=threads,
                cpu_kernels="AVX512",
                onednn_max_cpu_isa="AVX2" if threads == 2 else None,
            ),
        )
    comparison = compare_runs(dirs, n_boot=20)
    files = tmp_path / "files"
    files.mkdir()
    blocks = heatmap_blocks(comparison, files)  # Mass is both the smallest and the largest boxed finding
    assert len(blocks) == 1 and blocks[0].image == files / "heatmaps_Mass.png"
    assert [row[0] for row in key_table(comparison).rows] == [
        "Mass AUC",
        "mean AUC",
        "Mass box accuracy",
        "mean box accuracy",
        "Mass pointing",
        "mean pointing",
        "Mass ECE",
        "mean ECE",
    ]
    table = cost_table(comparison)
    assert table.header[-2:] == ["Threads", "CPU kernels"]
    assert [row[-2:] for row in table.rows] == [["1", "AVX512"], ["2", "AVX512 (ONEDNN_MAX_CPU_ISA=AVX2)"]]
