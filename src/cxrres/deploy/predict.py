"""`cxrres predict`: a trained run on new radiographs (PNG, JPEG, DICOM): probabilities, positive calls at an operating
point chosen on the run's validation part, and heat-map overlays.

Preprocessing is the training path exactly (`data.images.load_resized`: decode rules, bottom/right padding to a
square, area resize to the run's resolution), decoded in DataLoader worker processes and scored in batches with the
scoring precision (float32, `inference.SCORING_PRECISION`). Writes into OUT: `predictions.csv` (path, one float32
probability with 9 significant digits and one `positive_<class>` column per class: 1 when probability >= threshold),
`operating_points.csv` (the thresholds used: the run's own, chosen when it was trained, or those of the asked rule
chosen on its written validation predictions), `heatmaps/<stem>_<class>.png` (names made safe by
`filenames.safe_filename`), and `skipped.csv` with `--skip-bad`.
Nothing is written into the run directory.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cxrres import runs
from cxrres.localization import saliency
from cxrres.config import TrainConfig
from cxrres.data.images import load_resized, read_grey
from cxrres.data.layout import IMAGE_SUFFIXES
from cxrres.errors import CxrresError
from cxrres.inference.network import for_inference, load_run_model, predict, prepare_input, probabilities
from cxrres.util.filenames import safe_filename, short_digest
from cxrres.evaluation.operating import (
    DEFAULT_RULE,
    OperatingRule,
    operating_points,
    positive_calls,
    read_table,
    thresholds_for,
    to_csv_text,
)
from cxrres.localization.overlay import Caption, heatmap_figure, save_overlay
from cxrres.util.parallel import write_text_atomic

PREDICTIONS_FILE = "predictions.csv"
OPERATING_FILE = runs.OPERATING_POINTS  # the thresholds this prediction used, beside predictions.csv
SKIPPED_FILE = "skipped.csv"
HEATMAPS_DIR = "heatmaps"
INPUT_SUFFIXES: tuple[str, ...] = IMAGE_SUFFIXES
POSITIVE_PREFIX = "positive_"


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files as given, and the image files under each folder (recursively, sorted); an error for a path that is
    absent."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.suffix.lower() in INPUT_SUFFIXES and not p.is_dir())
        elif item.exists():
            out.append(item)
        else:
            raise CxrresError(f"{item}: no such file or folder")
    if not out:
        raise CxrresError(f"no image found in {', '.join(map(str, inputs))} (looked for {', '.join(INPUT_SUFFIXES)})")
    return out


class FileDataset(Dataset):
    """Image files -> (uint8 (1, R, R), index, source (h, w), error text or '') in the training path's preprocessing."""

    def __init__(self, paths: list[Path], resolution_px: int) -> None:
        self.paths, self.resolution_px = paths, resolution_px

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, tuple[int, int], str]:
        try:
            resized, hw = load_resized(self.paths[index], (self.resolution_px,))
            return torch.from_numpy(resized[self.resolution_px])[None], index, hw, ""
        except (CxrresError, OSError, ValueError) as error:  # one bad file must not stop the others
            blank = torch.zeros((1, self.resolution_px, self.resolution_px), dtype=torch.uint8)
            return blank, index, (0, 0), str(error).splitlines()[0] if str(error) else type(error).__name__


def validation_predictions(run_dir: Path, config: TrainConfig) -> runs.Predictions:
    """The run's predictions_val.csv; for runs trained before it was written, scored now from the run's cache (kept in
    memory: reading a run never writes into it)."""
    if (run_dir / runs.PREDICTIONS_VAL).is_file():
        return runs.read_predictions(run_dir, runs.PREDICTIONS_VAL)
    from cxrres.inference.rundata import load_run_data, run_source  # only for runs from before predictions_val.csv

    data = load_run_data(config, run_source(run_dir, progress=False))
    model, _, _ = load_run_model(run_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dataset = data.parts["val"]
    return runs.Predictions(
        dataset.images,
        data.classes,
        predict(model, dataset, config, device),
        dataset.labels.numpy().astype(np.int8),
        data.patient_ids("val"),
    )


def run_operating_points(run_dir: str | Path, rule: OperatingRule = DEFAULT_RULE) -> pd.DataFrame:
    """The operating points of `rule` for a run: its stored operating_points.csv (chosen when it was trained) when that
    holds the rule, else chosen now on its written validation predictions. Nothing is written into the run."""
    run_dir = Path(run_dir)
    stored = run_dir / runs.OPERATING_POINTS
    if stored.is_file():
        table = read_table(stored)
        rows = table[table["rule"].astype(str) == str(rule)]
        if len(rows):
            return rows.reset_index(drop=True)
    val = validation_predictions(run_dir, runs.read_settings(run_dir))
    return operating_points(val.labels, val.scores, val.classes, rule)


def heatmap_classes(spec: str, classes: list[str], probs: np.ndarray) -> list[str]:
    """The classes to draw for one image: none, top3 (highest probabilities), all, or a comma list of names."""
    if spec == "none":
        return []
    if spec == "all":
        return list(classes)
    if spec == "top3":
        return [classes[i] for i in np.argsort(-probs, kind="stable")[:3]]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise CxrresError(f"--heatmaps: unknown class {unknown[0]!r}; the run predicts {', '.join(classes)}")
    return names


@dataclass
class PredictResult:
    """What `predict_files` wrote."""

    predictions: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)
    heatmaps: list[Path] = field(default_factory=list)
    images_per_s: float = 0.0


def _check_run(run_dir: Path) -> None:
    best = run_dir / runs.CHECKPOINTS / runs.BEST
    if not (run_dir / runs.CONFIG).is_file():
        raise CxrresError(f"{run_dir}: not a run directory (no {runs.CONFIG})")
    if not best.is_file():
        raise CxrresError(
            f"{best}: missing; the run has not finished a validated epoch "
            "(rerun its `cxrres train` command to resume and finish it)"
        )


def predictions_frame(
    paths: list[str | Path], classes: list[str], scores: np.ndarray, thresholds: np.ndarray
) -> pd.DataFrame:
    """The table of predictions.csv (and of `LoadedRun.predict`): path, each class's probability, then each class's
    `positive_<class>` call (pandas Int8: 1 where p >= its threshold as float32, 0 below, <NA> without a threshold)."""
    frame = pd.DataFrame({"path": [str(p) for p in paths]})
    calls = positive_calls(scores, thresholds)
    for c, name in enumerate(classes):
        frame[name] = scores[:, c]
    for c, name in enumerate(classes):
        frame[POSITIVE_PREFIX + name] = pd.array(np.where(np.isnan(calls[:, c]), pd.NA, calls[:, c]), dtype="Int8")
    return frame


def predict_files(
    run_dir: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    heatmaps: str = "none",
    method: str = "gradcam",
    rule: OperatingRule = DEFAULT_RULE,
    skip_bad: bool = False,
    workers: int | None = None,
    batch_size: int | None = None,
    threshold: float = 0.5,
    progress: bool = True,
) -> PredictResult:
    """Score image files with a run's best network; write predictions.csv, heat maps and skipped.csv into `out`."""
    run_dir, out = Path(run_dir), Path(out)
    _check_run(run_dir)
    if method not in saliency.METHODS:
        raise CxrresError(f"unknown saliency method {method!r}; choose from {', '.join(saliency.METHODS)}")
    paths = collect_inputs(inputs)
    model, config, classes = load_run_model(run_dir)
    heatmap_classes(heatmaps, classes, np.zeros(len(classes)))  # refuse unknown names before any work
    operating = run_operating_points(run_dir, rule)
    thresholds = thresholds_for(operating, classes, rule, str(run_dir / runs.OPERATING_POINTS))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = for_inference(model, config, device)
    n_workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    loader = DataLoader(
        FileDataset(paths, config.resolution_px),
        batch_size=batch_size or config.batch_size,
        num_workers=n_workers,
        shuffle=False,
    )
    scores = np.full((len(paths), len(classes)), np.nan)
    sizes: dict[int, tuple[int, int]] = {}
    skipped: list[tuple[str, str]] = []
    started = time.perf_counter()
    with tqdm(total=len(paths), unit="img", desc="predict", disable=not progress) as bar:
        for images, index, (heights, widths), errors in loader:
            ok = torch.tensor([not e for e in errors], dtype=torch.bool)
            for i, error in zip(index.tolist(), errors):
                if error:
                    if not skip_bad:
                        raise CxrresError(error if str(paths[i]) in error else f"{paths[i]}: {error}")
                    skipped.append((str(paths[i]), error))
            if ok.any():
                scores[index[ok].numpy()] = probabilities(model, images[ok], config, device).numpy()
            sizes.update({i: (int(h), int(w)) for i, h, w in zip(index.tolist(), heights, widths)})
            bar.update(len(index))
    seconds = time.perf_counter() - started
    good = ~np.isnan(scores).any(axis=1)
    frame = predictions_frame(paths, classes, scores, thresholds)[good].reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    runs.write_csv_atomic(out / PREDICTIONS_FILE, frame, runs.PROBABILITY_FORMAT)
    write_text_atomic(out / OPERATING_FILE, to_csv_text(operating))
    result = PredictResult(frame, skipped, images_per_s=len(paths) / seconds if seconds else 0.0)
    if skip_bad:
        runs.write_csv_atomic(out / SKIPPED_FILE, pd.DataFrame(skipped, columns=["path", "error"]))
    if heatmaps != "none":
        result.heatmaps = write_heatmaps(
            model.float(),
            config,
            classes,
            [paths[i] for i in np.flatnonzero(good)],
            scores[good],
            heatmaps,
            method,
            threshold,
            out / HEATMAPS_DIR,
            device,
            thresholds=thresholds,
        )
    return result


def write_heatmaps(
    model: torch.nn.Module,
    config: TrainConfig,
    classes: list[str],
    paths: list[Path],
    scores: np.ndarray,
    spec: str,
    method: str,
    threshold: float,
    out: Path,
    device: torch.device,
    thresholds: np.ndarray | None = None,
) -> list[Path]:
    """One overlay per (image, requested class): the map in the image's pixels, its boxes at `threshold` (of the
    normalised map), the probability and, given `thresholds` (per class, NaN: no operating point), the call. Files are
    `<image stem>_<class>.png` (`safe_filename` of each; a stem shared by two inputs gets a digest of the path); a blank
    map says why on the figure and in a warning."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.to(memory_format=torch.contiguous_format)
    log = logging.getLogger(__name__)
    written, stems = [], {}
    for path, probs in zip(paths, scores):
        names = heatmap_classes(spec, classes, probs)
        if not names:
            continue
        stem = safe_filename(path.stem)
        stem = stem if stems.setdefault(stem, path) == path else f"{stem}-{short_digest(str(path))}"
        resized, hw = load_resized(path, (config.resolution_px,))
        x = prepare_input(torch.from_numpy(resized[config.resolution_px])[None, None].to(device), False)
        targets = torch.tensor([classes.index(n) for n in names], device=device)
        maps = saliency.class_activation_maps(model, x.repeat(len(names), 1, 1, 1), targets, method).cpu().numpy()
        grey = read_grey(path)
        for name, cam in zip(names, maps):
            c = classes.index(name)
            frame = saliency.to_box_frame(cam, hw)
            detections = saliency.boxes_from_saliency(frame, threshold)
            caption = Caption(
                path.name,
                name,
                threshold,
                float(probs[c]),
                None if thresholds is None else float(thresholds[c]),
                method,
                saliency.blank_reason(cam, config.resolution_px),
            )
            target = out / f"{stem}_{safe_filename(name)}.png"
            overlay = heatmap_figure(grey, frame, None, detections, 0.0, caption)
            save_overlay(target, overlay)
            if overlay.blank:
                log.warning("%s: blank heat map of %s: %s", target, name, overlay.blank)
            written.append(target)
    return written
