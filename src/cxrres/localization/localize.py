"""`cxrres localize`: Grad-CAM boxes of a run scored against the ground-truth boxes of its split's test part.

The boxes are the data set's (`DataSource.boxes`): ChestX-ray14's official BBox_List rows, RSNA's opacity boxes,
VinDr-CXR's boxes of every reader, in the data set's class names; those of classes the run does not predict are left
out. They are grouped per (image, class) whose image is in the cache; for each group one map of that class from the
run's best checkpoint, brought to the image's own pixel frame (`saliency.to_box_frame`), thresholded, one detection
per connected component, matched one-to-one to the group's boxes (`saliency.score_boxes`): precision per group, hit
per box; also whether the map's maximum lies in each box (pointing game). Writes `localization_samples.csv` (one row
per ground-truth box), `localization.csv` (per class, ordered by mean box size; then the mean over classes) and
example figures into the run directory. With one box per image and class this is the single-box protocol exactly.
Classes are ordered by mean box area in the 1024-px frame of each image's padded square (its longer side).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cxrres import runs
from cxrres.localization import saliency
from cxrres.localization.settings import LocalizeSettings
from cxrres.data.boxes import classes_by_box_size
from cxrres.data.images import read_grey
from cxrres.data.source import DataSource
from cxrres.errors import CxrresError
from cxrres.inference.network import load_run_model, prepare_input
from cxrres.inference.rundata import run_source
from cxrres.util.filenames import safe_filename
from cxrres.localization.overlay import Caption, heatmap_figure, save_overlay


@dataclass
class Localization:
    """Per-box samples, the per-class table, and the files written."""

    samples: pd.DataFrame
    summary: pd.DataFrame
    skipped_not_in_cache: int
    figures: list[Path] = field(default_factory=list)
    skipped_rows: tuple[str, ...] = ()  # bad metadata rows whose images the run's data leaves out (skip_bad)
    written_to: Path | None = None  # where the tables went: --out, the run directory, or None (read-only run)


def figure_name(label: str, image: str) -> str:
    """An example figure's file name: `<class>_<image stem>.png`, each part through `safe_filename` (VinDr's
    "Nodule/Mass" -> "Nodule_Mass-<digest>", RSNA's "Lung Opacity" -> "Lung_Opacity-<digest>")."""
    return f"{safe_filename(label)}_{safe_filename(Path(image).stem)}.png"


def format_boxes(boxes: list[tuple[int, int, int, int]]) -> str:
    """'x y w h; x y w h' (empty for none)."""
    return "; ".join(" ".join(str(int(v)) for v in b) for b in boxes)


def parse_boxes(text: str) -> list[tuple[int, int, int, int]]:
    """Inverse of `format_boxes`: 'x y w h; x y w h' -> [(x, y, w, h), ...] (pixels)."""
    return [tuple(int(v) for v in part.split()) for part in str(text).split(";") if part.strip()]  # type: ignore[misc]


def group_rows(
    frame: np.ndarray, image: str, label: str, group: pd.DataFrame, threshold: float, iou_threshold: float
) -> list[dict]:
    """One `localization_samples.csv` row per ground-truth box of one (image, class) group, scored on its map
    `frame` (in the image's pixels): the group's detections, precision, TP and box count; per box hit, pointing and
    the IoU of the detection matched to it (0 when none)."""
    gts = [(float(b.x), float(b.y), float(b.w), float(b.h)) for b in group.itertuples()]
    detections = saliency.boxes_from_saliency(frame, threshold)
    precision, hits, matches = saliency.score_boxes(detections, gts, iou_threshold)
    pointing = saliency.pointing_hits(frame, gts)
    shared = {"image": image, "class": label, "n_detections": len(detections), "precision": precision}
    tail = {"detections": format_boxes(detections), "n_boxes": len(gts), "tp": sum(hits)}
    return [
        {
            **shared,
            "hit": int(hit),
            "pointing": int(point),
            "gt_x": gt[0],
            "gt_y": gt[1],
            "gt_w": gt[2],
            "gt_h": gt[3],
            **tail,
            "matched_iou": round(match[1], 6) if match else 0.0,
        }
        for gt, hit, point, match in zip(gts, hits, pointing, matches)
    ]


#: Per-class scores in localization.csv: column -> the per-sample column averaged.
SCORES = {"precision": "precision", "accuracy": "hit", "pointing": "pointing"}


def summarise(samples: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per class: n (boxes), precision (mean over the (image, class) groups, each counted once), accuracy (share of
    boxes hit), pointing (share of boxes holding the map's maximum), in `order`; then `mean` (unweighted over classes).
    With one box per group every mean is over the rows, as before."""
    grouped = samples.groupby("class").agg(n=("hit", "size"), **{k: (v, "mean") for k, v in SCORES.items()})
    groups = samples.drop_duplicates(["image", "class"]) if "n_boxes" in samples else samples
    grouped["precision"] = groups.groupby("class")["precision"].mean()
    grouped = grouped.loc[[c for c in order if c in grouped.index]].reset_index()
    mean = {"class": "mean", "n": int(grouped["n"].sum()), **{k: grouped[k].mean() for k in SCORES}}
    return pd.concat([grouped, pd.DataFrame([mean])], ignore_index=True)


def summary_as_json(summary: pd.DataFrame) -> dict:
    """{"classes": {c: {"n", "precision", "accuracy", "pointing"}}, "mean": {"precision", "accuracy", "pointing"}}."""
    rows = summary.set_index("class")
    scores = lambda r: {k: round(float(r[k]), 6) for k in SCORES}  # noqa: E731
    classes = {c: {"n": int(r["n"]), **scores(r)} for c, r in rows.drop(index="mean").iterrows()}
    return {"classes": classes, "mean": scores(rows.loc["mean"])}


def localize_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    method: str = LocalizeSettings.method,
    threshold: float = LocalizeSettings.threshold,
    iou_threshold: float = LocalizeSettings.iou,
    examples: int = LocalizeSettings.examples,
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = True,
    source: DataSource | None = None,
    out: str | Path | None = None,
) -> Localization:
    """Score the run's maps against the ground-truth boxes of its split's test part; write the tables and figures
    into `out` or the run directory (nothing, with a warning, when that is read-only: see `runs.result_dir`)."""
    run_dir = Path(run_dir)
    config = runs.read_settings(run_dir)
    classes = config.classes
    if method not in saliency.METHODS:
        raise CxrresError(f"unknown saliency method {method!r}; choose from {', '.join(saliency.METHODS)}")
    source = run_source(run_dir, data, source, progress)
    root = source.root
    if source.table.boxes.empty:
        raise CxrresError(
            f"{root.root}: localization needs ground-truth boxes; the {source.dataset} data set has none to "
            "score against"
        )
    boxes = source.boxes("test")
    boxes = boxes[boxes["label"].isin(classes)].reset_index(drop=True)
    if boxes.empty:
        raise CxrresError(
            f"{root.root}: no ground-truth box of the run's classes ({', '.join(classes)}) in the test part"
        )
    cache = source.cache(config.resolution_px)
    present = boxes["image"].isin(set(cache.rows))
    skipped = int((~present).sum())
    boxes = boxes[present].reset_index(drop=True)
    if boxes.empty:
        raise CxrresError(f"{root.root}: none of the {skipped} boxed test images is on disk")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_run_model(run_dir)[0].to(dev).eval()
    array = cache.array()
    class_index = {c: i for i, c in enumerate(classes)}
    groups = list(boxes.groupby(["image", "label"], sort=False))
    rows, keep = [], {}
    bar = tqdm(total=len(boxes), unit="box", desc=f"localize {method}", disable=not progress)
    for start in range(0, len(groups), batch_size):
        part = groups[start : start + batch_size]
        images = torch.from_numpy(np.stack([array[cache.rows[image]] for (image, _), _ in part]))[:, None].to(dev)
        targets = torch.tensor([class_index[label] for (_, label), _ in part], device=dev)
        maps = saliency.class_activation_maps(model, prepare_input(images, False), targets, method).cpu().numpy()
        for cam, ((image, label), group) in zip(maps, part):
            frame = saliency.to_box_frame(cam, cache.source_hw[image])
            rows.extend(group_rows(frame, image, label, group, threshold, iou_threshold))
            if sum(1 for k in keep if k[0] == label) < examples:
                keep[(label, image)] = (frame, rows[-len(group) :], saliency.blank_reason(cam, config.resolution_px))
            bar.update(len(group))
    bar.close()
    samples = pd.DataFrame(rows)
    side = boxes["image"].map(lambda n: max(cache.source_hw[n]))
    summary = summarise(samples, classes_by_box_size(boxes, side))
    where = runs.result_dir(run_dir, out)
    result = Localization(samples, summary, skipped, skipped_rows=source.table.skipped, written_to=where)
    if where is None:
        return result
    for name, frame in ((runs.LOCALIZATION_SAMPLES, samples), (runs.LOCALIZATION, summary)):
        runs.write_csv_atomic(where / name, frame)
    runs.write_skipped_rows(where, source.table.skipped)
    if keep:
        out = where / runs.LOCALIZATION_EXAMPLES
        out.mkdir(exist_ok=True)
        for (label, image), (frame, group_samples, blank) in keep.items():
            grey = read_grey(root.root / cache.sources[image])
            gts = [(r["gt_x"], r["gt_y"], r["gt_w"], r["gt_h"]) for r in group_samples]
            hits = sum(r["hit"] for r in group_samples)
            outcome = ("hit" if hits else "miss") if len(gts) == 1 else f"{hits} of {len(gts)} boxes hit"
            note = (
                f"precision {group_samples[0]['precision']:.2f}, {outcome} at IoU ≥ {iou_threshold:.2f} · white: "
                "true box; green/red: a detection that reaches one or not"
            )
            x = prepare_input(torch.from_numpy(np.array(array[cache.rows[image]]))[None, None].to(dev), False)
            with torch.no_grad():
                probability = float(torch.sigmoid(model(x).float())[0, class_index[label]])
            caption = Caption(image, label, threshold, probability, None, method, blank, note)
            path = out / figure_name(label, image)
            save_overlay(
                path,
                heatmap_figure(grey, frame, gts, parse_boxes(group_samples[0]["detections"]), iou_threshold, caption),
            )
            result.figures.append(path)
    return result
