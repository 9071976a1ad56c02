"""The `cxrres` command line: argument parsing only; each command's body, one call into the library, is in
`commands.py`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Callable, Sequence

from cxrres import __version__, commands
from cxrres.config import add_arguments, add_data_arguments, add_train_arguments
from cxrres.localization.settings import LocalizeSettings
from cxrres.util.parallel import MIN_ITEMS_FOR_WORKERS
from cxrres.study.slurm.scripts import add_executor_arguments
from cxrres.synthetic.nih_layout import parse_enrichment
from cxrres.errors import EXIT_TERMINATED, CxrresError, Terminated, describe_os_error
from cxrres.runs import COMPARISON

#: The localization defaults (one home: config.LocalizeSettings, also a study's `localize:` defaults).
LOCALIZE = LocalizeSettings()


def _add_statistics_options(parser: argparse.ArgumentParser) -> None:
    """--level and --n-boot of evaluate and compare."""
    parser.add_argument("--level", type=float, default=0.95, help="interval level (default: %(default)s)")
    parser.add_argument(
        "--n-boot",
        type=int,
        default=1000,
        metavar="B",
        help="bootstrap replicates by patient for the mean AUC (default: %(default)s)",
    )


def _add_per_panel_option(parser: argparse.ArgumentParser) -> None:
    """--per-panel-y of compare and report."""
    parser.add_argument(
        "--per-panel-y",
        action="store_true",
        help="each per-class panel scales its own y-axis (default: one y range for all panels)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="cxrres",
        description="How does the resolution a chest X-ray classifier is trained at change its accuracy and where it "
        "looks? The ChestX-ray14 resolution study (Wollek et al., 2023), end to end.",
    )
    parser.add_argument("--version", action="version", version=f"cxrres {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    describe = sub.add_parser(
        "describe",
        help="class counts per split part and official boxes in the test part",
        description="Summarise a ChestX-ray14-style data set under a split: images and class counts per "
        "part, and count and mean area (px² at 1024) of the official boxes in the test part.",
    )
    describe.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="data root: ChestX-ray14 (Data_Entry_2017(_v2020).csv, BBox_List_2017.csv, lists), CheXpert, "
        "MIMIC-CXR-JPG, PadChest or labels.csv",
    )
    add_data_arguments(describe)  # every data setting, as `train` has them
    add_arguments(describe, ("uncertain",), with_defaults=True)
    describe.add_argument("--json", action="store_true", help="print exactly one JSON object instead of tables")
    describe.set_defaults(func=commands.describe)

    prepare = sub.add_parser(
        "prepare",
        help="decode every image once into one uint8 array per resolution",
        description="Decode each image under DIR/images/ or DIR/images_*/images/ once, area-resize it to every "
        "resolution, and write one memory-mappable uint8 array per resolution plus an index and a "
        "manifest. Every image the data set lists is cached, all views. Interrupted runs resume; a cache is reused "
        "only if its sources are unchanged.",
    )
    prepare.add_argument("--data", required=True, metavar="DIR", help="data root (as for describe)")
    add_data_arguments(prepare, ("dataset",))
    prepare.add_argument(
        "--resolutions",
        default="32,64,128,256,512",
        metavar="R,R,...",
        help="square output sizes in pixels (default: %(default)s)",
    )
    prepare.add_argument(
        "--cache",
        metavar="DIR",
        help="cache directory (default: a folder per data root under $CXRRES_CACHE_DIR, $XDG_CACHE_HOME/cxrres or "
        "~/.cache/cxrres; docs/data.md)",
    )
    prepare.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=f"decoding processes (default: the number of cores, {os.cpu_count() or 1}, or 1 for fewer than "
        f"{MIN_ITEMS_FOR_WORKERS} images)",
    )
    add_data_arguments(prepare, ("skip_bad",))  # unreadable images listed in the manifest, bad rows here
    prepare.add_argument(
        "--dry-run",
        action="store_true",
        help="print the bytes each resolution would take (present and all listed images) "
        "and the free space; write nothing",
    )
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(func=commands.prepare)

    from cxrres.synthetic.layouts import LAYOUTS

    synth = sub.add_parser(
        "synth",
        help="write a synthetic chest X-ray data set (the phantom) in a published layout",
        description="Write a phantom data set in the files of --layout (nih: PNGs under OUT/images/, "
        "Data_Entry_2017_v2020.csv, official lists, a CheXNet-format split in OUT/splits/chexnet/, "
        "BBox_List_2017.csv with the true box of every lesion in test images; the others: "
        "docs/phantom.md). Deterministic: the same arguments give byte-identical files for any worker count.",
    )
    synth.add_argument("--out", required=True, metavar="DIR", help="output data root")
    synth.add_argument(
        "--layout", choices=tuple(LAYOUTS), default="nih", help="whose published files to write (default: %(default)s)"
    )
    synth.add_argument("--images", type=int, default=1000, metavar="N", help="number of images (default: %(default)s)")
    synth.add_argument(
        "--patients", type=int, metavar="P", help="number of patients (default: images / 2.5; rsna: images)"
    )
    synth.add_argument(
        "--size", type=int, default=1024, metavar="PX", help="image side in pixels (default: %(default)s, as NIH)"
    )
    synth.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: %(default)s)")
    synth.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="W",
        help="rendering processes (default: the number of cores, %(default)s)",
    )
    synth.add_argument(
        "--enrich",
        type=parse_enrichment,
        metavar="CLASS=F,...",
        help="draw these findings F times as often as their real-prevalence weight, e.g. Nodule=3",
    )
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=commands.synth)

    train = sub.add_parser(
        "train",
        help="train one run (arch x resolution x seed) with the study's recipe",
        description="Train one network on the resolution cache with the study's recipe (BCE, AdamW 3e-4, "
        "LR/10 after 2 epochs without val-loss improvement, stop after 10), keep the checkpoint "
        "with the best validation mean AUC, and write test predictions. Rerunning the same "
        "command resumes an interrupted run and skips a finished one.",
    )
    add_train_arguments(train)
    train.set_defaults(func=commands.train)

    evaluate = sub.add_parser(
        "evaluate",
        help="per-class test AUC with DeLong 95%% intervals of one run",
        description="Read RUN_DIR/predictions_test.csv and write RUN_DIR/auc.csv: per class n_pos, n_neg, "
        "AUC (Mann-Whitney) and DeLong interval; the mean over classes with a bootstrap-by-patient "
        "interval; and RUN_DIR/calibration.csv: average precision, Brier score, ECE. --reference and --data score "
        "against other labels or on another data set.",
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument(
        "--out",
        metavar="DIR",
        help="write the tables here: auc.csv and calibration.csv, auc_google2019.csv (--reference), "
        "external_test/... (--data), auc_by_test_resolution.csv (default: the run directory; a read-only run is "
        "only printed)",
    )
    evaluate.add_argument(
        "--json", action="store_true", help='print {"auc": {class: {auc, ci_low, ci_high}, ..., "mean": {...}}}'
    )
    evaluate.add_argument(
        "--reference",
        choices=("google2019",),
        help="score an NIH run against Google's adjudicated labels (docs/data.md)",
    )
    evaluate.add_argument(
        "--data", metavar="OTHER_ROOT", help="score the run on another data set's test part, over the classes both have"
    )
    add_data_arguments(evaluate, ("dataset", "views"))  # of OTHER_ROOT; its split is cxrres's default
    evaluate.add_argument(
        "--allow-missing",
        action="store_true",
        help="--data: score the test images that are cached, leaving out missing ones",
    )
    evaluate.add_argument(
        "--test-resolution",
        metavar="PX,PX",
        help="score the run's test images at these input sizes "
        "(e.g. 64,128,256; the train size is always added) into RUN_DIR/auc_by_test_resolution.csv",
    )
    _add_statistics_options(evaluate)
    evaluate.set_defaults(func=commands.evaluate)

    compare = sub.add_parser(
        "compare",
        help="compare runs: AUC table, paired DeLong and bootstrap tests, AUC-vs-resolution plot",
        description="Compare runs scored on the same test images: AUC table with the best per row marked "
        "(Markdown, CSV, LaTeX), per-class paired DeLong tests (Holm-adjusted within each pair), "
        "paired patient-bootstrap tests of the mean AUC, and AUC against resolution (PNG, SVG).",
    )
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", default=COMPARISON, metavar="DIR", help="output directory (default: %(default)s)")
    _add_statistics_options(compare)
    _add_per_panel_option(compare)
    compare.set_defaults(func=commands.compare)

    localize = sub.add_parser(
        "localize",
        help="Grad-CAM boxes of a run scored against the ground-truth boxes",
        description="For every ground-truth box (ChestX-ray14, RSNA, VinDr-CXR) in the test part of the run's split: "
        "the class's saliency map from the best checkpoint (after the last block's ReLU), brought to the image's pixel "
        "frame, thresholded, one detection per connected component; precision and hit at an IoU "
        "threshold. Writes localization.csv, localization_samples.csv and example figures.",
    )
    localize.add_argument("run_dir", metavar="RUN_DIR")
    localize.add_argument(
        "--out",
        metavar="DIR",
        help="write the tables and figures here (default: the run directory; a read-only run is only printed)",
    )
    localize.add_argument("--data", metavar="DIR", help="data root (default: the run's)")
    localize.add_argument(
        "--method", default=LOCALIZE.method, metavar="METHOD", help="saliency method (default: %(default)s)"
    )
    localize.add_argument(
        "--threshold",
        type=float,
        default=LOCALIZE.threshold,
        help="threshold on the min-max normalised map (default: %(default)s)",
    )
    localize.add_argument(
        "--iou", type=float, default=LOCALIZE.iou, help="IoU at which a detection is positive (default: %(default)s)"
    )
    localize.add_argument(
        "--examples",
        type=int,
        default=LOCALIZE.examples,
        metavar="N",
        help="example figures per class (default: %(default)s)",
    )
    localize.add_argument(
        "--json", action="store_true", help='print {"classes": {...}, "mean": {"precision", "accuracy", "pointing"}}'
    )
    localize.add_argument("--quiet", action="store_true", help="no progress bar")
    localize.set_defaults(func=commands.localize)

    study = sub.add_parser(
        "study",
        help="the whole study: caches, every run, evaluation, localization, comparison, report",
        description="Train every (arch, resolution, seed, label) run with the study's recipe, evaluate, localize, "
        "compare and write the report. Rerunning the same command skips finished work and resumes "
        "interrupted runs.",
    )
    study.add_argument("--data", metavar="DIR", help="data root")
    study.add_argument(
        "--resolutions", metavar="R,R,...", help="training resolutions in px (default: 64,128,256,512,1024)"
    )
    study.add_argument("--archs", metavar="A,A", help="architectures (default: densenet121)")
    study.add_argument("--seeds", metavar="S,S", help="seeds (default: 0)")
    study.add_argument(
        "--labels",
        metavar="L,L",
        help="'all' for one network over every class (default), or the data set's class names for "
        "single-label networks",
    )
    study.add_argument("--out", metavar="STUDY_DIR", help="study directory (default: study)")
    study.add_argument(
        "--external", metavar="ROOT,ROOT", help="score every run on these data roots' test parts too (shared classes)"
    )
    study.add_argument(
        "--config", metavar="FILE", help="YAML with study settings; its `train:` mapping holds training settings"
    )
    from cxrres.study.grid import TRAIN_FLAGS

    add_arguments(study, TRAIN_FLAGS)  # training settings shared by all runs; each overrides the file's `train:`
    study.add_argument("--dry-run", action="store_true", help="list what is done and what is left; change nothing")
    study.add_argument(
        "--plan", action="store_true", help="print one `cxrres train` command per unfinished run (for a scheduler)"
    )
    study.add_argument(
        "--step",
        choices=("prepare",),
        default=None,
        help="run one step of the study only: `prepare` builds the caches every run uses, with the study's "
        "data settings (the SLURM executor's first job)",
    )
    add_executor_arguments(study)
    study.add_argument("--quiet", action="store_true", help="no progress bars")
    study.set_defaults(func=commands.study)

    predict = sub.add_parser(
        "predict",
        help="score new radiographs (PNG, JPEG, DICOM) with a trained run, with heat maps",
        description="Score image files or folders with RUN_DIR's best network, preprocessed exactly as in "
        "training (decode, pad to square, area resize to the run's resolution). Writes "
        "OUT/predictions.csv (path, probability and positive call per class; the call's "
        "threshold is chosen on the run's validation part and stored in RUN_DIR/operating_points.csv) "
        "and heat-map overlays under OUT/heatmaps/.",
    )
    predict.add_argument("run_dir", metavar="RUN_DIR")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    predict.add_argument("--out", required=True, metavar="DIR", help="output folder")
    predict.add_argument(
        "--heatmaps",
        default="none",
        metavar="none|top3|all|CLASS,...",
        help="classes to draw a heat map for, per image (default: %(default)s)",
    )
    predict.add_argument(
        "--method", default="gradcam", metavar="METHOD", help="saliency method, as for localize (default: %(default)s)"
    )
    predict.add_argument(
        "--operating-point",
        default="youden",
        metavar="youden|sensitivity:S",
        help="how the threshold of a positive call is chosen on the validation part (default: %(default)s)",
    )
    predict.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable files and list them in OUT/skipped.csv"
    )
    predict.add_argument(
        "--workers", type=int, metavar="N", help="decoding processes (default: the number of cores, at most 8)"
    )
    predict.add_argument("--batch-size", type=int, metavar="B", help="images per forward pass (default: the run's)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(func=commands.predict)

    export = sub.add_parser(
        "export",
        help="export a run's network to ONNX or TorchScript, with a model card",
        description="Write RUN_DIR's best network to FILE: input uint8 grey N×R×R, output probabilities "
        "(normalisation inside the graph, dynamic batch), and FILE.md, its model card.",
    )
    export.add_argument(
        "run_dir",
        metavar="RUN_DIR|STUDY_DIR",
        help="a run, or a study: then its best run per resolution (highest test mean AUC over seeds)",
    )
    export.add_argument("--format", default="onnx", choices=("onnx", "torchscript"), help="(default: %(default)s)")
    export.add_argument(
        "--out", required=True, metavar="FILE|DIR", help="output file (e.g. model.onnx), or folder for a study"
    )
    export.set_defaults(func=commands.export)

    report = sub.add_parser(
        "report",
        help="write report.html and report.md of a study directory",
        description="Write STUDY_DIR/report.html (self-contained) and report.md from the finished runs.",
    )
    report.add_argument("study_dir", metavar="STUDY_DIR")
    _add_per_panel_option(report)
    report.set_defaults(func=commands.report)

    verify = sub.add_parser(
        "verify",
        help="recompute every written figure and compare it with every file that shows it",
        description="Recompute AUCs, intervals, means, paired tests, localization tables, operating "
        "points and calls, model cards and the report's key table from the stored "
        "predictions and boxes; exit 0 when every file agrees, 1 naming each file and "
        "value that does not.",
    )
    verify.add_argument("paths", nargs="+", metavar="STUDY|RUN|CARD|PREDICT_OUT")
    verify.add_argument(
        "--n-boot",
        type=int,
        default=None,
        help="bootstrap replicates a lone run was evaluated with (default: the study's, else 1000)",
    )
    verify.add_argument(
        "--iou", type=float, default=0.1, help="IoU threshold a lone run was localized with (default: 0.1)"
    )
    verify.set_defaults(func=commands.verify)
    return parser


def _raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM outside training: stop with Terminated (every file cxrres writes is renamed into place, so none is
    half-written)."""
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
    except OSError as exc:  # a full disk, a read-only --out, a file where a directory must go: one line, no traceback
        fallback = getattr(args, "out", None) or getattr(args, "cache", None)
        print(f"cxrres {args.command}: error: {describe_os_error(exc, fallback)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
