"""What every benchmark shares: the machine description, the images to use, timing, and RESULTS.md."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).with_name("RESULTS.md")
REAL = Path(os.environ.get("CXRRES_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data" / "chestxray14"))


def machine() -> str:
    """CPU model, cores, memory, GPU, and library versions, on one line."""
    import numpy
    import torch

    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {numpy.__version__}"
    )


def source_images(limit: int = 400) -> tuple[list[Path], str]:
    """1024-px PNGs: the real NIH images when present, else a phantom generated once under /tmp."""
    real = sorted((REAL / "images").glob("*.png")) if (REAL / "images").is_dir() else []
    if real:
        return real[:limit], f"{min(limit, len(real))} real NIH 1024-px PNGs"
    from cxrres.synthetic import synthesize

    out = Path("/tmp/cxrres-bench-phantom")
    if not (out / "splits" / "chexnet" / "test_list.txt").is_file():
        synthesize(out, n_images=limit, size_px=1024, seed=0, progress=False)
    return sorted((out / "images").glob("*.png"))[:limit], f"{limit} phantom 1024-px PNGs (real images absent)"


def best_of(func: Callable[[], object], repeats: int = 3) -> float:
    """Fastest wall time of `repeats` calls, seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def record(title: str, table: str, notes: str = "") -> None:
    """Print the table and append it to RESULTS.md with the machine and the exact command."""
    command = "python -m " + shlex.join(
        [Path(sys.argv[0]).stem and f"benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]
    )
    block = (
        f"\n## {title} — {time.strftime('%Y-%m-%d')}\n\nMachine: {machine()}  \nCommand: `{command}`\n\n{table}\n"
        + (f"\n{notes}\n" if notes else "")
    )
    print(block)
    with open(RESULTS, "a", encoding="utf-8") as handle:
        handle.write(block)
