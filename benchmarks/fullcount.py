"""The real study's scale without its images: the real 112,120-row NIH metadata through `describe`, `prepare --dry-run`
and `study --plan` (time and peak memory of each command), and a projection of the real study's disk and GPU time.

The GPU figures are a FLOP estimate until `make bench-gpu` has measured them on a GPU: DenseNet-121 costs 2.83 GMACs
per 224-px image forward (torchvision's weights table), a training step ≈ 3× the forward, cost ∝ R²; the achieved rate
is an assumption stated in the table.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import REAL, record
from cxrres.data.diskspace import cache_bytes_needed

GMACS_224 = 2.83  # DenseNet-121 forward, 224 px (torchvision)
TRAIN_IMAGES, VAL_IMAGES = 78_468, 11_219  # CheXNet split
ALL_IMAGES = 112_120


def timed(command: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MiB, stdout) of a command, from GNU time."""
    result = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True, check=True)
    wall, kib = result.stderr.strip().splitlines()[-1].split()
    return float(wall), int(kib) / 1024, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolutions", default="32,64,128,256,512,1024")
    parser.add_argument("--epochs", type=int, default=25, help="assumed epochs per run (early stopping decides)")
    parser.add_argument("--tflops", type=float, default=40.0, help="assumed achieved bf16 TFLOP/s of one GPU")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    resolutions = [int(r) for r in args.resolutions.split(",")]
    cxrres = [sys.executable, "-m", "cxrres.cli"]
    rows = ["| Command | wall (s) | peak RSS (MiB) | result |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        wall, rss, out = timed([*cxrres, "describe", "--data", str(REAL)])
        rows.append(f"| `cxrres describe --data NIH` | {wall:.1f} | {rss:,.0f} | {out.splitlines()[0]} |")
        wall, rss, out = timed(
            [
                *cxrres,
                "prepare",
                "--data",
                str(REAL),
                "--resolutions",
                args.resolutions,
                "--dry-run",
                "--cache",
                str(Path(tmp) / "cache"),
            ]
        )
        total = next(line for line in out.splitlines() if line.strip().startswith("total"))
        rows.append(
            f"| `cxrres prepare --dry-run` ({args.resolutions} px) | {wall:.1f} | {rss:,.0f} | "
            f"{re.sub(r' +', ' ', total.strip())} |"
        )
        wall, rss, out = timed(
            [
                *cxrres,
                "study",
                "--data",
                str(REAL),
                "--resolutions",
                args.resolutions,
                "--seeds",
                ",".join(map(str, range(args.seeds))),
                "--out",
                str(Path(tmp) / "study"),
                "--plan",
            ]
        )
        jobs = sum(line.startswith("cxrres train") for line in out.splitlines())
        rows.append(
            f"| `cxrres study --plan` ({len(resolutions)} resolutions × {args.seeds} seeds) | {wall:.1f} | {rss:,.0f} "
            f"| {jobs} train commands |"
        )
    projection = [
        "| Resolution | cache (GB) | train+val GFLOP per epoch (est.) | epoch on one GPU (est., min) | "
        f"{args.epochs} epochs × {args.seeds} seeds (GPU h, est.) |",
        "|---|---|---|---|---|",
    ]
    total_hours = 0.0
    for r in resolutions:
        forward = 2 * GMACS_224 * (r / 224) ** 2  # GFLOP per image forward
        epoch_gflop = TRAIN_IMAGES * 3 * forward + VAL_IMAGES * forward
        minutes = epoch_gflop / (args.tflops * 1e3) / 60
        hours = minutes * args.epochs * args.seeds / 60
        total_hours += hours
        projection.append(
            f"| {r} px | {cache_bytes_needed(ALL_IMAGES, [r]) / 1e9:,.2f} | {epoch_gflop:,.0f} | {minutes:,.1f} | "
            f"{hours:,.1f} |"
        )
    projection.append(f"| all | {cache_bytes_needed(ALL_IMAGES, resolutions) / 1e9:,.2f} | | | {total_hours:,.1f} |")
    notes = (
        f"GPU columns are a FLOP ESTIMATE, not a measurement: {GMACS_224} GMACs per 224-px forward (torchvision), "
        f"training = 3 × forward, cost ∝ R², an assumed {args.tflops:g} TFLOP/s achieved in bf16 and {args.epochs} "
        "epochs per run; the loader is assumed not to limit. Replace them with `make bench-gpu` figures once measured."
    )
    record(
        f"The full count: {ALL_IMAGES:,} images listed (real NIH metadata, images absent)",
        "\n".join(rows) + "\n\nProjection of the real study:\n\n" + "\n".join(projection),
        notes,
    )


if __name__ == "__main__":
    main()
