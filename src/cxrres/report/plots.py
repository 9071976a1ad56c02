"""Figures of a study: metric against training resolution, one panel per class, with intervals."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_vs_resolution(long: pd.DataFrame, out_stem: Path, value: str = "auc", low: str | None = "ci_low",
                       high: str | None = "ci_high", ylabel: str = "test AUC", series: str = "arch",
                       ylim: tuple[float, float] | None = None) -> list[Path]:
    """One panel per class (and the mean) of `value` against resolution (log2 axis), one line per `series`,
    error bars from `low`/`high`. Writes `<out_stem>.png` (150 dpi) and `.svg`; returns both paths."""
    classes = list(dict.fromkeys(long["class"]))
    columns = min(5, len(classes))
    rows = math.ceil(len(classes) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.5 * rows), squeeze=False, sharex=True)
    resolutions = sorted(long["resolution_px"].unique())
    for ax, name in zip(axes.flat, classes):
        part = long[long["class"] == name].dropna(subset=[value])
        if part.empty:
            ax.text(0.5, 0.5, "undefined on\nthis test set", ha="center", va="center", fontsize=8, color="grey",
                    transform=ax.transAxes)
            ax.set_yticks([])
        for key, group in part.groupby(series, sort=False):
            group = group.sort_values("resolution_px")
            if low and high:
                err = [(group[value] - group[low]).clip(lower=0), (group[high] - group[value]).clip(lower=0)]
            else:
                err = None
            ax.errorbar(group["resolution_px"], group[value], yerr=err, marker="o", ms=3, capsize=2, lw=1.2, label=str(key))
        if ylim:
            ax.set_ylim(*ylim)
        ax.set_title(str(name), fontsize=9, fontweight="bold" if name == "mean" else "normal")
        ax.set_xscale("log", base=2)
        ax.set_xticks(resolutions, [str(r) for r in resolutions], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("training resolution (px)", fontsize=8)
    if long[series].nunique() > 1:
        axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    out_stem = Path(out_stem)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]
    for path in paths:
        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)
    plt.close(fig)
    return paths
