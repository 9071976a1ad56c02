"""Internal against external test AUC by training resolution (a study with `external:` roots): for every run and every
other data root it was scored on (`RUN/external_test/*/auc.csv`, `cxrres.evaluation.external`), the mean AUC over the
classes both data sets have, internal (the run's own test part) and external, on the same classes: those whose AUC is
defined in both. Recomputed from the run directories; the report shows it as a table and a plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrres import runs
from cxrres.evaluation.compare import Comparison
from cxrres.evaluation.evaluate import MEAN
from cxrres.models.registry import display_name
from cxrres.report import plots, tables

INTERNAL, EXTERNAL = "internal", "external"
#: Columns of `external_long`.
COLUMNS: tuple[str, ...] = (
    "heading",
    "arch",
    "label",
    "seed",
    "resolution_px",
    "dataset",
    "data_root",
    "n_classes",
    "classes",
    INTERNAL,
    EXTERNAL,
)
TITLE = "Internal and external test AUC"
INTRO = (
    "Each run scored on the test part of other data sets (`external:` in the study file), over the classes both "
    'data sets have (docs/data.md, "Class names across data sets"). Internal: the mean test AUC of those classes on '
    "the run's own test part; external: their mean on the other data set's; the classes are those whose AUC is "
    "defined on both test parts."
)


def external_long(comparison: Comparison) -> pd.DataFrame:
    """One row per (run, other data root): the shared classes defined on both sides, their mean internal and external
    AUC. Empty (with COLUMNS) when no run has been scored elsewhere."""
    own_auc = comparison.auc
    rows = []
    for info in comparison.runs:
        own = own_auc[(own_auc["heading"] == info.heading) & (own_auc["class"] != MEAN)].set_index("class")["auc"]
        for table in runs.read_external_aucs(info.run_dir):
            other = table[table["class"] != MEAN].set_index("class")["auc"]
            classes = [c for c in other.index if pd.notna(other[c]) and pd.notna(own.get(c))]
            if not classes:
                continue
            rows.append(
                {
                    "heading": info.heading,
                    "arch": info.arch,
                    "label": info.label,
                    "seed": info.seed,
                    "resolution_px": info.resolution_px,
                    "dataset": table[runs.EXTERNAL_DATASET].iloc[0],
                    "data_root": table[runs.EXTERNAL_ROOT].iloc[0],
                    "n_classes": len(classes),
                    "classes": ", ".join(classes),
                    INTERNAL: float(own[classes].mean()),
                    EXTERNAL: float(other[classes].mean()),
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def external_table(long: pd.DataFrame) -> tables.Table:
    """Per other data set and run (by resolution): the classes, internal and external mean AUC and their difference."""
    rows = []
    for _, r in long.sort_values(["dataset", "data_root", "arch", "resolution_px", "seed"], kind="stable").iterrows():
        rows.append(
            [
                r["heading"],
                f"{r['dataset']} ({Path(r['data_root']).name})",
                f"{r['n_classes']}: {r['classes']}",
                f"{r[INTERNAL]:.3f}",
                f"{r[EXTERNAL]:.3f}",
                f"{r[EXTERNAL] - r[INTERNAL]:+.3f}",
            ]
        )
    return tables.Table(
        ["Run", "Data set", "Classes", "Internal mean AUC", "External mean AUC", "External − internal"], rows
    )


def plot_external(long: pd.DataFrame, out_stem: Path) -> list[Path]:
    """Mean AUC against resolution, one panel per other data root, internal (own test part) and external lines per
    architecture (and label); several seeds as mean with a band. Writes `<out_stem>.png` and `.svg`."""
    frames = []
    for side in (INTERNAL, EXTERNAL):
        series = [
            f"{display_name(a)}{' ' + lab if isinstance(lab, str) and lab else ''}: {side}"
            for a, lab in zip(long["arch"], long["label"])
        ]
        panel = [f"{d} ({Path(root).name})" for d, root in zip(long["dataset"], long["data_root"])]
        frames.append(
            pd.DataFrame(
                {
                    "class": panel,
                    "series": series,
                    "resolution_px": long["resolution_px"],
                    "seed": long["seed"],
                    "auc": long[side],
                }
            )
        )
    return plots.plot_vs_resolution(
        pd.concat(frames, ignore_index=True),
        out_stem,
        "auc",
        None,
        None,
        "mean AUC, shared classes",
        series="series",
        shared_y=True,
    )
