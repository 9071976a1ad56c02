"""The `cxrres` command line: argument parsing only; every command is one call into the library."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Sequence

from cxrres import __version__
from cxrres.config import DESCRIBE_SETTINGS, add_arguments, add_train_arguments
from cxrres.errors import EXIT_TERMINATED, CxrresError, Terminated
from cxrres.runs import AUC, AUC_GOOGLE2019, COMPARISON


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """--dataset and --views (see cxrres.data.datasets)."""
    from cxrres.data.datasets import DATASETS

    parser.add_argument("--dataset", choices=DATASETS, default=None, help="read DIR as this data set (default: detected from its files)")
    parser.add_argument("--views", default="frontal", metavar="VIEWS", help="frontal (default), all, or view codes such as PA,AP")


def cmd_describe(args: argparse.Namespace) -> int:
    """Print class counts per split part and the official boxes of the test part."""
    from cxrres.data import DataRoot, build_split
    from cxrres.data.summary import describe_split, format_summary

    from cxrres.data.datasets import ReadOptions, check_options, detect_dataset, open_dataset
    from cxrres.data.datasets.summary import describe_table, format_table_summary

    dataset = args.dataset or detect_dataset(args.data)
    options = ReadOptions(args.split, args.split_dir, args.val_fraction, args.split_seed, views=args.views,
                          labeler=args.labeler, readers=args.readers, skip_bad=args.skip_bad)
    check_options(dataset, options)
    if dataset == "nih" and args.views == "frontal":  # ChestX-ray14 as before (all frontal): with its boxes
        root = DataRoot.at(args.data)
        split = build_split(root, args.split, args.split_dir, args.val_fraction, args.split_seed)
        summary = describe_split(root, split)
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
        return 0
    summary = describe_table(open_dataset(args.data, dataset, options))
    print(json.dumps(summary, indent=2) if args.json else format_table_summary(summary))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Build the per-resolution uint8 caches."""
    from cxrres.data.cache import plan_prepare, prepare_cache

    if args.dry_run:
        print(plan_prepare(args.data, args.resolutions, args.cache, args.dataset, args.skip_bad).to_text())
        return 0
    report = prepare_cache(args.data, args.resolutions, args.cache, args.workers, args.skip_bad, progress=not args.quiet,
                           dataset=args.dataset)
    built = ",".join(map(str, report.built_px)) or "none"
    reused = ",".join(map(str, report.reused_px)) or "none"
    resumed = f", resumed at image {report.resumed_from:,}" if report.resumed_from else ""
    print(f"cache {report.cache_dir}: {report.n_images:,} images; built {built} px, reused {reused} px{resumed}; "
          f"{len(report.skipped)} skipped, {len(report.missing):,} missing; {report.seconds:.1f} s")
    for item in report.skipped:
        print(f"  skipped {item['image']}: {item['error']}")
    print("".join(f"  skipped {row}\n" for row in report.skipped_rows), end="")  # bad metadata rows: images not cached
    return 0


def enrichment(text: str) -> dict[str, float]:
    """'Nodule=3,Cardiomegaly=2' -> {"Nodule": 3.0, "Cardiomegaly": 2.0} (argparse type)."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, factor = item.partition("=")
        try:
            out[name.strip()] = float(factor)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected CLASS=FACTOR, got {item!r}") from None
    return out


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a phantom data set in one published layout (NIH by default)."""
    from cxrres.synthetic.layouts import summary_line, synthesize_layout

    counts = synthesize_layout(args.layout, args.out, n_images=args.images, n_patients=args.patients, size_px=args.size,
                               seed=args.seed, workers=args.workers, progress=not args.quiet, enrich=args.enrich)
    print(summary_line(args.layout, args.out, counts))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one run (or resume it, or report that it is finished)."""
    from cxrres.config import config_from_file, merge_settings, settings_from_args
    from cxrres.train import train

    config = merge_settings(config_from_file(args.config) if args.config else {}, settings_from_args(args))
    run_dir = train(config)
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0:
        print(f"run {run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Per-class test AUC with DeLong intervals of one run: on its own test part, against adjudicated labels
    (--reference), or on another data set's test part (--data)."""
    from cxrres.evaluate import evaluate_run, format_table, table_as_json

    if args.reference and args.data:
        raise CxrresError("--reference scores the run's own test images; it cannot be combined with --data")
    if args.reference:
        from cxrres.adjudicated import evaluate_reference, format_reference_table

        table = evaluate_reference(args.run_dir, args.reference, args.level)
        print(table.to_json(orient="records") if args.json else f"{format_reference_table(table)}\nwrote {args.run_dir}/{AUC_GOOGLE2019}")
        return 0
    if args.data:
        from cxrres.external import evaluate_external

        result = evaluate_external(args.run_dir, args.data, args.dataset, args.views, args.level, args.n_boot,
                                   args.allow_missing, progress=not args.json)
        print(json.dumps(result.as_json()) if args.json else result.summary())
        return 0
    table = evaluate_run(args.run_dir, args.level, args.n_boot)
    print(json.dumps(table_as_json(table)) if args.json else f"{format_table(table)}\nwrote {args.run_dir}/{AUC}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare runs on the same test images: AUC table, paired DeLong and bootstrap tests, figure."""
    from cxrres.compare import compare_runs
    from cxrres.report.comparison import write_comparison
    from cxrres.report.document import study_reference
    from cxrres.report.tables import markdown_table

    comparison = compare_runs(args.run_dirs, args.level, args.n_boot)
    written = write_comparison(comparison, args.out, study_reference(comparison), shared_y=not args.per_panel_y)
    print(markdown_table(comparison.auc))
    print(f"wrote {len(written)} files to {args.out}: " + ", ".join(p.name for p in written))
    return 0


def cmd_localize(args: argparse.Namespace) -> int:
    """Grad-CAM boxes of one run scored against the ground-truth boxes of its test part."""
    from cxrres.localize import localize_run, summary_as_json
    from cxrres.runs import LOCALIZATION, LOCALIZATION_SAMPLES, SKIPPED_ROWS

    result = localize_run(args.run_dir, args.data, args.method, args.threshold, args.iou, args.examples,
                          progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps(summary_as_json(result.summary)))
        return 0
    print(f"{'class':<20} {'n':>4} {'precision':>9} {'accuracy':>8} {'pointing':>8}")
    for _, row in result.summary.iterrows():
        print(f"{row['class']:<20} {int(row['n']):>4} {row['precision']:>9.3f} {row['accuracy']:>8.3f} {row['pointing']:>8.3f}")
    if result.skipped_not_in_cache:
        print(f"{result.skipped_not_in_cache} boxes skipped: their images are not on disk")
    if result.skipped_rows:
        print(f"{len(result.skipped_rows)} bad metadata rows skipped, their images left out: {args.run_dir}/{SKIPPED_ROWS}")
    print(f"wrote {args.run_dir}/{LOCALIZATION}, {LOCALIZATION_SAMPLES} and {len(result.figures)} example figures")
    return 0


def _study_on_slurm(study, args: argparse.Namespace) -> int:
    """Submit the study's jobs to SLURM; with --wait, block until the report job ends and fail if any job failed."""
    from cxrres.cluster import SlurmOptions, slurm_options, submit_study, wait_for
    from cxrres.runs import KEY_TABLE, REPORT_HTML

    flags = {name: getattr(args, name) for name in SlurmOptions.__dataclass_fields__}
    submission = submit_study(study, slurm_options(study.slurm, flags))
    if args.wait:
        wait_for(study, submission)
        _print_key_table(Path(study.out) / KEY_TABLE, Path(study.out) / REPORT_HTML)
    return 0


def _print_key_table(key: Path, html: Path) -> None:
    """The study's key table (when written) and the report's path."""
    if key.is_file():
        print("\n" + key.read_text())
    print(f"report: {html}")


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """--executor and the SLURM settings of `cxrres study` (flags override the study file's `slurm:` mapping)."""
    from cxrres.cluster.scripts import add_slurm_arguments
    from cxrres.study import EXECUTORS

    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: train here, one run after another; slurm: submit sbatch jobs (docs/cluster.md) "
                             "(default: %(default)s)")
    parser.add_argument("--wait", action="store_true", help="slurm: block until the report is written; fail if a job failed")
    add_slurm_arguments(parser)


def cmd_study(args: argparse.Namespace) -> int:
    """Run (or continue, list, or plan) a whole study."""
    from cxrres.runs import KEY_TABLE
    from cxrres.study import GRID_FLAGS, describe_state, job_commands, run_study, study_settings, write_study_file

    study = study_settings(args.config, {name: getattr(args, name) for name in GRID_FLAGS})
    if args.dry_run:
        print(describe_state(study))
        return 0
    if args.plan:
        write_study_file(study)
        print(job_commands(study))
        return 0
    if args.executor == "slurm":
        return _study_on_slurm(study, args)
    _print_key_table(Path(study.out) / KEY_TABLE, run_study(study, progress=not args.quiet))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Score new radiographs with a run: probabilities, positive calls, heat maps."""
    from cxrres.operating import OperatingRule
    from cxrres.predict import PREDICTIONS_FILE, SKIPPED_FILE, predict_files

    result = predict_files(args.run_dir, args.inputs, args.out, args.heatmaps, args.method,
                           OperatingRule.parse(args.operating_point), args.skip_bad, args.workers, args.batch_size,
                           progress=not args.quiet)
    print(f"{len(result.predictions):,} images scored ({result.images_per_s:.1f} img/s); wrote {Path(args.out) / PREDICTIONS_FILE}"
          + (f", {len(result.heatmaps)} heat maps" if result.heatmaps else ""))
    if args.skip_bad:
        print(f"{len(result.skipped)} skipped, listed in {Path(args.out) / SKIPPED_FILE}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a run's best network (ONNX or TorchScript) with a model card."""
    from cxrres.export import export_run, export_study
    from cxrres.runs import STUDY_FILE

    if (Path(args.run_dir) / STUDY_FILE).is_file():
        for path in export_study(args.run_dir, args.format, args.out):
            print(f"wrote {path} and its model card {path.name}.md")
        return 0
    path = export_run(args.run_dir, args.format, args.out)
    print(f"wrote {path} and its model card {path.name}.md")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write report.html and report.md of a study directory."""
    from cxrres.report.document import write_report

    print(f"report: {write_report(args.study_dir, shared_y=not args.per_panel_y)}")
    return 0


def _add_statistics_options(parser: argparse.ArgumentParser) -> None:
    """--level and --n-boot of evaluate and compare."""
    parser.add_argument("--level", type=float, default=0.95, help="interval level (default: %(default)s)")
    parser.add_argument("--n-boot", type=int, default=1000, metavar="B",
                        help="bootstrap replicates by patient for the mean AUC (default: %(default)s)")


def _add_per_panel_option(parser: argparse.ArgumentParser) -> None:
    """--per-panel-y of compare and report."""
    parser.add_argument("--per-panel-y", action="store_true",
                        help="each per-class panel scales its own y-axis (default: one y range for all panels)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="cxrres",
        description="How does the resolution a chest X-ray classifier is trained at change its accuracy and where it looks? "
                    "The ChestX-ray14 resolution study (Wollek et al., 2023), end to end.",
    )
    parser.add_argument("--version", action="version", version=f"cxrres {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    describe = sub.add_parser("describe", help="class counts per split part and official boxes in the test part",
                              description="Summarise a ChestX-ray14-style data set under a split: images and class counts per "
                                          "part, and count and mean area (px² at 1024) of the official boxes in the test part.")
    describe.add_argument("--data", required=True, metavar="DIR",
                          help="data root: ChestX-ray14 (Data_Entry_2017(_v2020).csv, BBox_List_2017.csv, lists), CheXpert, MIMIC-CXR-JPG, PadChest or labels.csv")
    add_arguments(describe, DESCRIBE_SETTINGS, with_defaults=True)
    add_dataset_arguments(describe)
    describe.add_argument("--json", action="store_true", help="print exactly one JSON object instead of tables")
    describe.set_defaults(func=cmd_describe)

    prepare = sub.add_parser("prepare", help="decode every image once into one uint8 array per resolution",
                             description="Decode each image under DIR/images/ or DIR/images_*/images/ once, area-resize it to every "
                                         "resolution, and write one memory-mappable uint8 array per resolution plus an index and a "
                                         "manifest. Interrupted runs resume; a cache is reused only if its sources are unchanged.")
    prepare.add_argument("--data", required=True, metavar="DIR", help="data root (as for describe)")
    from cxrres.data.datasets import DATASETS

    prepare.add_argument("--dataset", choices=DATASETS, default=None,
                         help="read DIR as this data set (default: detected from its files); every image it lists is cached, all views")
    prepare.add_argument("--resolutions", default="32,64,128,256,512", metavar="R,R,...",
                         help="square output sizes in pixels (default: %(default)s)")
    prepare.add_argument("--cache", metavar="DIR", help="cache directory (default: a folder per data root under $CXRRES_CACHE_DIR, $XDG_CACHE_HOME/cxrres or "
                              "~/.cache/cxrres; docs/data.md)")
    prepare.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                         help="decoding processes (default: the number of cores, %(default)s)")
    prepare.add_argument("--skip-bad", action="store_true",
                         help="skip unreadable or truncated images and list them in the manifest, and the images of bad "
                              "box/label rows (RSNA, VinDr; listed here), instead of stopping")
    prepare.add_argument("--dry-run", action="store_true",
                         help="print the bytes each resolution would take (present and all listed images) and the free space; write nothing")
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(func=cmd_prepare)

    from cxrres.synthetic.layouts import LAYOUTS

    synth = sub.add_parser("synth", help="write a synthetic chest X-ray data set (the phantom) in a published layout",
                           description="Write a phantom data set in the files of --layout (nih: PNGs under OUT/images/, "
                                       "Data_Entry_2017_v2020.csv, official lists, a CheXNet-format split in OUT/splits/chexnet/, "
                                       "BBox_List_2017.csv with the true box of every lesion in test images; the others: "
                                       "docs/phantom.md). Deterministic: the same arguments give byte-identical files for any worker count.")
    synth.add_argument("--out", required=True, metavar="DIR", help="output data root")
    synth.add_argument("--layout", choices=tuple(LAYOUTS), default="nih", help="whose published files to write (default: %(default)s)")
    synth.add_argument("--images", type=int, default=1000, metavar="N", help="number of images (default: %(default)s)")
    synth.add_argument("--patients", type=int, metavar="P", help="number of patients (default: images / 2.5; rsna: images)")
    synth.add_argument("--size", type=int, default=1024, metavar="PX", help="image side in pixels (default: %(default)s, as NIH)")
    synth.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: %(default)s)")
    synth.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="W",
                       help="rendering processes (default: the number of cores, %(default)s)")
    synth.add_argument("--enrich", type=enrichment, metavar="CLASS=F,...",
                       help="draw these findings F times as often as their real-prevalence weight, e.g. Nodule=3")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=cmd_synth)

    train = sub.add_parser("train", help="train one run (arch x resolution x seed) with the study's recipe",
                           description="Train one network on the resolution cache with the study's recipe (BCE, AdamW 3e-4, "
                                       "LR/10 after 2 epochs without val-loss improvement, stop after 10), keep the checkpoint "
                                       "with the best validation mean AUC, and write test predictions. Rerunning the same "
                                       "command resumes an interrupted run and skips a finished one.")
    add_train_arguments(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="per-class test AUC with DeLong 95%% intervals of one run",
                              description="Read RUN_DIR/predictions_test.csv and write RUN_DIR/auc.csv: per class n_pos, n_neg, "
                                          "AUC (Mann-Whitney) and DeLong interval; the mean over classes with a bootstrap-by-patient "
                                          "interval. --reference and --data score against other labels or on another data set.")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--json", action="store_true", help='print {"auc": {class: {auc, ci_low, ci_high}, ..., "mean": {...}}}')
    evaluate.add_argument("--reference", choices=("google2019",), help="score an NIH run against Google's adjudicated labels (docs/data.md)")
    evaluate.add_argument("--data", metavar="OTHER_ROOT", help="score the run on another data set's test part, over the classes both have")
    add_dataset_arguments(evaluate)
    evaluate.add_argument("--allow-missing", action="store_true", help="--data: score the test images that are cached, leaving out missing ones")
    _add_statistics_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    compare = sub.add_parser("compare", help="compare runs: AUC table, paired DeLong and bootstrap tests, AUC-vs-resolution plot",
                             description="Compare runs scored on the same test images: AUC table with the best per row marked "
                                         "(Markdown, CSV, LaTeX), per-class paired DeLong tests (Holm-adjusted within each pair), "
                                         "paired patient-bootstrap tests of the mean AUC, and AUC against resolution (PNG, SVG).")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", default=COMPARISON, metavar="DIR", help="output directory (default: %(default)s)")
    _add_statistics_options(compare)
    _add_per_panel_option(compare)
    compare.set_defaults(func=cmd_compare)

    localize = sub.add_parser("localize", help="Grad-CAM boxes of a run scored against the ground-truth boxes",
                              description="For every ground-truth box (ChestX-ray14, RSNA, VinDr-CXR) in the test part of the run's split: the class's saliency map "
                                          "from the best checkpoint (after the last block's ReLU), brought to the image's pixel "
                                          "frame, thresholded, one detection per connected component; precision and hit at an IoU "
                                          "threshold. Writes localization.csv, localization_samples.csv and example figures.")
    localize.add_argument("run_dir", metavar="RUN_DIR")
    localize.add_argument("--data", metavar="DIR", help="data root (default: the run's)")
    localize.add_argument("--method", default="gradcam", metavar="METHOD",
                          help="saliency method (default: %(default)s)")
    localize.add_argument("--threshold", type=float, default=0.5, help="threshold on the min-max normalised map (default: %(default)s)")
    localize.add_argument("--iou", type=float, default=0.1, help="IoU at which a detection is positive (default: %(default)s)")
    localize.add_argument("--examples", type=int, default=2, metavar="N", help="example figures per class (default: %(default)s)")
    localize.add_argument("--json", action="store_true", help='print {"classes": {...}, "mean": {"precision", "accuracy", "pointing"}}')
    localize.add_argument("--quiet", action="store_true", help="no progress bar")
    localize.set_defaults(func=cmd_localize)

    study = sub.add_parser("study", help="the whole study: caches, every run, evaluation, localization, comparison, report",
                           description="Train every (arch, resolution, seed, label) run with the study's recipe, evaluate, localize, "
                                       "compare and write the report. Rerunning the same command skips finished work and resumes "
                                       "interrupted runs.")
    study.add_argument("--data", metavar="DIR", help="data root")
    study.add_argument("--resolutions", metavar="R,R,...", help="training resolutions in px (default: 64,128,256,512,1024)")
    study.add_argument("--archs", metavar="A,A", help="architectures (default: densenet121)")
    study.add_argument("--seeds", metavar="S,S", help="seeds (default: 0)")
    study.add_argument("--labels", metavar="L,L", help="'all' for one network over every class (default), or the data set's class names for "
                                                        "single-label networks")
    study.add_argument("--out", metavar="STUDY_DIR", help="study directory (default: study)")
    study.add_argument("--external", metavar="ROOT,ROOT", help="score every run on these data roots' test parts too (shared classes)")
    study.add_argument("--config", metavar="FILE", help="YAML with study settings; its `train:` mapping holds training settings")
    study.add_argument("--dry-run", action="store_true", help="list what is done and what is left; change nothing")
    study.add_argument("--plan", action="store_true", help="print one `cxrres train` command per unfinished run (for a scheduler)")
    _add_cluster_options(study)
    study.add_argument("--quiet", action="store_true", help="no progress bars")
    study.set_defaults(func=cmd_study)

    predict = sub.add_parser("predict", help="score new radiographs (PNG, JPEG, DICOM) with a trained run, with heat maps",
                             description="Score image files or folders with RUN_DIR's best network, preprocessed exactly as in "
                                         "training (decode, pad to square, area resize to the run's resolution). Writes "
                                         "OUT/predictions.csv (path, probability and positive call per class; the call's "
                                         "threshold is chosen on the run's validation part and stored in RUN_DIR/operating_points.csv) "
                                         "and heat-map overlays under OUT/heatmaps/.")
    predict.add_argument("run_dir", metavar="RUN_DIR")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    predict.add_argument("--out", required=True, metavar="DIR", help="output folder")
    predict.add_argument("--heatmaps", default="none", metavar="none|top3|all|CLASS,...",
                         help="classes to draw a heat map for, per image (default: %(default)s)")
    predict.add_argument("--method", default="gradcam", metavar="METHOD",
                         help="saliency method, as for localize (default: %(default)s)")
    predict.add_argument("--operating-point", default="youden", metavar="youden|sensitivity:S",
                         help="how the threshold of a positive call is chosen on the validation part (default: %(default)s)")
    predict.add_argument("--skip-bad", action="store_true", help="skip unreadable files and list them in OUT/skipped.csv")
    predict.add_argument("--workers", type=int, metavar="N", help="decoding processes (default: the number of cores, at most 8)")
    predict.add_argument("--batch-size", type=int, metavar="B", help="images per forward pass (default: the run's)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(func=cmd_predict)

    export = sub.add_parser("export", help="export a run's network to ONNX or TorchScript, with a model card",
                            description="Write RUN_DIR's best network to FILE: input uint8 grey N×R×R, output probabilities "
                                        "(normalisation inside the graph, dynamic batch), and FILE.md, its model card.")
    export.add_argument("run_dir", metavar="RUN_DIR|STUDY_DIR",
                        help="a run, or a study: then its best run per resolution (highest test mean AUC over seeds)")
    export.add_argument("--format", default="onnx", choices=("onnx", "torchscript"), help="(default: %(default)s)")
    export.add_argument("--out", required=True, metavar="FILE|DIR", help="output file (e.g. model.onnx), or folder for a study")
    export.set_defaults(func=cmd_export)

    report = sub.add_parser("report", help="write report.html and report.md of a study directory",
                            description="Write STUDY_DIR/report.html (self-contained) and report.md from the finished runs.")
    report.add_argument("study_dir", metavar="STUDY_DIR")
    _add_per_panel_option(report)
    report.set_defaults(func=cmd_report)
    return parser


def _raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM outside training: stop with Terminated (every file cxrres writes is renamed into place, so none is half-written)."""
    raise Terminated("stopped by SIGTERM; run the same command again to continue")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cxrres` console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return func(args)
    except Terminated as exc:
        print(f"cxrres {args.command}: {exc}", file=sys.stderr)
        return EXIT_TERMINATED
    except CxrresError as exc:
        print(f"cxrres {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cxrres {args.command}: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cxrres describe | head`: the reader left; say nothing more (Python docs' recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
