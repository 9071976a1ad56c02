"""What the report shows about the runs themselves: training curves, heat-map grids of the smallest and largest boxed
finding, and the cost table (time, images/s, memory, threads, CPU kernels)."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cxrres import runs  # noqa: E402
from cxrres.evaluation.compare import Comparison, seed_groups  # noqa: E402
from cxrres.report import tables  # noqa: E402
from cxrres.report.tables import Block  # noqa: E402
from cxrres.util.filenames import safe_filename  # noqa: E402


def training_curves(run_dirs: list[Path], headings: list[str], path: Path) -> Path:
    """Validation mean AUC and losses per epoch for every run, one PNG."""
    fig, (ax_auc, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.6))
    for run_dir, heading in zip(run_dirs, headings):
        history = pd.read_csv(run_dir / runs.METRICS)
        line = ax_auc.plot(history["epoch"], history["val_mean_auc"], marker="o", ms=3, label=heading)[0]
        ax_loss.plot(
            history["epoch"], history["val_loss"], marker="o", ms=3, color=line.get_color(), label=f"{heading} val"
        )
        ax_loss.plot(history["epoch"], history["train_loss"], ls="--", color=line.get_color(), alpha=0.6)
    ax_auc.set(xlabel="epoch", ylabel="validation mean AUC")
    ax_loss.set(xlabel="epoch", ylabel="loss (solid: validation, dashed: training)")
    for ax in (ax_auc, ax_loss):
        ax.grid(alpha=0.3)
    ax_auc.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def heatmap_grid(comparison: Comparison, label: str, path: Path, rows: int = 3) -> Path | None:
    """Rows: test images with a `label` box shown by every run; columns: runs by resolution (the lowest seed of each
    group when there are several). None if no image."""
    infos = sorted((members[0] for members in seed_groups(comparison.runs).values()), key=lambda r: r.resolution_px)
    per_run = [
        {p.name: p for p in (i.run_dir / runs.LOCALIZATION_EXAMPLES).glob(f"{safe_filename(label)}_*.png")}
        for i in infos
    ]
    common = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    if not common:
        return None
    tiles = []
    for name in common[:rows]:
        pictures = [cv2.imread(str(d[name])) for d in per_run]  # an overlay keeps its aspect (caption, colour bar)
        row = [
            cv2.resize(p, (256, max(1, round(256 * p.shape[0] / p.shape[1]))), interpolation=cv2.INTER_AREA)
            for p in pictures
        ]
        height = max(p.shape[0] for p in row)  # pad to one height (overlays written before captions were square)
        tiles.append(
            cv2.hconcat(
                [
                    cv2.copyMakeBorder(p, 0, height - p.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
                    for p in row
                ]
            )
        )
    header = np.full((28, 256 * len(infos), 3), 255, np.uint8)
    for j, info in enumerate(infos):
        cv2.putText(
            header,
            f"{info.resolution_px} px",
            (j * 256 + 96, 20),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    cv2.imwrite(str(path), cv2.vconcat([header, *tiles]))
    return path


def kernels_text(status: runs.RunStatus) -> str:
    """The CPU kernel family a run computed with, e.g. 'AVX512' or 'AVX512 (ONEDNN_MAX_CPU_ISA=AVX2)'; '–' if
    unrecorded."""
    if status.cpu_kernels is None:
        return "–"
    return status.cpu_kernels + (
        f" (ONEDNN_MAX_CPU_ISA={status.onednn_max_cpu_isa})" if status.onednn_max_cpu_isa else ""
    )


def extreme_classes(comparison: Comparison) -> list[str]:
    """The smallest and the largest localized finding by mean box size; one class once when they are the same."""
    order = localized_classes(comparison)
    return list(dict.fromkeys((order[0], order[-1]))) if order else []


def heatmap_blocks(comparison: Comparison, files: Path) -> list[Block]:
    """A heat-map grid figure (written into `files`) for each of `extreme_classes` that the runs have examples of."""
    blocks = []
    for label in extreme_classes(comparison):
        grid = heatmap_grid(comparison, label, files / f"heatmaps_{safe_filename(label)}.png")
        if grid:
            which = f", seed {min(i.seed for i in comparison.runs)}" if comparison.several_seeds else ""
            blocks.append(
                Block(
                    image=grid,
                    caption=f"{label}: Grad-CAM by training resolution{which} (white: official "
                    "box; green/red: positive/negative detections)",
                )
            )
    return blocks


def cost_table(comparison: Comparison) -> tables.Table:
    """Per run: epochs, best epoch, wall time, training images/s, peak memory, device, threads and CPU kernels."""
    rows = []
    for info in comparison.runs:
        s = runs.read_status(info.run_dir)
        text = lambda value: "–" if value is None else str(value)  # noqa: E731
        rows.append(
            [
                info.heading,
                text(s.epochs),
                text(s.best_epoch),
                "–" if s.wall_seconds is None else f"{s.wall_seconds / 60:.1f}",
                text(s.train_images_per_s),
                "–" if s.peak_memory_mb is None else f"{s.peak_memory_mb:,.0f}",
                text(s.device),
                text(s.threads),
                kernels_text(s),
            ]
        )
    return tables.Table(
        [
            "Run",
            "Epochs",
            "Best epoch",
            "Wall time (min)",
            "Train img/s",
            "Peak memory (MB)",
            "Device",
            "Threads",
            "CPU kernels",
        ],
        rows,
    )


def localized_classes(comparison: Comparison) -> list[str]:
    """The localized classes, smallest mean box first (the order of localization.csv), without `mean`."""
    if comparison.localization is None:
        return []
    return [c for c in dict.fromkeys(comparison.localization["class"]) if c != "mean"]
