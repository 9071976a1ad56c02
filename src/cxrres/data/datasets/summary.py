"""`cxrres describe` for any data set: images per part, and per class the positives, uncertain and blank labels
per part (metadata only; no image is opened)."""

from __future__ import annotations

from cxrres.data.datasets.common import DatasetTable
from cxrres.data.splits import PARTS


def describe_table(table: DatasetTable) -> dict:
    """The `describe --json` object of a data set: images per part; per class and part positive/uncertain/blank counts."""
    frame = table.frame
    images = {part: int((frame["part"] == part).sum()) for part in PARTS}
    classes = {}
    for name in table.classes:
        column = frame[name]
        classes[name] = {kind: {part: int(test(column[frame["part"] == part]).sum()) for part in PARTS}
                         for kind, test in (("positive", lambda c: c == 1), ("uncertain", lambda c: c == -1),
                                            ("blank", lambda c: c.isna()))}
    return {"dataset": table.dataset, "root": str(table.root), "images": images,
            "patients": {part: int(frame.loc[frame["part"] == part, "patient_id"].nunique()) for part in PARTS},
            "views": {str(k): int(v) for k, v in frame["view"].value_counts().items()},
            "classes": classes, "boxes": len(table.boxes), "notes": list(table.notes)}


def format_table_summary(summary: dict) -> str:
    """Plain-text tables of a `describe_table` result: per class, positives (and uncertain) per part."""
    images, patients = summary["images"], summary["patients"]
    lines = [f"data set {summary['dataset']}: " + ", ".join(f"{p} {images[p]:,} images / {patients[p]:,} patients" for p in PARTS)]
    lines += [f"  {note}" for note in summary["notes"]]
    lines += ["  views: " + ", ".join(f"{k or '(none)'} {v:,}" for k, v in summary["views"].items()), ""]
    lines.append(f"{'class':<28}" + "".join(f"{p + ' pos':>12}{'%':>7}{'uncertain':>11}" for p in PARTS))
    for name, counts in summary["classes"].items():
        cells = "".join(f"{counts['positive'][p]:>12,}{100 * counts['positive'][p] / max(images[p], 1):>6.1f}%"
                        f"{counts['uncertain'][p]:>11,}" for p in PARTS)
        lines.append(f"{name:<28}{cells}")
    lines.append(f"\nblank labels count as negative; boxes: {summary['boxes']:,}")
    return "\n".join(lines)
