"""Summaries of a data set under a split: for ChestX-ray14 its split of record's class counts per part and the official
boxes of the test part (`describe_split`), for any data set the common table's (`datasets.summary.describe_table`);
`describe_data` picks one."""

from __future__ import annotations

import math

from cxrres.data.boxes import mean_area_1024
from cxrres.data.datasets import DatasetTable
from cxrres.data.datasets.summary import describe_table, format_table_summary
from cxrres.data.images import image_size, is_dicom_path
from cxrres.data.labels import BOX_CLASSES, CLASSES
from cxrres.data.layout import DataRoot
from cxrres.data.paths import outside_line, outside_summary, resolve_images
from cxrres.data.splits import PARTS, Split, boxes_in_part


def frame_scale_to_1024(root: DataRoot, image: str) -> float:
    """Factor from an image's box frame (its pixels) to the 1024-px frame: 1024 / its longer side (1 if absent)."""
    path = root.images.get(image)
    if path is None or is_dicom_path(path):
        return 1.0
    return 1024.0 / max(image_size(path))  # reads the header only; ImageReadError naming a hostile file


def describe_split(root: DataRoot, split: Split) -> dict:
    """The `cxrres describe --json` object: image and class counts per part, box count and mean area (px² at 1024),
    and the images on disk that are links to files outside the root (followed; `paths.resolve_images`).

    Box areas are brought to the 1024-px frame from each image's own pixel frame (the phantom can be smaller).
    """
    images = {part: int((split.frame["part"] == part).sum()) for part in PARTS}
    counts = split.frame.groupby("part")[list(CLASSES)].sum()
    classes = {
        name: {part: int(counts.loc[part, name]) if part in counts.index else 0 for part in PARTS} for name in CLASSES
    }
    boxes = boxes_in_part(root, split, "test")
    areas = mean_area_1024(boxes, boxes["image"].map(lambda name: 1024.0 / frame_scale_to_1024(root, name)))
    box_summary = {}
    for name in BOX_CLASSES:
        n = int((boxes["label"] == name).sum())
        box_summary[name] = {"count": n, "mean_area_px2": round(float(areas[name]), 1) if n else None}
    listed = [name for name in split.frame.index if name in root.images]
    outside = resolve_images(root.root, listed, [root.images[name] for name in listed]).outside
    return {
        "split": split.name,
        "images": images,
        "classes": classes,
        "boxes": box_summary,
        "symlinks_outside_root": outside_summary(outside),
    }


def describe_data(root: DataRoot, table: DatasetTable, uncertain: str = "ignore", of_record: bool = True) -> dict:
    """The `cxrres describe --json` object of `table` (read from `root`): where it has a split of record (NIH) and
    `of_record`, that split's (`describe_split`: with the official boxes of its test part), else the table's
    (`describe_table` under the `uncertain` policy)."""
    if table.split is not None and of_record:
        return describe_split(root, table.split)
    return describe_table(table, uncertain)


def format_data(summary: dict) -> str:
    """Plain-text tables of a `describe_data` result."""
    return format_table_summary(summary) if "dataset" in summary else format_summary(summary)


def format_summary(summary: dict) -> str:
    """Plain-text tables of a `describe_split` result."""
    images = summary["images"]
    lines = [f"split {summary['split']}: " + ", ".join(f"{part} {images[part]:,}" for part in PARTS) + " images"]
    lines += [line for line in [outside_line(summary.get("symlinks_outside_root"))] if line] + [""]
    lines.append(f"{'class':<20}" + "".join(f"{part:>9}{'%':>7}" for part in PARTS))
    for name, per_part in summary["classes"].items():
        cells = "".join(f"{per_part[p]:>9,}{100 * per_part[p] / max(images[p], 1):>6.1f}%" for p in PARTS)
        lines.append(f"{name:<20}{cells}")
    lines += [
        "",
        f"official boxes in the test part ({sum(b['count'] for b in summary['boxes'].values())}):",
        f"{'class':<20}{'boxes':>7}{'mean area px² @1024':>22}{'≈ side px':>11}",
    ]
    for name, box in sorted(
        summary["boxes"].items(), key=lambda kv: (kv[1]["mean_area_px2"] is None, kv[1]["mean_area_px2"] or 0)
    ):
        area = box["mean_area_px2"]
        area_text = f"{area:>22,.0f}{math.sqrt(area):>11.0f}" if area else f"{'-':>22}{'-':>11}"
        lines.append(f"{name:<20}{box['count']:>7}{area_text}")
    return "\n".join(lines)
