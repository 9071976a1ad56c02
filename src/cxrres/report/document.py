"""`cxrres report STUDY_DIR`: report.html (self-contained: images inlined) and report.md (+ report_files/).

Everything shown is recomputed from the run directories and the study's comparison: the data set summary (any data
set: NIH's classes and boxes, or another data set's positives and uncertain labels per part), the
AUC table with DeLong intervals (and mean ± sd over seeds, and the seed ensembles, when there are several seeds),
the best resolution per class from paired bootstrap replicates, internal against external AUC by resolution (runs
scored on other data sets), paired tests against the highest resolution (per seed and between seed ensembles), the
published study's figures beside ours (NIH ChestX-ray14 with the CheXNet split only), localization tables, figures of
AUC / localization against resolution and heat-map grids for the smallest and the largest finding (where the runs were
localized), training curves, and what each run cost.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from cxrres import __version__, runs  # noqa: E402
from cxrres.config import TrainConfig  # noqa: E402
from cxrres.data import DataRoot  # noqa: E402
from cxrres.data.datasets import DatasetTable  # noqa: E402
from cxrres.data.datasets.summary import describe_boxes, describe_table  # noqa: E402
from cxrres.data.source import DataSource  # noqa: E402
from cxrres.data.split_summary import describe_data  # noqa: E402
from cxrres.data.splits import PARTS  # noqa: E402
from cxrres.errors import CxrresError  # noqa: E402
from cxrres.evaluation.compare import SINGLE, Comparison, compare_runs, seed_groups, summarise_seeds  # noqa: E402
from cxrres.evaluation.seeds import format_mean_sd  # noqa: E402
from cxrres.inference.rundata import run_source  # noqa: E402
from cxrres.report import external, plots, tables  # noqa: E402
from cxrres.report.calibration import sections as calibration_sections  # noqa: E402
from cxrres.report.comparison import (
    LOCALIZATION_TITLES,
    auc_tables,
    best_resolution_table,
    best_scope,  # noqa: E402
    bootstrap_table,
    delong_table,
    few_classes,
    localization_metrics,
    localization_table,
    reference_run,
    scope_list,
    scope_title,
    test_labels_table,
    write_comparison,
)
from cxrres.report.reference import (
    METRIC_TITLES,
    PublishedReference,
    detect_reference,
    published_long,  # noqa: E402
    published_table,
)
from cxrres.report.render import to_html, to_markdown
from cxrres.report.run_figures import cost_table, extreme_classes, heatmap_blocks, training_curves
from cxrres.report.tables import Block  # noqa: E402
from cxrres.util.parallel import write_bytes_atomic, write_text_atomic  # noqa: E402


def runs_data(config: TrainConfig, source: DataSource | None = None) -> DataSource:
    """The runs' data (root and table): `source` when it is the runs' data, else read from the run's settings (metadata
    only, once per process: `run_source`)."""
    return run_source(config, source=source, resolutions_px=())


def data_blocks(root: DataRoot, table: DatasetTable, uncertain: str) -> list[Block]:
    """The data section: ChestX-ray14's class counts per split part and official boxes of the test part; any other
    data set's `table_blocks`."""
    summary = describe_data(root, table)
    if "dataset" in summary:
        return table_blocks(table, uncertain, summary)
    parts = list(summary["images"])
    rows = [[name] + [f"{counts[p]:,}" for p in parts] for name, counts in summary["classes"].items()]
    rows.append(["images"] + [f"{summary['images'][p]:,}" for p in parts])
    boxes = [
        [name, f"{b['count']:,}", "–" if b["mean_area_px2"] is None else f"{b['mean_area_px2']:,.0f}"]
        for name, b in summary["boxes"].items()
        if b["count"]
    ]
    return [
        Block(text=f"Data root `{root.root}`, split `{summary['split']}`."),
        Block(table=tables.Table(["Class", *parts], rows)),
        Block(text="Official boxes in the test part (mean area in px² at 1024 px):"),
        Block(table=tables.Table(["Class", "Boxes", "Mean area"], boxes)),
    ]


def table_blocks(table: DatasetTable, uncertain: str, summary: dict | None = None) -> list[Block]:
    """A data set other than NIH: positives and uncertain labels per class and part, images and patients per part,
    how the split was made, and its test boxes where it has any; `summary`: its `describe_table` where read already."""
    summary = summary or describe_table(table)
    rows = [
        [name] + [f"{c['positive'][p]:,} / {c['uncertain'][p]:,}" for p in PARTS]
        for name, c in summary["classes"].items()
    ]
    rows += [[what] + [f"{summary[what][p]:,}" for p in PARTS] for what in ("images", "patients")]
    policy = {
        "ignore": "masked out of that class's loss and AUC",
        "zeros": "counted as negative",
        "ones": "counted as positive",
    }.get(uncertain, uncertain)
    notes = " ".join(n.rstrip(".") + "." for n in table.notes)
    blocks = [
        Block(
            text=f"Data root `{table.root}`: data set `{table.dataset}`. {notes} Uncertain labels "
            f"(`uncertain: {uncertain}`): {policy}; blank labels are negative."
        ),
        Block(table=tables.Table(["Class", *(f"{p}: positive / uncertain" for p in PARTS)], rows)),
    ]
    boxes = describe_boxes(table)
    if boxes:
        area = lambda c: "–" if c["mean_area_px"] is None else f"{c['mean_area_px']:,.0f}"  # noqa: E731
        rows = [[name, f"{c['boxes']:,}", f"{c['images']:,}", area(c)] for name, c in boxes["classes"].items()]
        blocks += [
            Block(text="Boxes in the test part (mean area in the images' own px²):"),
            Block(table=tables.Table(["Class", "Boxes", "Images", "Mean area"], rows)),
        ]
    return blocks


def study_reference(comparison: Comparison, source: DataSource | None = None) -> PublishedReference:
    """Whether Wollek et al. 2023 applies to the runs' data (see `report.reference.detect_reference`)."""
    config = runs.read_settings(comparison.runs[0].run_dir)
    if not config.data:
        return PublishedReference(False, "The runs do not record their data root, so no published reference applies.")
    try:
        table = runs_data(config, source).table
    except (CxrresError, OSError, TypeError) as error:
        return PublishedReference(
            False, f"The runs' split could not be read ({error}), so no published reference applies."
        )
    return detect_reference(table, comparison.n_images)


def _cells(comparison: Comparison, long: pd.DataFrame, value: str) -> dict[tuple[str, str], str]:
    """(class, column) -> cell text: the run's value, or mean ± sd over seeds (per group) when there are several."""
    if comparison.several_seeds:
        summary = summarise_seeds(long, value)
        return {
            (r["class"], r["group"]): format_mean_sd(r["mean"], r["sd"], int(r["n"])) for _, r in summary.iterrows()
        }
    return {(r["class"], r["heading"]): "–" if pd.isna(r[value]) else f"{r[value]:.3f}" for _, r in long.iterrows()}


def _with_run_columns(comparison: Comparison, long: pd.DataFrame) -> pd.DataFrame:
    """A per-heading long table (e.g. calibration) with each run's group, seed and arch, as `_cells` needs them."""
    meta = pd.DataFrame(
        [{"heading": i.heading, "group": i.group or i.heading, "seed": i.seed, "arch": i.arch} for i in comparison.runs]
    )
    return long.merge(meta, on="heading", how="inner")


def key_table(comparison: Comparison) -> tables.Table:
    """The smallest and the largest finding (by mean box size) and the mean: AUC, box accuracy and pointing accuracy
    (when the runs have it) and ECE (15 bins) per run, or per group as mean ± sd over seeds (n in the header) when
    there are several."""
    groups = seed_groups(comparison.runs)
    several = comparison.several_seeds
    columns = list(groups) if several else [i.heading for i in comparison.runs]
    header = [f"{g} (n = {len(groups[g])})" if several else g for g in columns]
    rows: list[list[str]] = []
    picks = extreme_classes(comparison)
    auc = _cells(comparison, comparison.auc, "auc")
    for name in [*picks, "mean"]:
        if any((name, c) in auc for c in columns):
            rows.append([f"{name} AUC"] + [auc.get((name, c), "–") for c in columns])
    present = localization_metrics(comparison)
    for metric, what in (("accuracy", "box accuracy"), ("pointing", "pointing")):
        if metric not in present:
            continue
        cells = _cells(comparison, comparison.localization, metric)
        for name in [*picks, "mean"]:
            rows.append([f"{name} {what}"] + [cells.get((name, c), "–") for c in columns])
    if not comparison.calibration.empty:
        ece = _cells(comparison, _with_run_columns(comparison, comparison.calibration), "ece")
        for name in [*picks, "mean"]:
            rows.append([f"{name} ECE"] + [ece.get((name, c), "–") for c in columns])
    return tables.Table(["", *header], rows)


def _figure(figures: dict[str, Path], name: str, caption: str) -> list[Block]:
    """A figure block when `name` was drawn."""
    return [Block(image=figures[name], caption=caption)] if name in figures else []


def auc_caption(comparison: Comparison, reference: PublishedReference, shared_y: bool) -> str:
    """What the AUC-vs-resolution figure shows: bars or seed band, y-axis, published line."""
    what = (
        f"mean over seeds, band: {plots.SEED_BAND}, dots: single seeds"
        if comparison.several_seeds
        else f"error bars: {100 * comparison.level:g}% intervals"
    )
    axis = "one y-axis for all panels" if shared_y else "each panel scales its own y-axis"
    published = f"; dashed: {plots.REFERENCE_LABEL}" if reference.applies else ""
    return f"Test AUC against training resolution ({what}; {axis}{published})"


def published_blocks(comparison: Comparison, reference: PublishedReference) -> list[Block]:
    """The "Against the published study" section: why a reference applies or not, and one table per metric."""
    blocks = [Block(text=reference.reason)]
    if not reference.applies:
        return blocks
    long = published_long(comparison, reference)
    seeds_note = " (mean ± sd over seeds; k/n: seeds whose interval contains it)" if comparison.several_seeds else ""
    blocks.append(
        Block(
            text=f"DenseNet-121 runs. Cells: ours{seeds_note} / published (ours − published); ✓ / ✗: the "
            f"published AUC lies inside / outside our {100 * comparison.level:g}% DeLong interval. "
            "Localization has no interval. All rows in comparison/published_comparison.csv."
        )
    )
    for metric, title in METRIC_TITLES.items():
        part = long[long["metric"] == metric] if len(long) else long
        if len(part):
            blocks += [Block(text=title + ":"), Block(table=published_table(part))]
    return blocks


def build_sections(
    study_dir: Path,
    comparison: Comparison,
    files: Path,
    figures: dict[str, Path],
    source: DataSource | None = None,
    shared_y: bool = True,
    reference: PublishedReference | None = None,
) -> list[tuple[str, list[Block]]]:
    """The report's sections, with the comparison's `figures` (name -> PNG, already in `files`; `shared_y`: drawn with
    one y range for all per-class panels); its other figures are drawn into `files`."""
    config = runs.read_settings(comparison.runs[0].run_dir)
    data = runs_data(config, source)
    reference = reference or detect_reference(data.table, comparison.n_images)
    seeds_note = " Several seeds: mean ± sd over seeds (n in the header)." if comparison.several_seeds else ""
    key = (
        "The smallest and the largest finding by mean box size, and the mean over classes: test AUC, localization "
        "accuracy (share of boxes hit at IoU ≥ 0.1) and pointing accuracy (share of boxes that contain the map's "
        "maximum)."
        if comparison.localization is not None
        else "The test AUC, mean over classes (no localization: not "
        "every run has box scores, e.g. the data set has no boxes)."
    )
    sections: list[tuple[str, list[Block]]] = [
        ("Key results", [Block(text=key + seeds_note), Block(table=key_table(comparison))]),
        ("Data", data_blocks(data.root, data.table, config.uncertain)),
    ]
    auc = [Block(text=f"{len(comparison.runs)} runs scored on {comparison.n_images:,} test images.")]
    if comparison.test_labels["n_masked"].sum():
        auc += [
            Block(
                text="Test images per class: a class's AUC, DeLong tests and bootstrap use its positive and "
                "negative images; those whose label is masked out (uncertain) are left out of that class."
            ),
            Block(table=test_labels_table(comparison)),
        ]
    for caption, table in auc_tables(comparison):
        auc += [Block(text=caption), Block(table=table)]
    auc += _figure(figures, "auc_vs_resolution", auc_caption(comparison, reference, shared_y))
    sections.append(("Test AUC", auc))
    elsewhere = external.external_long(comparison)
    if len(elsewhere):
        figure = external.plot_external(elsewhere, files / "external_vs_resolution")[0]
        sections.append(
            (
                external.TITLE,
                [
                    Block(text=external.INTRO),
                    Block(table=external.external_table(elsewhere)),
                    Block(
                        image=figure,
                        caption="Mean AUC over the shared classes against training "
                        "resolution: own test part and the other data set's",
                    ),
                ],
            )
        )
    sections += calibration_sections(comparison, files)
    best = best_scope(comparison)
    if len(best):
        sections.append(
            (
                "Best resolution per class",
                [
                    Block(
                        text=f"On the {scope_title(comparison.main_scope)}: the resolution with the highest test AUC, "
                        f"and the share of {comparison.n_boot:,} paired {comparison.unit}-bootstrap replicates "
                        f"(the same resampled {comparison.unit}s for every resolution) "
                        "in which each resolution has the highest AUC; exact ties share a replicate."
                    ),
                    Block(table=best_resolution_table(best, few_classes(comparison))),
                    *_figure(
                        figures, "best_resolution", "Share of bootstrap replicates in which each resolution is best"
                    ),
                ],
            )
        )
    for scope in scope_list(comparison):
        reference_heading = reference_run(comparison, scope)
        title = f"Paired tests against {reference_heading}" + ("" if scope == SINGLE else f" ({scope_title(scope)})")
        sections.append(
            (
                title,
                [
                    Block(
                        text=f"Between the {scope_title(scope)}. Mean AUC: paired bootstrap over {comparison.unit}s "
                        "(same replicates for both)."
                    ),
                    Block(table=bootstrap_table(comparison, reference_heading, scope)),
                    Block(text="Per class: two-sided DeLong p, Holm-adjusted over the classes of each pair."),
                    Block(table=delong_table(comparison, reference_heading, scope)),
                ],
            )
        )
    sections.append(("Against the published study", published_blocks(comparison, reference)))
    if comparison.localization is not None:
        blocks = []
        for metric in localization_metrics(comparison):
            title = LOCALIZATION_TITLES[metric]
            blocks += [
                Block(text=title + "; classes by mean box size, smallest first." + seeds_note),
                Block(table=localization_table(comparison, metric)),
                *_figure(figures, f"localization_{metric}_vs_resolution", title),
            ]
        sections.append(("Localization", blocks + heatmap_blocks(comparison, files)))
    curves = training_curves(
        [i.run_dir for i in comparison.runs], [i.heading for i in comparison.runs], files / "training_curves.png"
    )
    sections.append(("Training", [Block(image=curves, caption="Training curves"), Block(table=cost_table(comparison))]))
    sections.append(("Use the networks", use_blocks(study_dir)))
    return sections


def use_blocks(study_dir: Path) -> list[Block]:
    """The best run per resolution (highest test mean AUC over seeds) and the commands that export and apply it."""
    from cxrres.deploy.export import best_runs

    try:
        chosen = best_runs(study_dir)
    except CxrresError:
        return [Block(text="No evaluated run in this study directory yet.")]
    rows = [[run.name, f"{pd.read_csv(run / runs.AUC).set_index('class').loc['mean', 'auc']:.3f}"] for run in chosen]
    return [
        Block(
            text=f"`cxrres export {study_dir} --out {study_dir / 'export'}` writes the best run of each resolution "
            "as ONNX (uint8 grey input, probabilities out) with a model card beside it; "
            f"`cxrres predict {chosen[-1]} IMAGES... --out DIR --heatmaps top3` scores new PNG, JPEG or DICOM "
            "files with one of them (thresholds chosen on its validation part)."
        ),
        Block(table=tables.Table(["Best run per resolution", "Test mean AUC"], rows)),
    ]


def copy_figures(written: list[Path], files: Path) -> dict[str, Path]:
    """The figures among the comparison's `written` files (PNG + SVG, named by figure) copied into `files`
    (atomically) instead of drawn again; name -> the copied PNG."""
    out = {}
    for png in (path for path in written if path.suffix == ".png"):
        for path in (png, png.with_suffix(".svg")):
            write_bytes_atomic(files / path.name, path.read_bytes())
        out[png.stem] = files / png.name
    return out


def write_report(
    study_dir: str | Path, comparison: Comparison | None = None, source: DataSource | None = None, shared_y: bool = True
) -> Path:
    """Write the study's comparison/ (with comparison/published_comparison.csv and the figures' dashed line where the
    published study applies), report.html and report.md (comparing the finished runs if `comparison` is not given)."""
    study_dir = Path(study_dir)
    if comparison is None:
        run_dirs = sorted(p for p in (study_dir / runs.STUDY_RUNS).glob("*") if (p / runs.PREDICTIONS).is_file())
        if not run_dirs:
            raise CxrresError(f"{study_dir}: no finished run under {runs.STUDY_RUNS}/; run `cxrres study` first")
        comparison = compare_runs(run_dirs)
    reference = study_reference(comparison, source)
    written = write_comparison(comparison, study_dir / runs.COMPARISON, reference, shared_y)
    files = study_dir / runs.REPORT_FILES
    files.mkdir(exist_ok=True)
    figures = copy_figures(written, files)
    sections = build_sections(study_dir, comparison, files, figures, source, shared_y, reference)
    title = f"cxrres study: {len(comparison.runs)} runs, {time.strftime('%Y-%m-%d %H:%M')} (cxrres {__version__})"
    write_text_atomic(study_dir / runs.REPORT_MD, to_markdown(title, sections, study_dir))
    write_text_atomic(study_dir / runs.REPORT_HTML, to_html(title, sections))
    return study_dir / runs.REPORT_HTML
