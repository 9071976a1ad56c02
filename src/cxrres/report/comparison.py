"""Rendering a comparison: Markdown, CSV and LaTeX tables, the paired-test tables, and the figures against resolution."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cxrres.compare import Comparison
from cxrres.parallel import write_text_atomic
from cxrres.report import plots, tables
from cxrres.runs import write_csv_atomic


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
