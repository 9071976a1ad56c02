"""Peak memory of `cxrres train` against the size of the data set: the images live in a memory-mapped cache, so the
process's private (anonymous) memory must not grow with the number of images.

Each size gets its own phantom (images of the training resolution, so that generation is quick), one epoch, in a fresh
process.
The parent samples /proc/PID/status every 50 ms: RssAnon (private memory: tensors, model, optimizer, Python) and
RssFile (pages of mapped files: the cache and the libraries; clean, shared with the page cache and dropped by the
kernel under pressure, so they are not a memory cost of the data set), and VmHWM (the kernel's peak RSS, both kinds).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import record
from cxrres.data.cache_store import default_cache_dir

FIELDS = ("RssAnon", "RssFile", "VmHWM")


def status_kib(pid: int) -> dict[str, int]:
    """The FIELDS of /proc/PID/status in KiB (empty once the process has gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    values = {line.split(":")[0]: line.split(":")[1] for line in lines if line.split(":")[0] in FIELDS}
    return {k: int(v.split()[0]) for k, v in values.items()}


def peak_memory(command: list[str]) -> tuple[dict[str, int], float]:
    """Run `command`; the peak of each FIELD over its life (KiB) and its wall time (s). Fails if the command fails."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks = dict.fromkeys(FIELDS, 0)
    while process.poll() is None:
        for k, v in status_kib(process.pid).items():
            peaks[k] = max(peaks[k], v)
        time.sleep(0.05)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {process.stderr.read()[-2000:]}")
    return peaks, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="500,6000", help="numbers of phantom images (default: %(default)s)")
    parser.add_argument(
        "--resolution", type=int, default=128, help="training resolution and phantom size, px (default: %(default)s)"
    )
    args = parser.parse_args()
    cxrres = str(Path(sys.executable).with_name("cxrres"))
    rows = [
        "| Images (train/val/test) | Cache (MiB) | peak RssAnon (MiB) | peak RssFile (MiB) | peak RSS, VmHWM (MiB) | "
        "wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            data = Path(tmp) / f"phantom{n}"
            subprocess.run(
                [cxrres, "synth", "--out", str(data), "--images", str(n), "--size", str(args.resolution), "--quiet"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            subprocess.run(
                [cxrres, "prepare", "--data", str(data), "--resolutions", str(args.resolution), "--quiet"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            parts = [
                len((data / "splits" / "chexnet" / f"{p}_list.txt").read_text().split("\n")) - 1
                for p in ("train", "val", "test")
            ]
            peaks, wall = peak_memory(
                [
                    cxrres,
                    "train",
                    "--data",
                    str(data),
                    "--resolution",
                    str(args.resolution),
                    "--weights",
                    "none",
                    "--max-epochs",
                    "1",
                    "--out",
                    str(Path(tmp) / f"run{n}"),
                    "--quiet",
                ]
            )
            cache_mib = sum(f.stat().st_size for f in default_cache_dir(data).glob("*.npy")) / 2**20
            mib = {k: v / 1024 for k, v in peaks.items()}
            rows.append(
                f"| {n:,} ({'/'.join(map(str, parts))}) | {cache_mib:.1f} | {mib['RssAnon']:,.0f} | "
                f"{mib['RssFile']:,.0f} | {mib['VmHWM']:,.0f} | {wall:.0f} |"
            )
            print(rows[-1], flush=True)
    record(
        "Memory: peak of `cxrres train` against the data set size",
        "\n".join(rows),
        f"DenseNet-121 from scratch, one epoch at {args.resolution} px, defaults otherwise (CPU: 0 loader workers); "
        f"phantoms of {args.resolution}-px images. RssAnon = private memory; RssFile = resident pages of mapped files "
        "(the cache, shared libraries); sampled every 50 ms.",
    )


if __name__ == "__main__":
    main()
