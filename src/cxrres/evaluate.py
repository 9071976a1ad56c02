"""Test-set evaluation of runs: per-class AUC with DeLong intervals, and comparisons between runs.

`evaluate_run` writes `auc.csv` into a run directory. `compare_runs` aligns several runs on their common test
images and computes the AUC table (best per row), paired DeLong tests per class (Holm-adjusted within each pair of
runs) and paired patient-bootstrap tests of the mean AUC. Formatting lives in `cxrres.tables`, figures in
`cxrres.plots`.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres import metrics, plots, runs, tables
from cxrres.runs import write_csv_atomic
from cxrres.data.metadata import patient_from_name
from cxrres.errors import CxrresError
from cxrres.parallel import write_text_atomic

AUC_FILE = "auc.csv"
MEAN = "mean"
N_BOOT = 1000


def patient_groups(images: list[str]) -> tuple[np.ndarray, str]:
    """Patient id of each image for the bootstrap (from NIH-style names), else one group per image; and which."""
    ids = [patient_from_name(name) for name in images]
    if all(i is not None for i in ids):
        return np.asarray(ids), "patient"
    return np.arange(len(images)), "image"


def auc_table(predictions: runs.Predictions, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per class (n_pos, n_neg, AUC and DeLong interval, note) and a `mean` row (patient-bootstrap interval)."""
    rows = []
    for c, name in enumerate(predictions.classes):
        y, s = predictions.labels[:, c], predictions.scores[:, c]
        reason = metrics.undefined_reason(y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
            value, low, high = metrics.delong_ci(y, s, level)
        rows.append({"class": name, "n_pos": int(y.sum()), "n_neg": int(len(y) - y.sum()), "auc": value,
                     "ci_low": low, "ci_high": high, "note": f"undefined: {reason}" if reason else ""})
    table = pd.DataFrame(rows)
    defined = table["note"] == ""
    if not defined.any():
        raise CxrresError("no class has positive and negative test images; AUC is undefined for all")
    groups, unit = patient_groups(predictions.images)
    if defined.sum() > 1 or len(predictions.classes) > 1:
        point, low, high = metrics.bootstrap_mean_auc(predictions.labels, predictions.scores, groups, n_boot, seed, level)
    else:
        point, low, high = table.loc[defined, ["auc", "ci_low", "ci_high"]].iloc[0]
    note = f"mean of {int(defined.sum())} classes; {n_boot} bootstrap replicates by {unit}"
    mean_row = {"class": MEAN, "n_pos": np.nan, "n_neg": np.nan, "auc": point, "ci_low": low, "ci_high": high, "note": note}
    return pd.concat([table, pd.DataFrame([mean_row])], ignore_index=True)


def evaluate_run(run_dir: str | Path, level: float = 0.95, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Read the run's predictions, write `auc.csv` into the run directory, return the table."""
    table = auc_table(runs.read_predictions(run_dir), level, n_boot)
    write_csv_atomic(Path(run_dir) / AUC_FILE, table)
    return table


def table_as_json(table: pd.DataFrame) -> dict:
    """{"auc": {class: {"auc", "ci_low", "ci_high"}, ..., "mean": {...}}} with NaN as null."""
    def number(x: float) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)

    return {"auc": {row["class"]: {k: number(row[k]) for k in ("auc", "ci_low", "ci_high")} for _, row in table.iterrows()}}


# --- comparing runs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run in a comparison: its directory, heading, resolution, arch, label and predictions."""

    run_dir: Path
    heading: str
    resolution_px: int
    arch: str
    label: str | None
    predictions: runs.Predictions


ARCH_NAMES: dict[str, str] = {"densenet121": "DenseNet-121", "resnet34": "ResNet-34"}


def load_runs(run_dirs: list[str | Path]) -> list[RunInfo]:
    """Runs with headings `<arch> <R> px` (plus seed or label where needed to tell them apart), sorted by resolution."""
    loaded = []
    for run_dir in run_dirs:
        settings = runs.read_config(run_dir)["settings"]
        loaded.append((Path(run_dir), settings, runs.read_predictions(run_dir)))
    loaded.sort(key=lambda item: (item[1]["arch"], item[1]["resolution_px"], item[1].get("label") or "", item[1]["seed"]))
    base = [f"{ARCH_NAMES.get(s['arch'], s['arch'])} {s['resolution_px']} px" + (f" {s['label']}" if s.get("label") else "")
            for _, s, _ in loaded]
    headings = [b + (f" seed {s['seed']}" if base.count(b) > 1 else "") for b, (_, s, _) in zip(base, loaded)]
    headings = [h + (f" ({d.name})" if headings.count(h) > 1 else "") for h, (d, _, _) in zip(headings, loaded)]
    if len(set(headings)) < len(headings):
        raise CxrresError(f"the same run is listed twice: {', '.join(sorted({h for h in headings if headings.count(h) > 1}))}")
    return [RunInfo(d, h, int(s["resolution_px"]), s["arch"], s.get("label"), p) for h, (d, s, p) in zip(headings, loaded)]


def align(infos: list[RunInfo]) -> tuple[list[str], list[str], np.ndarray, dict[str, np.ndarray]]:
    """(images, classes, labels (N, C), scores per heading (N, C) with NaN where a run lacks a class).

    Refuses runs scored on different test images or with different labels for the same image and class.
    """
    reference = sorted(infos[0].predictions.images)
    for info in infos[1:]:
        images = sorted(info.predictions.images)
        if images != reference:
            common = len(set(images) & set(reference))
            raise CxrresError(f"runs scored on different test images: {infos[0].run_dir} has {len(reference):,}, "
                              f"{info.run_dir} has {len(images):,}, {common:,} in common")
    classes = list(dict.fromkeys(c for info in infos for c in info.predictions.classes))
    labels = np.full((len(reference), len(classes)), -1, np.int16)
    scores: dict[str, np.ndarray] = {}
    for info in infos:
        p = info.predictions
        order = np.argsort(np.asarray(p.images))
        own = np.full((len(reference), len(classes)), np.nan)
        for j, name in enumerate(p.classes):
            c = classes.index(name)
            column = p.labels[order, j].astype(np.int16)
            if ((labels[:, c] >= 0) & (labels[:, c] != column)).any():
                raise CxrresError(f"{info.run_dir}: labels of {name} differ from another run's on the same images")
            labels[:, c] = column
            own[:, c] = p.scores[order, j]
        scores[info.heading] = own
    return reference, classes, labels.astype(np.uint8), scores


@dataclass
class Comparison:
    """Everything `cxrres compare` reports."""

    runs: list[RunInfo]
    auc: pd.DataFrame  # long: heading, resolution_px, arch, class, auc, ci_low, ci_high
    delong: pd.DataFrame  # run_a, run_b, class, auc_a, auc_b, z, p, p_holm
    bootstrap: pd.DataFrame  # run_a, run_b, classes, mean_a, mean_b (over common classes), difference, ci_low, ci_high, p
    n_images: int
    n_boot: int
    localization: pd.DataFrame | None = None  # heading, resolution_px, arch, class, n, precision, accuracy, pointing


LOCALIZATION_FILE = "localization.csv"


def localization_long(infos: list[RunInfo]) -> pd.DataFrame | None:
    """The runs' localization.csv tables in long form, when every run has one (else None)."""
    paths = [info.run_dir / LOCALIZATION_FILE for info in infos]
    if not all(p.is_file() for p in paths):
        return None
    frames = [pd.read_csv(p).assign(heading=i.heading, resolution_px=i.resolution_px, arch=i.arch) for p, i in zip(paths, infos)]
    return pd.concat(frames, ignore_index=True)


def compare_runs(run_dirs: list[str | Path], level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """AUC table, per-class paired DeLong tests (Holm within each pair) and bootstrap tests of the mean AUC."""
    if len(run_dirs) < 1:
        raise CxrresError("give at least one run directory")
    infos = load_runs(run_dirs)
    images, classes, labels, scores = align(infos)
    defined = np.array([metrics.undefined_reason(labels[:, c]) is None for c in range(len(classes))])
    groups, _ = patient_groups(images)
    weights = metrics.patient_weights(groups, n_boot, seed)
    rows, replicates = [], {}
    for info in infos:
        s = scores[info.heading]
        own = defined & ~np.isnan(s).any(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
            for c, name in enumerate(classes):
                value = metrics.delong_ci(labels[:, c], s[:, c], level) if not np.isnan(s[:, c]).any() else (math.nan,) * 3
                rows.append({"heading": info.heading, "resolution_px": info.resolution_px, "arch": info.arch,
                             "class": name, "auc": value[0], "ci_low": value[1], "ci_high": value[2]})
        replicates[info.heading] = metrics.bootstrap_class_replicates(labels, np.nan_to_num(s), weights, own)
        point = float(np.mean([metrics.auc(labels[:, c], s[:, c]) for c in np.flatnonzero(own)]))
        low, high = metrics.percentile_interval(metrics.replicate_means(replicates[info.heading], own), level)
        rows.append({"heading": info.heading, "resolution_px": info.resolution_px, "arch": info.arch,
                     "class": MEAN, "auc": point, "ci_low": low, "ci_high": high})
    auc = pd.DataFrame(rows)
    delong_rows, boot_rows = [], []
    for a, b in itertools.combinations(infos, 2):
        sa, sb = scores[a.heading], scores[b.heading]
        pair = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
            for c, name in enumerate(classes):
                if not defined[c] or np.isnan(sa[:, c]).any() or np.isnan(sb[:, c]).any():
                    continue
                auc_a, auc_b, z, p = metrics.delong_paired(labels[:, c], sa[:, c], sb[:, c])
                pair.append({"run_a": a.heading, "run_b": b.heading, "class": name, "auc_a": auc_a, "auc_b": auc_b,
                             "z": z, "p": p})
        adjusted = metrics.holm(np.array([r["p"] for r in pair]))
        for r, q in zip(pair, adjusted):
            r["p_holm"] = q
        delong_rows += pair
        common = defined & ~np.isnan(sa).any(axis=0) & ~np.isnan(sb).any(axis=0)
        if not common.any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
            mean_a, mean_b = (float(np.mean([metrics.auc(labels[:, c], s[:, c]) for c in np.flatnonzero(common)])) for s in (sa, sb))
        d = metrics.replicate_means(replicates[a.heading], common) - metrics.replicate_means(replicates[b.heading], common)
        low, high = metrics.percentile_interval(d, level)
        boot_rows.append({"run_a": a.heading, "run_b": b.heading, "classes": int(common.sum()), "mean_a": mean_a,
                          "mean_b": mean_b, "difference": mean_a - mean_b, "ci_low": low, "ci_high": high,
                          "p": metrics.paired_bootstrap_p(d)})
    return Comparison(infos, auc, pd.DataFrame(delong_rows), pd.DataFrame(boot_rows), len(images), n_boot,
                      localization_long(infos))


def _p(value: float) -> str:
    return "–" if value is None or math.isnan(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def reference_run(comparison: Comparison) -> str:
    """Heading of the run the others are tested against: the highest resolution."""
    return max(comparison.runs, key=lambda r: r.resolution_px).heading


def bootstrap_table(comparison: Comparison, reference: str | None = None) -> tables.Table:
    """Paired bootstrap tests of the mean AUC (all pairs, or those involving `reference`)."""
    rows = []
    for _, r in comparison.bootstrap.iterrows():
        if reference is None or reference in (r.run_a, r.run_b):
            rows.append([r.run_a, r.run_b, f"{r.mean_a:.3f}", f"{r.mean_b:.3f}",
                         f"{r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]", _p(r.p)])
    return tables.Table(["Run A", "Run B", "Mean A", "Mean B", "A − B [95% CI]", "p"], rows)


def delong_table(comparison: Comparison, reference: str) -> tables.Table:
    """Holm-adjusted per-class DeLong p of every run against `reference` (rows: classes)."""
    d = comparison.delong
    vs = d[(d["run_a"] == reference) | (d["run_b"] == reference)] if len(d) else d
    if not len(vs):
        return tables.Table(["Class"], [])
    vs = vs.assign(other=np.where(vs["run_a"] == reference, vs["run_b"], vs["run_a"]))
    others = list(dict.fromkeys(vs["other"]))
    rows = [[name] + [_p(vs[(vs["class"] == name) & (vs["other"] == o)]["p_holm"].iloc[0]) for o in others]
            for name in dict.fromkeys(vs["class"])]
    return tables.Table(["Class", *others], rows)


LOCALIZATION_TITLES: dict[str, str] = {
    "accuracy": "Localization accuracy (share of boxes hit at IoU ≥ 0.1)",
    "precision": "Localization precision (true positives per detection)",
    "pointing": "Pointing accuracy (share of boxes that contain the map's maximum; not in the paper's protocol)",
}


def localization_metrics(comparison: Comparison) -> list[str]:
    """The LOCALIZATION_TITLES metrics that every run's localization.csv has (older runs lack `pointing`)."""
    table = comparison.localization
    return [] if table is None else [m for m in LOCALIZATION_TITLES if m in table.columns and table[m].notna().all()]


def comparison_markdown(comparison: Comparison) -> str:
    """compare.md: the AUC table, the bootstrap tests of the mean, per-class DeLong tests against the reference
    (the highest-resolution run), and the localization tables when present."""
    reference = reference_run(comparison)
    out = [f"# Comparison of {len(comparison.runs)} runs on {comparison.n_images:,} test images\n",
           "## Test AUC\n", "95% DeLong intervals per class; the mean over classes with a patient-bootstrap interval "
           f"({comparison.n_boot} replicates). Best per row in bold.\n", tables.markdown_table(comparison.auc)]
    if len(comparison.bootstrap):
        out += ["\n## Mean AUC, paired differences\n", "Paired patient bootstrap over the classes both runs have.\n",
                bootstrap_table(comparison).to_markdown(),
                f"\n## Per-class DeLong tests against {reference}\n", "Two-sided p, Holm-adjusted over the classes of each pair.\n",
                delong_table(comparison, reference).to_markdown()]
    for metric in localization_metrics(comparison):
        out += [f"\n## {LOCALIZATION_TITLES[metric]}\n", "Classes by mean box size, smallest first. Best per row in bold.\n",
                tables.markdown_table(comparison.localization, metric, None, None)]
    return "\n".join(out) + "\n"


def write_comparison(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """Write the comparison's tables (Markdown, CSV, LaTeX), tests (CSV) and the AUC-vs-resolution figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("compare.md", comparison_markdown(comparison)), ("auc_table.md", tables.markdown_table(comparison.auc)),
                       ("auc_table.tex", tables.latex_table(comparison.auc))):
        write_text_atomic(out / name, text)
        written.append(out / name)
    for name, frame in (("auc_table.csv", tables.csv_table(comparison.auc)), ("auc_long.csv", comparison.auc),
                        ("delong_tests.csv", comparison.delong), ("bootstrap_tests.csv", comparison.bootstrap)):
        write_csv_atomic(out / name, frame)
        written.append(out / name)
    written += plots.plot_vs_resolution(comparison.auc, out / "auc_vs_resolution")
    for metric in localization_metrics(comparison):
        write_csv_atomic(out / f"localization_{metric}.csv", tables.csv_table(comparison.localization, metric, None, None))
        written.append(out / f"localization_{metric}.csv")
        written += plots.plot_vs_resolution(comparison.localization, out / f"localization_{metric}_vs_resolution",
                                            metric, None, None, f"localization {metric}", ylim=(-0.03, 1.03))
    return written
