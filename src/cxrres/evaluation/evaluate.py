"""Test-set evaluation of one run: per-class AUC with DeLong intervals and the mean with a patient-bootstrap interval.

`evaluate_run` writes `auc.csv` and `calibration.csv` (average precision, Brier, ECE: `cxrres.evaluation.calibration`)
into a run directory. Comparisons between runs are in `cxrres.evaluation.compare`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres import runs
from cxrres.evaluation import calibration
from cxrres.evaluation import bootstrap
from cxrres.evaluation import metrics
from cxrres.data.metadata import patient_from_name
from cxrres.errors import CxrresError

MEAN = "mean"
N_BOOT = 1000


def patient_codes(patient_ids: list[str]) -> np.ndarray:
    """One integer per case numbering its patient in the patients' sorted order: numeric where every id is a decimal
    number (NIH, CheXpert, MIMIC), else as text. NIH ids recorded as text thus number the patients exactly as the ids
    their image names encode, so the bootstrap draws the same replicates from either."""
    text = [str(p) for p in patient_ids]
    numeric = all(p.isascii() and p.isdigit() for p in text)
    order = {p: k for k, p in enumerate(sorted(set(text), key=(lambda p: (int(p), p)) if numeric else None))}
    return np.array([order[p] for p in text], dtype=np.int64)


def patient_groups(images: list[str], patient_ids: list[str] | None = None) -> tuple[np.ndarray, str]:
    """The bootstrap's group of each image and its unit: the recorded patients (`patient_codes`), else those NIH image
    names encode ("patient"), else one group per image ("image")."""
    if patient_ids is not None:
        return patient_codes(patient_ids), "patient"
    ids = [patient_from_name(name) for name in images]
    if all(i is not None for i in ids):
        return np.asarray(ids), "patient"
    return np.arange(len(images)), "image"


UNDEFINED = "undefined"  # how a note starts when the class's AUC is undefined
TIED = "interval degenerate: all scores tied"


def auc_row(labels: np.ndarray, scores: np.ndarray, level: float = 0.95) -> dict:
    """n_pos, n_neg, AUC, DeLong interval, note (`undefined: ...`, `interval degenerate: ...` or empty) and
    few_positives (fewer than `metrics.MIN_POSITIVES`) of one class's labels (1/0, -1 masked out) and scores."""
    kept = metrics.kept_rows(labels)  # a label -1 is masked out of this class
    y, s = labels[kept], scores[kept]
    reason = metrics.undefined_reason(y) if kept.any() else "every label masked out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
        value, low, high = metrics.delong_ci(y, s, level) if kept.any() else (math.nan,) * 3
    note = f"{UNDEFINED}: {reason}" if reason else (TIED if low == high else "")
    return {
        "n_pos": int(y.sum()),
        "n_neg": int(len(y) - y.sum()),
        "auc": value,
        "ci_low": low,
        "ci_high": high,
        "note": note,
        "few_positives": metrics.few_positives(y.sum()),
    }


def degenerate_reason(groups: np.ndarray, unit: str) -> str:
    """Why a bootstrap interval of the mean is a point: one patient (or image), else identical replicates."""
    n = np.unique(groups).size
    return f"interval degenerate: {n} {unit}" if n == 1 else "interval degenerate: every replicate gives the same mean"


def auc_table(predictions: runs.Predictions, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per class (n_pos, n_neg, AUC and DeLong interval, note, few_positives) and a `mean` row (patient-
    bootstrap interval; its note says why when the interval is a point); a class's masked cases (label -1) are left
    out of its row and of its part of the mean."""
    rows = [
        {"class": name, **auc_row(predictions.labels[:, c], predictions.scores[:, c], level)}
        for c, name in enumerate(predictions.classes)
    ]
    table = pd.DataFrame(rows)
    defined = ~table["note"].str.startswith(UNDEFINED)
    if not defined.any():
        raise CxrresError("no class has positive and negative test images; AUC is undefined for all")
    groups, unit = patient_groups(predictions.images, predictions.patient_ids)
    if defined.sum() > 1 or len(predictions.classes) > 1:
        point, low, high = bootstrap.bootstrap_mean_auc(
            predictions.labels, predictions.scores, groups, n_boot, seed, level
        )
    else:
        point, low, high = table.loc[defined, ["auc", "ci_low", "ci_high"]].iloc[0]
    note = f"mean of {int(defined.sum())} classes; {n_boot} bootstrap replicates by {unit}"
    if low == high:
        note += "; " + (degenerate_reason(groups, unit) if defined.sum() > 1 or len(predictions.classes) > 1 else TIED)
    mean_row = {
        "class": MEAN,
        "n_pos": np.nan,
        "n_neg": np.nan,
        "auc": point,
        "ci_low": low,
        "ci_high": high,
        "note": note,
        "few_positives": False,
    }
    out = pd.concat([table, pd.DataFrame([mean_row])], ignore_index=True)
    return out.astype({"n_pos": "Int64", "n_neg": "Int64"})  # counts stay whole numbers in the CSV (the mean has none)


def evaluate_run(
    run_dir: str | Path, level: float = 0.95, n_boot: int = N_BOOT, out: str | Path | None = None
) -> pd.DataFrame:
    """Read the run's predictions, write `calibration.csv` then `auc.csv` into `out` or the run directory (not at all,
    with a warning, when that is read-only: see `runs.result_dir`), return the AUC table; `table.attrs["written"]` is
    auc.csv or None, `table.attrs["calibration"]` the calibration table."""
    predictions = runs.read_predictions(run_dir)
    table = auc_table(predictions, level, n_boot)
    groups, _ = patient_groups(predictions.images, predictions.patient_ids)
    calibrated = calibration.calibration_table(predictions, groups, level, n_boot)
    where = runs.result_dir(run_dir, out)
    if where is not None:  # auc.csv last: a study takes its presence to mean the run is evaluated
        runs.write_csv_atomic(where / runs.CALIBRATION, calibrated)
        runs.write_csv_atomic(where / runs.AUC, table)
    table.attrs["written"] = where / runs.AUC if where is not None else None
    table.attrs["calibration"] = calibrated
    return table


def table_as_json(table: pd.DataFrame) -> dict:
    """{"auc": {class: {"auc", "ci_low", "ci_high"}, ..., "mean": {...}}} with NaN as null."""

    def number(x: float) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)

    return {
        "auc": {row["class"]: {k: number(row[k]) for k in ("auc", "ci_low", "ci_high")} for _, row in table.iterrows()}
    }


def format_table(table: pd.DataFrame, width: int | None = None) -> str:
    """The AUC table as `cxrres evaluate` prints it: one line per class (counts, AUC and interval, its notes: undefined,
    degenerate interval, fewer than MIN_POSITIVES positives), then the mean; class names padded to `width` characters
    (default: the longest, at least 19). Tables read from older auc.csv files (no few_positives column) print too."""
    width = width or max(19, *map(len, table["class"]))
    lines = []
    for _, row in table.iterrows():
        note = "" if pd.isna(row["note"]) else str(row["note"])
        counts = "" if row["class"] == MEAN else f"{int(row['n_pos']):>6,} pos {int(row['n_neg']):>7,} neg  "
        value = (
            UNDEFINED if note.startswith(UNDEFINED) else f"{row['auc']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        )
        notes = [note] if note else []
        if row["class"] != MEAN and not note.startswith(UNDEFINED) and metrics.few_positives(row["n_pos"]):
            notes.append(f"fewer than {metrics.MIN_POSITIVES} positives: interval and tests rest on too few cases")
        lines.append(f"{row['class']:<{width}} {counts}{value}" + (f"  ({'; '.join(notes)})" if notes else ""))
    return "\n".join(lines)
