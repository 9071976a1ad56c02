"""Room on disk before writing: what a resolution cache and a run's checkpoints take, and a check that refuses, in
one line naming the path, what is needed and what is free, before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

from cxrres.errors import CxrresError

#: Bytes of one index.csv row (row, image name, relative source path, height, width, ok), rounded up from
#: "112119,00030805_000.png,images_012/images/00030805_000.png,1024,1024,True" (73 bytes).
INDEX_ROW_BYTES = 96
#: Bytes of one .npy header plus manifest.json's share per resolution, rounded up.
ARRAY_OVERHEAD_BYTES = 4096
#: Bytes of one stored parameter value (float32) in a checkpoint.
PARAMETER_BYTES = 4
#: Values stored per parameter in a checkpoint: the weight and AdamW's two moments (exp_avg, exp_avg_sq).
VALUES_PER_PARAMETER = 3
#: Checkpoints a run keeps at once: best.ckpt and last.ckpt.
CHECKPOINTS_KEPT = 2


class DiskSpaceError(CxrresError):
    """The file system of an output path has less free space than the output needs."""


def cache_bytes_needed(n_images: int, resolutions_px: Iterable[int]) -> int:
    """Bytes a cache of `n_images` at `resolutions_px` (pixels per side) writes: one uint8 per pixel per image at
    each resolution (images x sum of R^2), the index and the per-array headers."""
    resolutions = [int(r) for r in resolutions_px]
    if n_images < 0 or any(r <= 0 for r in resolutions):
        raise ValueError(f"need n_images >= 0 and positive resolutions, got {n_images} and {resolutions}")
    return (
        n_images * sum(r * r for r in resolutions)
        + n_images * INDEX_ROW_BYTES
        + len(resolutions) * ARRAY_OVERHEAD_BYTES
    )


def checkpoint_bytes_needed(n_parameters: int) -> int:
    """Bytes a run's checkpoints take: best and last, each float32 weights plus AdamW's two moments per parameter."""
    return CHECKPOINTS_KEPT * VALUES_PER_PARAMETER * PARAMETER_BYTES * int(n_parameters)


def format_bytes(n_bytes: float) -> str:
    """'1.5 GB' (decimal units: B, kB, MB, GB, TB)."""
    value = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (an output folder may not exist yet)."""
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(path: str | Path, needed_bytes: int, what: str) -> None:
    """Raise DiskSpaceError (one line: what, path, needed, free) when `path`'s file system has fewer than
    `needed_bytes` bytes free; `path` may not exist yet."""
    free = shutil.disk_usage(_existing(Path(path))).free
    if free < needed_bytes:
        raise DiskSpaceError(
            f"{what}: {path} needs {format_bytes(needed_bytes)} but its file system has {format_bytes(free)} free"
        )
