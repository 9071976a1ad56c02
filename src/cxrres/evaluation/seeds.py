"""Several seeds of one (architecture, resolution): mean ± sd of per-run figures, and the seed ensemble.

Pure functions. `seed_summary` aggregates a long table of per-run values (one row per arch, resolution_px, seed, class);
`seed_ensemble` averages the seeds' probabilities over the test images they share, giving one `Predictions` that the
metrics (AUC, DeLong, bootstrap) treat like any single run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrres.errors import CxrresError
from cxrres.runs import Predictions

KEYS = ["arch", "resolution_px", "class"]
PER_SEED = ("auc", "ci_low", "ci_high")


def seed_summary(per_run: pd.DataFrame, value: str = "auc", class_column: str = "class") -> pd.DataFrame:
    """Per (arch, resolution_px, class): n seeds with a value, mean, sd (ddof=1; NaN for n = 1), and every seed's
    `value`, `ci_low`, `ci_high` (those present) as columns `<name>_seed<seed>`.

    `per_run` has one row per (arch, resolution_px, seed, class). NaN values (a class undefined in a run) are kept in
    the per-seed columns and left out of n, mean and sd. Groups keep their first-appearance order; seed columns are
    in ascending seed order.
    """
    table = per_run.rename(columns={class_column: "class"}) if class_column != "class" else per_run
    missing = [c for c in [*KEYS, "seed", value] if c not in table.columns]
    if missing:
        raise CxrresError(f"per-run table has no column(s) {missing}")
    duplicated = table.duplicated([*KEYS, "seed"])
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise CxrresError(
            f"several rows for {row['arch']} at {row['resolution_px']} px, seed {row['seed']}, class {row['class']}"
        )
    grouped = table.groupby(KEYS, sort=False)[value]
    summary = grouped.agg(
        n="count", mean="mean", sd=lambda v: v.std(ddof=1) if v.count() > 1 else math.nan
    ).reset_index()
    kept = list(dict.fromkeys([value, *(c for c in PER_SEED if c in table.columns)]))
    wide = table.pivot(index=KEYS, columns="seed", values=kept)
    seeds = sorted(table["seed"].unique())
    wide = wide.reindex(columns=pd.MultiIndex.from_product([kept, seeds]))
    wide.columns = [f"{name}_seed{seed}" for name, seed in wide.columns]
    return summary.merge(wide.reset_index(), on=KEYS, how="left", sort=False)


def format_mean_sd(mean: float, sd: float, n: int, digits: int = 3) -> str:
    """'0.842 ± 0.004' for several seeds, '0.842' for one, '–' when the mean is NaN."""
    if mean is None or math.isnan(mean):
        return "–"
    if n < 2 or sd is None or math.isnan(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def seed_ensemble(predictions: Sequence[Predictions]) -> Predictions:
    """Mean of the runs' probabilities over the test images all of them scored (in the first run's order).

    The runs must predict the same classes in the same order and agree on the labels of every shared image; the
    patients are those of the first run that recorded them.
    """
    if not predictions:
        raise CxrresError("a seed ensemble needs at least one run")
    first = predictions[0]
    for other in predictions[1:]:
        if list(other.classes) != list(first.classes):
            raise CxrresError(f"runs predict different classes: {list(first.classes)} vs {list(other.classes)}")
    common = pd.Index(first.images)
    for other in predictions[1:]:
        common = common[common.isin(other.images)]
    if common.empty:
        raise CxrresError("the runs share no test image")
    rows = [pd.Index(p.images).get_indexer(common) for p in predictions]
    labels = np.asarray(first.labels)[rows[0]]
    for p, r in zip(predictions[1:], rows[1:]):
        differ = np.flatnonzero((np.asarray(p.labels)[r] != labels).any(axis=1))
        if differ.size:
            raise CxrresError(f"runs disagree on the labels of {differ.size} shared image(s), e.g. {common[differ[0]]}")
    scores = np.mean([np.asarray(p.scores, dtype=np.float64)[r] for p, r in zip(predictions, rows)], axis=0)
    recorded = next((p for p in predictions if p.patient_ids is not None), None)
    patients = None
    if recorded is not None:
        patients = np.asarray(recorded.patient_ids, dtype=object)[
            pd.Index(recorded.images).get_indexer(common)
        ].tolist()
    return Predictions(common.tolist(), list(first.classes), scores, labels, patients)
