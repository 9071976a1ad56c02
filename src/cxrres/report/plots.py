"""Figures of a study: metric against training resolution, one panel per class, with intervals or a band over seeds
and the published values as a dashed line; the best resolution per class as stacked bars."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REFERENCE_LABEL = "Wollek et al. 2023"
SEED_BAND = "range over seeds (min–max)"  # what the band drawn for several seeds shows


def _save(fig: plt.Figure, out_stem: Path) -> list[Path]:
    """Write `<out_stem>.png` (150 dpi) and `.svg` atomically; close the figure; return both paths."""
    out_stem = Path(out_stem)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]
    for path in paths:
        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)
    plt.close(fig)
    return paths


def _key(name: str) -> str:
    """Class name for matching ours to published ('Mean' = 'mean', 'Pleural Thickening' = 'Pleural_Thickening')."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def several_seeds(long: pd.DataFrame, series: str = "arch") -> bool:
    """Whether some (series, class, resolution) has more than one row (i.e. several seeds)."""
    return bool(long.duplicated([series, "class", "resolution_px"]).any())


def y_limits(
    long: pd.DataFrame, columns: list[str], reference: pd.DataFrame | None = None, pad: float = 0.03
) -> tuple[float, float]:
    """One (low, high) y range covering every plotted value, interval end and published value, padded by `pad` of it."""
    values = np.concatenate(
        [long[c].to_numpy(np.float64) for c in columns if c and c in long.columns]
        + ([reference["value"].to_numpy(np.float64)] if reference is not None and len(reference) else [])
    )
    values = values[np.isfinite(values)]
    if not values.size:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    span = max(high - low, 0.02)
    return low - pad * span, high + pad * span


def plot_vs_resolution(
    long: pd.DataFrame,
    out_stem: Path,
    value: str = "auc",
    low: str | None = "ci_low",
    high: str | None = "ci_high",
    ylabel: str = "test AUC",
    series: str = "arch",
    ylim: tuple[float, float] | None = None,
    shared_y: bool = True,
    reference: pd.DataFrame | None = None,
    reference_label: str = REFERENCE_LABEL,
) -> list[Path]:
    """`draw_vs_resolution` written to `<out_stem>.png` (150 dpi) and `.svg`; returns both paths."""
    return _save(
        draw_vs_resolution(long, value, low, high, ylabel, series, ylim, shared_y, reference, reference_label), out_stem
    )


def draw_vs_resolution(
    long: pd.DataFrame,
    value: str = "auc",
    low: str | None = "ci_low",
    high: str | None = "ci_high",
    ylabel: str = "test AUC",
    series: str = "arch",
    ylim: tuple[float, float] | None = None,
    shared_y: bool = True,
    reference: pd.DataFrame | None = None,
    reference_label: str = REFERENCE_LABEL,
) -> plt.Figure:
    """One panel per class (and the mean) of `value` against resolution (px, log2 axis), one line per `series`.

    One run per point: error bars from `low`/`high`. Several seeds per point (a `seed` column): the mean over seeds,
    a band over the seeds' range (min–max) and a dot per seed. `reference` (class, resolution_px, value) is drawn as a
    dashed line. `shared_y`: every panel has the same y range (else each scales itself; `ylim` overrides both)."""
    classes = list(dict.fromkeys(long["class"]))
    columns = min(5, len(classes))
    rows = math.ceil(len(classes) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.5 * rows), squeeze=False, sharex=True)
    resolutions = sorted(long["resolution_px"].unique())
    banded = several_seeds(long, series)
    reference_keys = (
        reference.assign(key=reference["class"].map(_key)) if reference is not None and len(reference) else None
    )
    if ylim is None and shared_y:
        ylim = y_limits(long, [value] + ([] if banded else [low, high]), reference)
    for ax, name in zip(axes.flat, classes):
        part = long[long["class"] == name].dropna(subset=[value])
        if part.empty:
            ax.text(
                0.5,
                0.5,
                "undefined on\nthis test set",
                ha="center",
                va="center",
                fontsize=8,
                color="grey",
                transform=ax.transAxes,
            )
            ax.set_yticks([])
        for key, group in part.groupby(series, sort=False):
            if banded:
                stats = group.groupby("resolution_px")[value].agg(["mean", "min", "max"]).sort_index()
                line = ax.plot(stats.index, stats["mean"], marker="o", ms=3, lw=1.2, label=f"{key} (mean over seeds)")[
                    0
                ]
                ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2, lw=0)
                ax.scatter(group["resolution_px"], group[value], s=6, color=line.get_color(), alpha=0.7, zorder=3)
                continue
            group = group.sort_values("resolution_px")
            err = None
            if low and high:
                err = [(group[value] - group[low]).clip(lower=0), (group[high] - group[value]).clip(lower=0)]
            ax.errorbar(
                group["resolution_px"], group[value], yerr=err, marker="o", ms=3, capsize=2, lw=1.2, label=str(key)
            )
        if reference_keys is not None:
            published = reference_keys[reference_keys["key"] == _key(name)].sort_values("resolution_px")
            if len(published):
                ax.plot(
                    published["resolution_px"],
                    published["value"],
                    ls="--",
                    color="black",
                    lw=1,
                    marker="x",
                    ms=3,
                    label=reference_label,
                )
        if ylim:
            ax.set_ylim(*ylim)
        ax.set_title(str(name), fontsize=9, fontweight="bold" if name == "mean" else "normal")
        ax.set_xscale("log", base=2)
        ax.set_xticks(resolutions, [str(r) for r in resolutions], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(classes) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("training resolution (px)", fontsize=8)
    if long[series].nunique() > 1 or banded or reference_keys is not None:
        handles = {}
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        axes.flat[0].legend(handles.values(), handles.keys(), fontsize=6)
    fig.tight_layout()
    return fig


def plot_best_resolution(best: pd.DataFrame, out_stem: Path) -> list[Path]:
    """Stacked horizontal bars, one per class (and series when several): the share of bootstrap replicates (%) in
    which each resolution has the highest AUC. `best`: rows of `compare.best_resolution` for one scope."""
    several = best["series"].nunique() > 1
    bars = list(dict.fromkeys(zip(best["series"], best["class"])))
    resolutions = sorted(best["resolution_px"].unique())
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.32 * len(bars)))
    colours = plt.cm.viridis(np.linspace(0.1, 0.9, len(resolutions)))
    left = np.zeros(len(bars))
    for colour, r in zip(colours, resolutions):
        part = best[best["resolution_px"] == r].set_index(["series", "class"])["share"]
        shares = np.array([100 * part.get(b, np.nan) for b in bars], dtype=np.float64)
        shares = np.nan_to_num(shares)
        ax.barh(range(len(bars)), shares, left=left, color=colour, label=f"{r} px", edgecolor="white", lw=0.5)
        for y, (x, w) in enumerate(zip(left, shares)):
            if w >= 8:
                ax.text(
                    x + w / 2,
                    y,
                    f"{w:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if colour[:3].mean() < 0.5 else "black",
                )
        left += shares
    ax.set_yticks(range(len(bars)), [f"{s} {c}" if several else c for s, c in bars], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of bootstrap replicates in which the resolution has the highest AUC (%)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7, ncol=len(resolutions), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, out_stem)
