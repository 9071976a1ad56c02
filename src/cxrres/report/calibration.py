"""The report's calibration section (reliability diagram, mean average precision / Brier / ECE per run) and its
test-time resolution section (train x test mean-AUC heat map and the best test size per run)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cxrres.evaluation.calibration import MEAN, N_BINS  # noqa: E402
from cxrres.evaluation.compare import Comparison  # noqa: E402
from cxrres.report import tables  # noqa: E402
from cxrres.report.tables import Block  # noqa: E402

CALIBRATION_TITLE = "Precision and calibration"
TEST_RESOLUTION_TITLE = "Test-time resolution"


def reliability_figure(reliability: pd.DataFrame, path: Path) -> Path:
    """One reliability diagram: per run (one line each, in run order) the observed frequency of positives against the
    mean predicted probability in each non-empty bin, pooled over classes; the diagonal is perfect calibration."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    for heading, part in reliability.groupby("heading", sort=False):
        full = part[part["n"] > 0]
        ax.plot(full["mean_prob"], full["frequency"], marker="o", markersize=3, label=str(heading))
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="predicted probability (bin mean)",
        ylabel="observed frequency of positives",
        title=f"Reliability, pooled over classes ({N_BINS} bins)",
    )
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def calibration_table(calibration: pd.DataFrame) -> tables.Table:
    """Per run: mean average precision, Brier score and ECE over its defined classes (best per column in bold: highest
    AP, lowest Brier and ECE)."""
    mean = calibration[calibration["class"] == MEAN].reset_index(drop=True)
    rows = [
        [str(r["heading"]), *(f"{r[c]:.3f}" if pd.notna(r[c]) else "–" for c in ("average_precision", "brier", "ece"))]
        for _, r in mean.iterrows()
    ]
    bold = set()
    for j, (column, pick) in enumerate(
        (("average_precision", np.nanargmax), ("brier", np.nanargmin), ("ece", np.nanargmin)), 1
    ):
        values = mean[column].to_numpy(dtype=np.float64)
        if len(values) and not np.isnan(values).all():
            bold.add((int(pick(values)), j))
    return tables.Table(["run", "mean AP", "mean Brier", "mean ECE"], rows, bold)


def auc_matrix(long: pd.DataFrame) -> pd.DataFrame:
    """Mean AUC with one row per run (heading, in train-resolution order) and one column per test resolution (px)."""
    ordered = long.sort_values(["resolution_px", "heading"], kind="stable")
    matrix = ordered.pivot_table(
        index="heading", columns="test_resolution_px", values="auc", aggfunc="first", sort=False
    )
    return matrix.reindex(list(dict.fromkeys(ordered["heading"])))


def heatmap_figure(matrix: pd.DataFrame, path: Path) -> Path:
    """The train x test mean-AUC matrix as an image with each value written in its cell."""
    values = matrix.to_numpy(dtype=np.float64)
    fig, ax = plt.subplots(figsize=(1.2 * values.shape[1] + 3, 0.6 * values.shape[0] + 1.8))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    middle = np.nanmean(values) if not np.isnan(values).all() else 0.0
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            ax.text(
                j, i, f"{value:.3f}", ha="center", va="center", fontsize=8, color="white" if value < middle else "black"
            )
    ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(values.shape[0]), [str(r) for r in matrix.index])
    ax.set(xlabel="test resolution (px)", ylabel="run (train resolution)", title="Test mean AUC")
    fig.colorbar(image, ax=ax, label="mean AUC")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def best_test_sentences(long: pd.DataFrame) -> list[str]:
    """One sentence per run: the test resolution with its highest mean AUC (the first of tied ones), against its own."""
    out = []
    for heading, row in auc_matrix(long).iterrows():
        if row.isna().all():
            continue
        best = int(row.idxmax())
        train_px = int(long.loc[long["heading"] == heading, "resolution_px"].iloc[0])
        own = row.get(train_px, np.nan)
        against = (
            f" (at its train size {train_px} px: {own:.3f})"
            if best != train_px and pd.notna(own)
            else " (its train size)"
        )
        out.append(f"{heading}: best tested at {best} px, mean AUC {row[best]:.3f}{against}.")
    return out


def sections(comparison: Comparison, files: Path) -> list[tuple[str, list]]:
    """The report's calibration section and, where runs were scored at other test resolutions, that section."""

    out: list[tuple[str, list]] = []
    if len(comparison.calibration):
        figure = reliability_figure(comparison.reliability, files / "reliability.png")
        out.append(
            (
                CALIBRATION_TITLE,
                [
                    Block(
                        text="Per run, over its classes with positive and negative test images: average precision "
                        "(area under the precision-recall curve), Brier score and expected calibration error "
                        "(ECE, 15 equal-width probability bins). Per class in comparison/calibration_long.csv; "
                        "intervals in each run's calibration.csv."
                    ),
                    Block(table=calibration_table(comparison.calibration)),
                    Block(
                        image=figure,
                        caption="Reliability diagram: observed frequency against predicted probability, pooled "
                        "over classes, one line per run; dashed: perfect calibration",
                    ),
                ],
            )
        )
    if len(comparison.test_resolution):
        matrix = auc_matrix(comparison.test_resolution)
        figure = heatmap_figure(matrix, files / "auc_by_test_resolution.png")
        out.append(
            (
                TEST_RESOLUTION_TITLE,
                [
                    Block(
                        text="Each run's test images scored at other input sizes (the same preprocessing, from the "
                        "resolution caches): mean AUC over classes. "
                        + " ".join(best_test_sentences(comparison.test_resolution))
                    ),
                    Block(image=figure, caption="Test mean AUC by training run (rows) and test resolution (columns)"),
                ],
            )
        )
    return out
