"""Rendering a comparison: Markdown, CSV and LaTeX tables (per run, mean ± sd over seeds, seed ensembles), the paired
tests per scope, the best resolution per class, and the figures against resolution."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from cxrres.evaluation import bootstrap, metrics
from cxrres.evaluation.compare import ENSEMBLE, SINGLE, Comparison, summarise_seeds
from cxrres.report import plots, tables
from cxrres.report.reference import PublishedReference, published_long
from cxrres.runs import write_csv_atomic
from cxrres.util.markdown import md_prose
from cxrres.util.parallel import write_text_atomic

#: The footnote of a per-class DeLong table with flagged classes.
FEW_DELONG_NOTE = (
    tables.FEW_NOTE + " Their DeLong p is not shown and is left out of Holm's adjustment (delong_tests.csv keeps it)."
)


def _p(value: float) -> str:
    """A p-value as the tables print it: 3 decimals, '<0.001' below that, '–' when there is none."""
    return "–" if value is None or math.isnan(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def bootstrap_p_text(value: float, n_replicates: int) -> str:
    """A bootstrap p as the tables print it: at its floor 2/(B + 1) (no replicate on the other side) '≤0.002' for
    B = 1,000, since the estimate cannot go lower; else as `_p`."""
    if value is None or math.isnan(value):
        return "–"
    floor = bootstrap.bootstrap_p_floor(n_replicates)
    return f"≤{floor:.2g}" if value <= floor * (1 + 1e-9) else _p(value)


def few_classes(comparison: Comparison) -> set[str]:
    """The classes with fewer than `metrics.MIN_POSITIVES` positive test images (kept labels)."""
    counts = comparison.test_labels
    if not len(counts):
        return set()
    return {str(r["class"]) for _, r in counts.iterrows() if metrics.few_positives(r["n_pos"])}


def scope_title(scope: str) -> str:
    """How a scope of paired tests is labelled: 'single runs', 'seed 0 runs', 'seed ensembles (mean probability)'."""
    if scope == SINGLE:
        return "single runs"
    if scope == ENSEMBLE:
        return "seed ensembles (mean of the seeds' probabilities)"
    return f"{scope} runs"


def scope_list(comparison: Comparison) -> list[str]:
    """The scopes of the paired tests, the report's main scope first."""
    found = list(dict.fromkeys(comparison.bootstrap["scope"])) if len(comparison.bootstrap) else []
    return sorted(found, key=lambda s: s != comparison.main_scope)


def reference_run(comparison: Comparison, scope: str | None = None) -> str:
    """Heading of the run the others are tested against: the highest resolution (within `scope`, default the main
    one)."""
    scope = scope or comparison.main_scope
    if scope == ENSEMBLE and len(comparison.ensemble_auc):
        frame = comparison.ensemble_auc
    elif scope.startswith("seed "):
        frame = comparison.auc[comparison.auc["seed"] == int(scope.split()[1])]
    else:
        frame = comparison.auc
    frame = frame.drop_duplicates("heading")
    return str(frame.loc[frame["resolution_px"].idxmax(), "heading"])


def bootstrap_table(comparison: Comparison, reference: str | None = None, scope: str | None = None) -> tables.Table:
    """Paired bootstrap tests of the mean AUC (all pairs, or those involving `reference`; of one `scope` if given)."""
    rows = []
    for _, r in comparison.bootstrap.iterrows():
        if (reference is None or reference in (r.run_a, r.run_b)) and (scope is None or r.scope == scope):
            n = r.get("n_replicates", comparison.n_boot)
            rows.append(
                [
                    r.run_a,
                    r.run_b,
                    f"{r.mean_a:.3f}",
                    f"{r.mean_b:.3f}",
                    f"{r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]",
                    bootstrap_p_text(r.p, n),
                ]
            )
    return tables.Table(["Run A", "Run B", "Mean A", "Mean B", "A − B [95% CI]", "p"], rows)


def delong_table(comparison: Comparison, reference: str, scope: str | None = None) -> tables.Table:
    """Holm-adjusted per-class DeLong p of every run against `reference` (rows: classes), of one `scope` if given;
    classes with fewer than MIN_POSITIVES positives marked, their p shown as 'n/a (<5 pos)', with a footnote."""
    d = comparison.delong
    if len(d) and scope is not None:
        d = d[d["scope"] == scope]
    vs = d[(d["run_a"] == reference) | (d["run_b"] == reference)] if len(d) else d
    if not len(vs):
        return tables.Table(["Class"], [])
    vs = vs.assign(other=np.where(vs["run_a"] == reference, vs["run_b"], vs["run_a"]))
    others = list(dict.fromkeys(vs["other"]))
    few = (
        set(vs.loc[vs["few_positives"].astype(bool), "class"])
        if "few_positives" in vs.columns
        else few_classes(comparison) & set(vs["class"])
    )
    rows = [
        [tables.marked(name, few)]
        + [
            tables.FEW_P if name in few else _p(vs[(vs["class"] == name) & (vs["other"] == o)]["p_holm"].iloc[0])
            for o in others
        ]
        for name in dict.fromkeys(vs["class"])
    ]
    return tables.Table(["Class", *others], rows, notes=[FEW_DELONG_NOTE] if few else [])


def best_scope(comparison: Comparison) -> pd.DataFrame:
    """The best-resolution rows the report shows: of the seed ensembles when there are several seeds, else the runs."""
    best = comparison.best
    return best[best["scope"] == comparison.main_scope] if len(best) else best


def best_resolution_table(best: pd.DataFrame, few: set[str] | frozenset[str] = frozenset()) -> tables.Table:
    """Rows: classes (per series when several); the resolution with the highest AUC, the share of bootstrap replicates
    in which it is best ('256 px best in 93 % of 1,000 replicates'), and each resolution's share (%); the classes in
    `few` (fewer than MIN_POSITIVES positives) marked, with a footnote."""
    several = best["series"].nunique() > 1 if len(best) else False
    resolutions = sorted(best["resolution_px"].unique()) if len(best) else []
    rows, bold = [], set()
    for i, ((series, name), part) in enumerate(best.groupby(["series", "class"], sort=False)):
        top = part[part["best"]].iloc[0]
        share = "–" if np.isnan(top["share"]) else f"{100 * top['share']:.0f} %"
        cells = [
            tables.marked(
                f"{series} {name}" if several else str(name), {f"{series} {c}" if several else c for c in few}
            ),
            f"{top['resolution_px']} px",
            f"{top['resolution_px']} px best in {share} of {int(top['n_replicates']):,} replicates",
        ]
        for j, r in enumerate(resolutions):
            hit = part[part["resolution_px"] == r]
            value = hit["share"].iloc[0] if len(hit) else np.nan
            cells.append("–" if np.isnan(value) else f"{100 * value:.0f} %")
            if len(hit) and hit["best"].iloc[0]:
                bold.add((i, 3 + j))
        rows.append(cells)
    header = ["Class", "Highest AUC", "Share of replicates", *(f"{r} px" for r in resolutions)]
    shown = few & set(best["class"]) if len(best) else set()
    return tables.Table(header, rows, bold, [tables.FEW_NOTE] if shown else [])


def test_labels_table(comparison: Comparison) -> tables.Table:
    """Per class: the test images labelled positive, negative and masked out of its AUC (label -1)."""
    rows = [
        [str(r["class"]), f"{r['n_pos']:,}", f"{r['n_neg']:,}", f"{r['n_masked']:,}"]
        for _, r in comparison.test_labels.iterrows()
    ]
    return tables.Table(["Class", "Positive", "Negative", "Masked out"], rows)


def auc_tables(comparison: Comparison) -> list[tuple[str, tables.Table]]:
    """(caption, table) of the test AUC: per run with DeLong intervals; with several seeds mean ± sd over seeds first
    and the seed ensembles with their DeLong intervals."""
    level = f"{100 * comparison.level:g}%"
    few = few_classes(comparison)
    per_run = (
        f"Per run: {level} DeLong intervals per class; the mean over classes with a {comparison.unit}-bootstrap "
        f"interval ({comparison.n_boot} replicates). Best per row in bold.",
        tables.comparison_table(comparison.auc, few=few),
    )
    if not comparison.several_seeds:
        return [per_run]
    return [
        (
            "Mean ± sd over seeds (n = seeds; sd with ddof 1) of the per-run test AUC; the mean row is the mean over "
            "classes. Best mean per row in bold.",
            tables.seed_table(summarise_seeds(comparison.auc), few=few),
        ),
        (
            f"Seed ensembles (mean of the seeds' probabilities): {level} DeLong intervals; mean over classes with a "
            f"{comparison.unit}-bootstrap interval.",
            tables.comparison_table(comparison.ensemble_auc, few=few),
        ),
        per_run,
    ]


LOCALIZATION_TITLES: dict[str, str] = {
    "accuracy": "Localization accuracy (share of boxes hit at IoU ≥ 0.1)",
    "precision": "Localization precision (true positives per detection)",
    "pointing": "Pointing accuracy (share of boxes that contain the map's maximum; not in the paper's protocol)",
}


def localization_metrics(comparison: Comparison) -> list[str]:
    """The LOCALIZATION_TITLES metrics that every run's localization.csv has (older runs lack `pointing`)."""
    table = comparison.localization
    return [] if table is None else [m for m in LOCALIZATION_TITLES if m in table.columns and table[m].notna().all()]


def localization_table(comparison: Comparison, metric: str) -> tables.Table:
    """One localization metric: per run, or mean ± sd over seeds when there are several."""
    if comparison.several_seeds:
        return tables.seed_table(summarise_seeds(comparison.localization, metric))
    return tables.comparison_table(comparison.localization, metric, None, None)


def comparison_markdown(comparison: Comparison) -> str:
    """compare.md: the AUC tables, the best resolution per class, the bootstrap tests of the mean and per-class DeLong
    tests against the highest resolution (per scope), and the localization tables when present."""
    out = [f"# Comparison of {len(comparison.runs)} runs on {comparison.n_images:,} test images\n", "## Test AUC\n"]
    if comparison.test_labels["n_masked"].sum():
        out += [
            "Test images per class; masked-out labels (uncertain) are left out of their class.\n",
            test_labels_table(comparison).to_markdown(),
        ]
    for caption, table in auc_tables(comparison):
        out += [md_prose(caption) + "\n", table.to_markdown()]
    best = best_scope(comparison)
    if len(best):
        out += [
            "\n## Best resolution per class\n",
            f"On the {md_prose(scope_title(comparison.main_scope))}; shares of "
            f"{comparison.n_boot} paired {comparison.unit}-bootstrap replicates (all scopes in best_resolution.csv).\n",
            best_resolution_table(best, few_classes(comparison)).to_markdown(),
        ]
    for scope in scope_list(comparison):
        reference = reference_run(comparison, scope)
        out += [
            f"\n## Mean AUC, paired differences: {md_prose(scope_title(scope))}\n",
            f"Paired {comparison.unit} bootstrap over the classes both runs have.\n",
            bootstrap_table(comparison, scope=scope).to_markdown(),
            f"\n## Per-class DeLong tests against {md_prose(reference)}\n",
            "Two-sided p, Holm-adjusted over the classes of each pair "
            f"(those with at least {metrics.MIN_POSITIVES} positives).\n",
            delong_table(comparison, reference, scope).to_markdown(),
        ]
    for metric in localization_metrics(comparison):
        out += [
            f"\n## {LOCALIZATION_TITLES[metric]}\n",
            "Classes by mean box size, smallest first. Best per row in bold.\n",
            localization_table(comparison, metric).to_markdown(),
        ]
    return "\n".join(out) + "\n"


def write_figures(
    comparison: Comparison, out: Path, reference: PublishedReference | None = None, shared_y: bool = True
) -> dict[str, Path]:
    """The AUC, localization and best-resolution figures (PNG + SVG) in `out`; returns name -> PNG path.

    `shared_y`: the per-class panels share one y range (else each panel scales itself). Published values (when
    `reference` applies) are drawn dashed."""
    published = reference if reference is not None and reference.applies else None
    figures = {
        "auc_vs_resolution": plots.plot_vs_resolution(
            comparison.auc,
            out / "auc_vs_resolution",
            shared_y=shared_y,
            reference=published and published.metric("auc"),
        )[0]
    }
    for metric in localization_metrics(comparison):
        name = f"localization_{metric}_vs_resolution"
        figures[name] = plots.plot_vs_resolution(
            comparison.localization,
            out / name,
            metric,
            None,
            None,
            f"localization {metric}",
            ylim=(-0.03, 1.03),
            reference=published and published.metric(metric),
        )[0]
    best = best_scope(comparison)
    if len(best):
        figures["best_resolution"] = plots.plot_best_resolution(best, out / "best_resolution")[0]
    return figures


def comparison_files(
    comparison: Comparison, reference: PublishedReference | None = None
) -> tuple[dict[str, str], dict[str, pd.DataFrame]]:
    """The comparison's files by name: texts (Markdown, LaTeX) and tables (CSV). One home for what `write_comparison`
    writes and what `cxrres verify` recomputes."""
    few = few_classes(comparison)
    texts = {
        "compare.md": comparison_markdown(comparison),
        "auc_table.md": tables.markdown_table(comparison.auc, few=few),
        "auc_table.tex": tables.latex_table(comparison.auc, few=few),
    }
    frames = [
        ("auc_table.csv", tables.csv_table(comparison.auc, few=few)),
        ("auc_long.csv", comparison.auc),
        ("delong_tests.csv", comparison.delong),
        ("bootstrap_tests.csv", comparison.bootstrap),
        ("best_resolution.csv", comparison.best),
        ("test_labels.csv", comparison.test_labels),
    ]
    if len(comparison.calibration):
        frames.append(("calibration_long.csv", comparison.calibration))
    if len(comparison.test_resolution):
        frames.append(("test_resolution_long.csv", comparison.test_resolution))
    if comparison.several_seeds:
        frames += [
            ("auc_seeds.csv", summarise_seeds(comparison.auc)),
            ("auc_ensemble_long.csv", comparison.ensemble_auc),
            ("auc_ensemble_table.csv", tables.csv_table(comparison.ensemble_auc, few=few)),
        ]
    for metric in localization_metrics(comparison):
        frames.append((f"localization_{metric}.csv", tables.csv_table(comparison.localization, metric, None, None)))
        if comparison.several_seeds:
            frames.append((f"localization_{metric}_seeds.csv", summarise_seeds(comparison.localization, metric)))
    if reference is not None and reference.applies:
        frames.append(("published_comparison.csv", published_long(comparison, reference)))
    return texts, dict(frames)


def write_comparison(
    comparison: Comparison,
    out_dir: str | Path,
    reference: PublishedReference | None = None,
    shared_y: bool = True,
) -> list[Path]:
    """Write the comparison's tables (Markdown, CSV, LaTeX), tests, best resolutions and test labels per class (CSV:
    positives, negatives, masked out), mean ± sd over seeds with every seed's values (CSV), the published comparison
    when `reference` applies, and the figures (PNG + SVG, each named by its figure)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    texts, frames = comparison_files(comparison, reference)
    for name, text in texts.items():
        write_text_atomic(out / name, text)
        written.append(out / name)
    for name, frame in frames.items():
        write_csv_atomic(out / name, frame)
        written.append(out / name)
    for png in write_figures(comparison, out, reference, shared_y).values():
        written += [png, png.with_suffix(".svg")]
    return written
