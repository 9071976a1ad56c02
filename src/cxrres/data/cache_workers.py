"""What prepare's worker processes run: decode one image at every resolution and write its rows straight into the pass's
memory-mapped arrays (opened once per worker and pass), and the on-disk reservation of those arrays."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from cxrres.data.images import load_resized
from cxrres.data.pixel_rules import ImageReadError
from cxrres.errors import CacheError


def array_name(resolution_px: int) -> str:
    """File name of the cache array for one resolution."""
    return f"r{resolution_px}.npy"


def _decode(task: tuple[int, str, tuple[int, ...]]) -> tuple[int, dict[int, np.ndarray] | None, tuple[int, int], str]:
    """Worker: (row, path, resolutions) -> (row, arrays or None, source (h, w), error message)."""
    row, path, resolutions = task
    try:
        arrays, shape = load_resized(path, resolutions)
        return row, arrays, shape, ""
    except ImageReadError as exc:
        return row, None, (0, 0), str(exc)


#: Per process: the memory-mapped arrays of the pass being written, by (work dir, pass token, resolution).
_OPEN_ARRAYS: dict[tuple[str, str, int], np.ndarray] = {}


def _pass_array(work: str, token: str, resolution_px: int) -> np.ndarray:
    """The pass's array for `resolution_px`, memory-mapped read-write once per process."""
    key = (work, token, resolution_px)
    if key not in _OPEN_ARRAYS:
        _OPEN_ARRAYS[key] = np.load(Path(work) / array_name(resolution_px), mmap_mode="r+")
    return _OPEN_ARRAYS[key]


def _close_pass(token: str) -> None:
    """Drop this process's mappings of a finished or abandoned pass."""
    for key in [k for k in _OPEN_ARRAYS if k[1] == token]:
        del _OPEN_ARRAYS[key]


def _decode_task(task: tuple[int, str, tuple[int, ...], str, str]) -> tuple[int, bool, tuple[int, int], str]:
    """Worker: decode one image (via `_decode`, looked up at call time so tests can replace it) and write its rows
    straight into the pass's memory-mapped arrays, so only (row, ok, source size, error) travels back to the parent.
    """
    row, path, resolutions, work, token = task
    row, arrays, shape, error = _decode((row, path, resolutions))
    if arrays is not None:
        for r, image in arrays.items():
            _pass_array(work, token, r)[row] = image
    return row, arrays is not None, shape, error


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _reserve(work: Path, paths: list[Path]) -> None:
    """Allocate the disk blocks of the (sparse) pass arrays now: a full disk is then one error here, not a bus error
    (SIGBUS) that kills a worker writing its memory-mapped rows half-way (another process filling the disk)."""
    for path in paths:
        size = path.stat().st_size
        try:
            with open(path, "r+b") as handle:
                os.posix_fallocate(handle.fileno(), 0, size)
        except OSError as error:
            shutil.rmtree(work, ignore_errors=True)
            raise CacheError(
                f"{path}: cannot reserve {size:,} bytes ({error.strerror}); free space or choose another --cache"
            ) from None
