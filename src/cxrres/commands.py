"""The body of each `cxrres` command: one call into the library, and what it prints. `cli.py` parses the arguments
and dispatches here; the heavy modules are imported inside each command, so `cxrres --help` starts without torch."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cxrres.errors import CxrresError
from cxrres.runs import CALIBRATION


def describe(args: argparse.Namespace) -> int:
    """Print class counts per split part and the data set's boxes of the test part (`split_summary.describe_data`)."""
    from cxrres.config import data_options
    from cxrres.data import DataRoot
    from cxrres.data.datasets.common import view_keyword
    from cxrres.data.source import read_table
    from cxrres.data.split_summary import describe_data, format_data

    options = data_options(args)
    root = DataRoot.at(args.data)
    table = read_table(root, options)
    # ChestX-ray14 with its frontal views (all of them) as before: its split of record, with its official boxes
    summary = describe_data(root, table, args.uncertain, of_record=view_keyword(options.views) == "frontal")
    print(json.dumps(summary, indent=2) if args.json else format_data(summary))
    return 0


def prepare(args: argparse.Namespace) -> int:
    """Build the per-resolution uint8 caches."""
    from cxrres.config import data_options
    from cxrres.data.cache import prepare_cache
    from cxrres.data.cache_plan import plan_prepare

    options = data_options(args)
    dataset = None if options.dataset == "auto" else options.dataset
    if args.dry_run:
        print(plan_prepare(args.data, args.resolutions, args.cache, dataset, options.skip_bad).to_text())
        return 0
    report = prepare_cache(
        args.data,
        args.resolutions,
        args.cache,
        args.workers,
        options.skip_bad,
        progress=not args.quiet,
        dataset=dataset,
    )
    built = ",".join(map(str, report.built_px)) or "none"
    reused = ",".join(map(str, report.reused_px)) or "none"
    resumed = f", resumed at image {report.resumed_from:,}" if report.resumed_from else ""
    print(
        f"cache {report.cache_dir}: {report.n_images:,} images; built {built} px, reused {reused} px{resumed}; "
        f"{len(report.skipped)} skipped, {len(report.missing):,} missing; {report.seconds:.1f} s"
    )
    for item in report.skipped:
        print(f"  skipped {item['image']}: {item['error']}")
    print("".join(f"  skipped {row}\n" for row in report.skipped_rows), end="")  # bad metadata rows: images not cached
    return 0


def synth(args: argparse.Namespace) -> int:
    """Write a phantom data set in one published layout (NIH by default)."""
    from cxrres.synthetic.layouts import summary_line, synthesize_layout

    counts = synthesize_layout(
        args.layout,
        args.out,
        n_images=args.images,
        n_patients=args.patients,
        size_px=args.size,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
        enrich=args.enrich,
    )
    print(summary_line(args.layout, args.out, counts))
    return 0


def train(args: argparse.Namespace) -> int:
    """Train one run (or resume it, or report that it is finished)."""
    from cxrres.config import config_from_file, merge_settings, settings_from_args
    from cxrres.training.train import train

    config = merge_settings(config_from_file(args.config) if args.config else {}, settings_from_args(args))
    run_dir = train(config)
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0:
        print(f"run {run_dir}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Per-class test AUC with DeLong intervals of one run: on its own test part, against adjudicated labels
    (--reference), or on another data set's test part (--data)."""
    from cxrres.evaluation.evaluate import evaluate_run, format_table, table_as_json

    if getattr(args, "test_resolution", None) and (args.reference or args.data):
        raise CxrresError(
            "--test-resolution scores the run's own test images; it cannot be combined with --reference or --data"
        )
    if args.reference and args.data:
        raise CxrresError("--reference scores the run's own test images; it cannot be combined with --data")
    if args.reference:
        from cxrres.evaluation.adjudicated import evaluate_reference, format_reference_table

        table = evaluate_reference(args.run_dir, args.reference, args.level, args.out)
        written = table.attrs["written"]
        print(
            table.to_json(orient="records")
            if args.json
            else format_reference_table(table) + (f"\nwrote {written}" if written else "")
        )
        return 0
    if args.data:
        from cxrres.config import data_options
        from cxrres.evaluation.external import evaluate_external

        result = evaluate_external(
            args.run_dir,
            args.data,
            data_options(args),
            args.level,
            args.n_boot,
            args.allow_missing,
            progress=not args.json,
            out=args.out,
        )
        print(json.dumps(result.as_json()) if args.json else result.summary())
        return 0
    if getattr(args, "test_resolution", None):
        from cxrres.evaluation import cross_resolution

        resolutions = cross_resolution.parse_test_resolutions(args.test_resolution)
        table = cross_resolution.evaluate_test_resolutions(
            args.run_dir, resolutions, args.level, args.n_boot, args.out, progress=not args.json
        )
        written = table.attrs["written"]
        print(
            table.to_json(orient="records")
            if args.json
            else cross_resolution.format_table(table) + (f"\nwrote {written}" if written else "")
        )
        return 0
    table = evaluate_run(args.run_dir, args.level, args.n_boot, args.out)
    written = table.attrs["written"]
    if args.json:
        print(json.dumps(table_as_json(table)))
    else:
        from cxrres.evaluation.calibration import summary_line

        print(
            format_table(table)
            + "\n"
            + summary_line(table.attrs["calibration"])
            + (f"\nwrote {written} and {written.with_name(CALIBRATION)}" if written else "")
        )
    return 0


def compare(args: argparse.Namespace) -> int:
    """Compare runs on the same test images: AUC table, paired DeLong and bootstrap tests, figure."""
    from cxrres.evaluation.compare import compare_runs
    from cxrres.report.comparison import write_comparison
    from cxrres.report.document import study_reference
    from cxrres.report.tables import markdown_table

    comparison = compare_runs(args.run_dirs, args.level, args.n_boot)
    written = write_comparison(comparison, args.out, study_reference(comparison), shared_y=not args.per_panel_y)
    print(markdown_table(comparison.auc))
    print(f"wrote {len(written)} files to {args.out}: " + ", ".join(p.name for p in written))
    return 0


def localize(args: argparse.Namespace) -> int:
    """Grad-CAM boxes of one run scored against the ground-truth boxes of its test part."""
    from cxrres.localization.localize import localize_run, summary_as_json
    from cxrres.runs import LOCALIZATION, LOCALIZATION_SAMPLES, SKIPPED_ROWS

    result = localize_run(
        args.run_dir,
        args.data,
        args.method,
        args.threshold,
        args.iou,
        args.examples,
        progress=not (args.quiet or args.json),
        out=args.out,
    )
    if args.json:
        print(json.dumps(summary_as_json(result.summary)))
        return 0
    print(f"{'class':<20} {'n':>4} {'precision':>9} {'accuracy':>8} {'pointing':>8}")
    for _, row in result.summary.iterrows():
        print(
            f"{row['class']:<20} {int(row['n']):>4} {row['precision']:>9.3f} {row['accuracy']:>8.3f} "
            f"{row['pointing']:>8.3f}"
        )
    if result.skipped_not_in_cache:
        print(f"{result.skipped_not_in_cache} boxes skipped: their images are not on disk")
    if result.skipped_rows:
        print(
            f"{len(result.skipped_rows)} bad metadata rows skipped, their images left out"
            + (f": {result.written_to}/{SKIPPED_ROWS}" if result.written_to else "")
        )
    if result.written_to:
        print(
            f"wrote {result.written_to}/{LOCALIZATION}, {LOCALIZATION_SAMPLES} "
            f"and {len(result.figures)} example figures"
        )
    return 0


def study_on_slurm(study, args: argparse.Namespace) -> int:
    """Submit the study's jobs to SLURM; with --wait, block until the report job ends and fail if any job failed."""
    from cxrres.study.slurm import SlurmOptions, slurm_options, submit_study, wait_for
    from cxrres.runs import KEY_TABLE, REPORT_HTML

    flags = {name: getattr(args, name) for name in SlurmOptions.__dataclass_fields__}
    submission = submit_study(study, slurm_options(study.slurm, flags))
    if args.wait:
        wait_for(study, submission)
        print_key_table(Path(study.out) / KEY_TABLE, Path(study.out) / REPORT_HTML)
    return 0


def print_key_table(key: Path, html: Path) -> None:
    """The study's key table (when written) and the report's path."""
    if key.is_file():
        print("\n" + key.read_text())
    print(f"report: {html}")


def study(args: argparse.Namespace) -> int:
    """Run (or continue, list, or plan) a whole study."""
    from cxrres.runs import KEY_TABLE
    from cxrres.study.grid import GRID_FLAGS, TRAIN_FLAGS, prepare_source, study_settings, write_study_file
    from cxrres.study.local import run_study
    from cxrres.study.plan import PLANNED_KINDS, describe_plan, plan_commands, study_plan

    study = study_settings(args.config, {name: getattr(args, name) for name in GRID_FLAGS + TRAIN_FLAGS})
    if args.dry_run:
        from cxrres.study.slurm import describe_jobs  # where the study's SLURM jobs stand, if submitted

        jobs = describe_jobs(study)
        print("\n".join([describe_plan(study, study_plan(study))] + ([jobs] if jobs else [])))
        return 0
    if args.plan:
        write_study_file(study)
        print(plan_commands(study, study_plan(study, kinds=PLANNED_KINDS)))
        return 0
    if args.step == "prepare":  # the same function the local executor starts with: one home for the data settings
        source = prepare_source(study, progress=not args.quiet)
        print(
            f"cache {source.cache_dir}: {source.prepared.n_images:,} images "
            f"at {','.join(map(str, study.resolutions))} px"
        )
        return 0
    if args.executor == "slurm":
        return study_on_slurm(study, args)
    print_key_table(Path(study.out) / KEY_TABLE, run_study(study, progress=not args.quiet))
    return 0


def predict(args: argparse.Namespace) -> int:
    """Score new radiographs with a run: probabilities, positive calls, heat maps."""
    from cxrres.evaluation.operating import OperatingRule
    from cxrres.deploy.predict import PREDICTIONS_FILE, SKIPPED_FILE, predict_files

    result = predict_files(
        args.run_dir,
        args.inputs,
        args.out,
        args.heatmaps,
        args.method,
        OperatingRule.parse(args.operating_point),
        args.skip_bad,
        args.workers,
        args.batch_size,
        progress=not args.quiet,
    )
    print(
        f"{len(result.predictions):,} images scored ({result.images_per_s:.1f} img/s); wrote "
        f"{Path(args.out) / PREDICTIONS_FILE}" + (f", {len(result.heatmaps)} heat maps" if result.heatmaps else "")
    )
    if args.skip_bad:
        print(f"{len(result.skipped)} skipped, listed in {Path(args.out) / SKIPPED_FILE}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Export a run's best network (ONNX or TorchScript) with a model card."""
    from cxrres.deploy.export import export_run, export_study
    from cxrres.runs import STUDY_FILE

    if (Path(args.run_dir) / STUDY_FILE).is_file():
        for path in export_study(args.run_dir, args.format, args.out):
            print(f"wrote {path} and its model card {path.name}.md")
        return 0
    path = export_run(args.run_dir, args.format, args.out)
    print(f"wrote {path} and its model card {path.name}.md")
    return 0


def report(args: argparse.Namespace) -> int:
    """Write report.html and report.md of a study directory."""
    from cxrres.report.document import write_report

    print(f"report: {write_report(args.study_dir, shared_y=not args.per_panel_y)}")
    return 0


def verify(args: argparse.Namespace) -> int:
    """Recompute every written figure of each path and compare; 0 when all agree, 1 listing every disagreement."""
    from cxrres.verify import verify as verify_path

    failed = False
    for path in args.paths:
        result = verify_path(path, args.n_boot, args.iou)
        for problem in result.problems:
            print(problem, file=sys.stderr)
        verdict = "all agree" if result.ok else f"{len(result.problems)} disagreement(s)"
        print(f"verify {path}: {len(result.checked)} files checked, {verdict}")
        failed |= not result.ok
    return 1 if failed else 0
