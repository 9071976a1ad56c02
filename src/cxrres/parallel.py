"""Small shared helpers for long jobs: ordered parallel map and atomic file writes."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(func: Callable[[T], R], items: list[T], workers: int, chunksize: int = 4,
                initializer: Callable[[], None] | None = None) -> Iterator[R]:
    """`map(func, items)` in `workers` processes (in-process for 1), results streamed in input order.

    Workers are spawned, never forked: a fork of a process whose native thread pools (PyTorch's, or OpenCV's once
    cv2.resize has run here) hold a lock can deadlock the child. Both were seen: `cxrres train` preparing its
    cache, and a second `prepare_cache` call after an in-process one. Spawning costs ≈ 10 % on 405 images.
    `func` and `initializer` must be importable module-level functions.
    """
    if workers <= 1 or len(items) <= 1:
        yield from map(func, items)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=initializer) as pool:
        yield from pool.imap(func, items, chunksize=chunksize)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` through a temporary file, fsync and a rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) atomically (see `write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload: dict, sort_keys: bool = False) -> None:
    """Write `payload` as indented JSON atomically (see `write_text_atomic`)."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=sort_keys) + ("" if sort_keys else "\n"))
