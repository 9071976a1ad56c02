"""`cxrres describe` for any data set: images per part, and per class the positive, negative, uncertain and blank
labels per part and what a run trains on under an uncertain policy; on box data sets the boxes of the test part per
class, per image and their mean area (metadata; no image is opened, each is only looked up on disk to list those that
are links to files outside the root)."""

from __future__ import annotations

import numpy as np

from cxrres.data.datasets.common import DatasetTable, apply_uncertain
from cxrres.data.paths import outside_line, outside_summary, resolve_images
from cxrres.data.splits import PARTS

#: Skipped metadata rows `describe` prints one per line (the rest are counted; `--json` lists all).
SHOWN_SKIPPED = 20


def describe_boxes(table: DatasetTable, part: str = "test") -> dict | None:
    """Boxes per part; in `part`, per class boxes, images and mean area (source px^2, and share of the frame where
    `source_px` is known, else None), and images by number of boxes (0 included). None without boxes."""
    boxes = table.boxes
    if boxes.empty:
        return None
    where = table.frame["part"].reindex(boxes["image"]).to_numpy(object)
    names = table.images(part)
    inside = boxes[where == part]
    area = (inside["w"] * inside["h"]).to_numpy(np.float64)
    frame_px = float(table.source_px[0] * table.source_px[1]) if table.source_px else None
    labels = [c for c in table.classes if c in set(boxes["label"])]
    labels += sorted(set(boxes["label"]) - set(labels))
    classes = {}
    for label in labels:
        mine = (inside["label"] == label).to_numpy()
        mean = float(area[mine].mean()) if mine.any() else None
        classes[label] = {
            "boxes": int(mine.sum()),
            "images": int(inside.loc[mine, "image"].nunique()),
            "mean_area_px": mean,
            "mean_area_share": mean / frame_px if mean is not None and frame_px else None,
        }
    per_image = inside["image"].value_counts().reindex(names, fill_value=0)
    histogram = {int(k): int(v) for k, v in sorted(per_image.value_counts().items())}
    boxed = per_image[per_image > 0]
    return {
        "part": part,
        "per_part": {p: int((where == p).sum()) for p in PARTS},
        "classes": classes,
        "images_by_boxes": histogram,
        "mean_per_image": float(per_image.mean()) if len(names) else 0.0,
        "mean_per_boxed_image": float(boxed.mean()) if len(boxed) else 0.0,
        "mean_area_px": float(area.mean()) if len(area) else None,
        "mean_area_share": float(area.mean()) / frame_px if len(area) and frame_px else None,
        "source_px": list(table.source_px) if table.source_px else None,
    }


def describe_table(table: DatasetTable, uncertain: str = "ignore") -> dict:
    """The `describe --json` object of a data set: images per part; per class and part the raw label counts (positive,
    negative, uncertain, blank) and, under the `uncertain` policy, what a run trains and is scored on (`trained`:
    positive, negative, masked; `apply_uncertain`, as training reads them)."""
    frame = table.frame
    parts = frame["part"].to_numpy(object)
    images = {part: int((parts == part).sum()) for part in PARTS}
    classes = {}
    for name in table.classes:
        raw = frame[name].to_numpy(np.float32)
        targets, mask = apply_uncertain(raw, uncertain)
        kinds = {"positive": raw == 1, "negative": raw == 0, "uncertain": raw == -1, "blank": np.isnan(raw)}
        trained = {"positive": mask & (targets == 1), "negative": mask & (targets == 0), "masked": ~mask}
        count = lambda where: {part: int((where & (parts == part)).sum()) for part in PARTS}  # noqa: E731
        classes[name] = {
            **{kind: count(where) for kind, where in kinds.items()},
            "trained": {kind: count(where) for kind, where in trained.items()},
        }
    return {
        "dataset": table.dataset,
        "root": str(table.root),
        "images": images,
        "patients": {part: int(frame.loc[parts == part, "patient_id"].nunique()) for part in PARTS},
        "views": {str(k): int(v) for k, v in frame["view"].value_counts().items()},
        "uncertain_policy": uncertain,
        "classes": classes,
        "boxes": len(table.boxes),
        "box_summary": describe_boxes(table),
        "notes": list(table.notes),
        "skipped_rows": list(table.skipped),
        "symlinks_outside_root": outside_summary(table_outside(table)),
    }


def table_outside(table: DatasetTable) -> list[tuple[str, str]]:
    """(image, real file) of the table's images on disk that are links to files outside its root (`paths`)."""
    return resolve_images(table.root, table.frame.index.tolist(), [table.root / p for p in table.frame["path"]]).outside


def format_table_summary(summary: dict) -> str:
    """Plain-text tables of a `describe_table` result: per class and part the raw labels (positive, negative, uncertain,
    blank), then what a run trains on under the uncertain policy (positive, negative, masked)."""
    images, patients = summary["images"], summary["patients"]
    lines = [
        f"data set {summary['dataset']}: "
        + ", ".join(f"{p} {images[p]:,} images / {patients[p]:,} patients" for p in PARTS)
    ]
    lines += [f"  {note}" for note in summary["notes"]]
    lines += [f"  {line}" for line in [outside_line(summary.get("symlinks_outside_root"))] if line]
    skipped = summary.get("skipped_rows") or []
    lines += [f"  skipped {row}" for row in skipped[:SHOWN_SKIPPED]]
    lines += (
        [f"  ... and {len(skipped) - SHOWN_SKIPPED:,} more skipped rows (--json lists all)"]
        if len(skipped) > SHOWN_SKIPPED
        else []
    )
    lines += ["  views: " + ", ".join(f"{k or '(none)'} {v:,}" for k, v in summary["views"].items()), ""]
    lines.append("labels as the data set gives them (pos, neg, unc: uncertain, blank; pos % of the part's images):")
    lines.append(f"{'class':<28}" + "".join(f"{p:>8}{'%':>7}{'neg':>7}{'unc':>6}{'blank':>7}" for p in PARTS))
    for name, counts in summary["classes"].items():
        cells = "".join(
            f"{counts['positive'][p]:>8,}{100 * counts['positive'][p] / max(images[p], 1):>6.1f}%"
            f"{counts['negative'][p]:>7,}{counts['uncertain'][p]:>6,}{counts['blank'][p]:>7,}"
            for p in PARTS
        )
        lines.append(f"{name:<28}{cells}")
    policy = summary.get("uncertain_policy", "ignore")
    lines += [
        "",
        f"what a run trains and is scored on (--uncertain {policy}; blank is negative; masked: left out of "
        "that class's loss and AUC):",
        f"{'class':<28}" + "".join(f"{p + ' pos':>11}{'neg':>9}{'masked':>9}" for p in PARTS),
    ]
    for name, counts in summary["classes"].items():
        trained = counts["trained"]
        lines.append(
            f"{name:<28}"
            + "".join(
                f"{trained['positive'][p]:>11,}{trained['negative'][p]:>9,}{trained['masked'][p]:>9,}" for p in PARTS
            )
        )
    lines.append(f"\nboxes: {summary['boxes']:,}")
    if summary.get("box_summary"):
        lines += ["", format_box_summary(summary["box_summary"])]
    return "\n".join(lines)


def _area(px: float | None, share: float | None) -> str:
    """A mean box area as 'N px^2 (S% of the image)'; '-' when there is none."""
    if px is None:
        return "-"
    return f"{px:,.0f} px^2" + (f" ({100 * share:.2f}% of the image)" if share is not None else " (image size unknown)")


def format_box_summary(boxes: dict) -> str:
    """Plain-text lines of a `describe_boxes` result."""
    part = boxes["part"]
    size = "x".join(str(v) for v in boxes["source_px"]) + " px" if boxes["source_px"] else "sizes vary / unknown"
    lines = [
        "boxes per part: " + ", ".join(f"{p} {n:,}" for p, n in boxes["per_part"].items()) + f"; source frame {size}",
        f"{'class':<28}{part + ' boxes':>12}{'images':>9}  mean area",
    ]
    for name, c in boxes["classes"].items():
        lines.append(f"{name:<28}{c['boxes']:>12,}{c['images']:>9,}  {_area(c['mean_area_px'], c['mean_area_share'])}")
    lines.append(
        f"{'all':<28}{sum(c['boxes'] for c in boxes['classes'].values()):>12,}"
        f"{sum(n for k, n in boxes['images_by_boxes'].items() if k):>9,}  "
        f"{_area(boxes['mean_area_px'], boxes['mean_area_share'])}"
    )
    lines.append(
        f"{part} images by number of boxes: "
        + ", ".join(f"{k}: {v:,}" for k, v in boxes["images_by_boxes"].items())
        + f"; mean {boxes['mean_per_image']:.2f} per image, {boxes['mean_per_boxed_image']:.2f} per boxed image"
    )
    return "\n".join(lines)
