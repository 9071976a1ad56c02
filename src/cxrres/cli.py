"""The `cxrres` command line: argument parsing only; every command is one call into the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence

from cxrres import __version__
from cxrres.errors import CxrresError


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", choices=("chexnet", "official"), default="chexnet",
                        help="chexnet: the CheXNet train/val/test lists and labels (the study's default, bundled); "
                             "official: the NIH test list, validation carved patient-wise from train_val (default: %(default)s)")
    parser.add_argument("--split-dir", metavar="DIR",
                        help="read the split from train/val/test files in DIR instead (train_list.txt or train_official.txt etc.; "
                             "each line a name plus 14 labels in CheXNet order, or a name only for Data_Entry labels)")
    parser.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                        help="official split: fraction of train_val images carved out as validation, whole patients (default: %(default)s)")
    parser.add_argument("--split-seed", type=int, default=0, metavar="S",
                        help="official split: seed of the deterministic patient order for carving validation (default: %(default)s)")


def cmd_describe(args: argparse.Namespace) -> int:
    """Print class counts per split part and the official boxes of the test part."""
    from cxrres.data import DataRoot, build_split
    from cxrres.data.summary import describe_split, format_summary

    root = DataRoot.at(args.data)
    split = build_split(root, args.split, args.split_dir, args.val_fraction, args.split_seed)
    summary = describe_split(root, split)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Build the per-resolution uint8 caches."""
    from cxrres.data.cache import prepare_cache

    report = prepare_cache(args.data, args.resolutions, args.cache, args.workers, args.skip_bad, progress=not args.quiet)
    built = ",".join(map(str, report.built_px)) or "none"
    reused = ",".join(map(str, report.reused_px)) or "none"
    resumed = f", resumed at image {report.resumed_from:,}" if report.resumed_from else ""
    print(f"cache {report.cache_dir}: {report.n_images:,} images; built {built} px, reused {reused} px{resumed}; "
          f"{len(report.skipped)} skipped, {len(report.missing):,} missing; {report.seconds:.1f} s")
    for item in report.skipped:
        print(f"  skipped {item['image']}: {item['error']}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a phantom data set in the NIH layout."""
    from cxrres.synthetic import synthesize

    counts = synthesize(args.out, args.images, args.patients, args.size, args.seed, args.workers, progress=not args.quiet)
    print(f"phantom {args.out}: {counts['images']:,} images of {counts['size_px']} px from {counts['patients']:,} patients, "
          f"{counts['boxes']:,} boxes in the test part")
    return 0


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
                          help="data root: Data_Entry_2017(_v2020).csv, BBox_List_2017.csv, train_val_list.txt, test_list.txt")
    _add_split_options(describe)
    describe.add_argument("--json", action="store_true", help="print exactly one JSON object instead of tables")
    describe.set_defaults(func=cmd_describe)

    prepare = sub.add_parser("prepare", help="decode every image once into one uint8 array per resolution",
                             description="Decode each image under DIR/images/ or DIR/images_*/images/ once, area-resize it to every "
                                         "resolution, and write one memory-mappable uint8 array per resolution plus an index and a "
                                         "manifest. Interrupted runs resume; a cache is reused only if its sources are unchanged.")
    prepare.add_argument("--data", required=True, metavar="DIR", help="data root (as for describe)")
    prepare.add_argument("--resolutions", default="32,64,128,256,512", metavar="R,R,...",
                         help="square output sizes in pixels (default: %(default)s)")
    prepare.add_argument("--cache", metavar="DIR", help="cache directory (default: DIR/cxrres-cache)")
    prepare.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                         help="decoding processes (default: the number of cores, %(default)s)")
    prepare.add_argument("--skip-bad", action="store_true",
                         help="skip unreadable or truncated images and list them in the manifest instead of stopping")
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(func=cmd_prepare)

    synth = sub.add_parser("synth", help="write a synthetic ChestX-ray14 (the phantom) in the NIH layout",
                           description="Write a phantom data set: chest-like PNGs under OUT/images/, Data_Entry_2017_v2020.csv, "
                                       "train_val_list.txt / test_list.txt, a CheXNet-format split in OUT/splits/chexnet/ and "
                                       "BBox_List_2017.csv with the true box of every lesion in test images. Deterministic: the "
                                       "same arguments give byte-identical files for any worker count.")
    synth.add_argument("--out", required=True, metavar="DIR", help="output data root")
    synth.add_argument("--images", type=int, default=1000, metavar="N", help="number of images (default: %(default)s)")
    synth.add_argument("--patients", type=int, metavar="P", help="number of patients (default: images / 2.5)")
    synth.add_argument("--size", type=int, default=1024, metavar="PX", help="image side in pixels (default: %(default)s, as NIH)")
    synth.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: %(default)s)")
    synth.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="W",
                       help="rendering processes (default: the number of cores, %(default)s)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=cmd_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cxrres` console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CxrresError as exc:
        print(f"cxrres {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cxrres {args.command}: interrupted; run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
