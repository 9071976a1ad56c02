"""Small shared helpers for long jobs: ordered parallel map and atomic file writes."""

from __future__ import annotations

import concurrent.futures as futures
import json
import multiprocessing
import os
import sys
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from cxrres.errors import CxrresError

T = TypeVar("T")
R = TypeVar("R")

#: Seconds the first task of a new pool may take (worker start-up included) before the work runs in-process instead.
STARTUP_TIMEOUT_S = 120.0
#: Seconds between checks while waiting on a result, so that a signal handler (SIGTERM) runs promptly.
POLL_S = 0.5


class WorkerDied(CxrresError):
    """A worker process of a parallel map ended abruptly (killed, out of memory, a bus error on a full disk)."""


def _chunk(func: Callable[[T], R], items: list[T]) -> list[R]:
    """Worker: `func` over one chunk of items."""
    return [func(item) for item in items]


def _result(future: futures.Future) -> object:
    """`future.result()`, waiting in short steps so that signals (SIGTERM, Ctrl-C) are handled while it runs."""
    while True:
        done, _ = futures.wait([future], timeout=POLL_S)
        if done:
            return future.result()


def _stop(executor: futures.ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (never wait on them: one may be dead or stuck)."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)


def in_worker_bootstrap() -> bool:
    """True while a spawned worker imports the parent's `__main__` (an unguarded script re-running at its start)."""
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def refuse_in_worker_bootstrap(what: str) -> None:
    """End a spawned worker at once, quietly, when it re-runs an unguarded `__main__` that calls `what`: it would wait
    for a lock its parent holds. The parent sees its pool broken and works in-process after one warning."""
    if in_worker_bootstrap():
        os._exit(3)


def _start_pool(workers: int, initializer: Callable[[], None] | None) -> futures.ProcessPoolExecutor | None:
    """A spawn pool whose workers answered, or None (with one warning) where worker processes cannot run here:
    no /dev/shm or semaphores, a sandbox, or a `__main__` that is not import-guarded (the children die at start)."""
    try:
        executor = futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer
        )
    except (OSError, ImportError, NotImplementedError) as error:
        reason = str(error) or type(error).__name__
    else:
        try:
            probe = executor.submit(os.getpid)
            done, _ = futures.wait([probe], timeout=STARTUP_TIMEOUT_S)
            if done and probe.exception() is None:
                return executor
            reason = f"no worker answered within {STARTUP_TIMEOUT_S:.0f} s" if not done else str(probe.exception())
            if done and isinstance(probe.exception(), BrokenProcessPool):
                reason = (
                    "a worker died at start-up, as it does when the main script has no `if __name__ == "
                    "'__main__':` guard"
                )
        except (OSError, BrokenProcessPool, RuntimeError) as error:
            if in_worker_bootstrap():
                _stop(executor)  # a spawned child importing an unguarded __main__: die, and the parent falls back
                raise
            reason = str(error) or type(error).__name__
            if isinstance(error, BrokenProcessPool):
                reason = (
                    "a worker died at start-up, as it does when the main script has no `if __name__ == "
                    "'__main__':` guard"
                )
        except BaseException:
            _stop(executor)
            raise
        _stop(executor)
    print(
        f"warning: worker processes cannot start here ({reason.splitlines()[0] if reason else 'unknown'}); "
        "working in this process instead",
        file=sys.stderr,
    )
    return None


#: Below this many items the automatic worker count is 1 (the work runs in this process): a spawned worker imports
#: what its parent's main module imports (torch, Lightning), ≈ 4 s on the 2-core development machine, about the
#: serial decode of 100 1024-px PNGs. Measured: `cxrres prepare` of a 60-image 64-px phantom at 32 and 48 px took
#: 8.2 s with 2 workers and 4.3 s with 1; `prepare_cache` in a process that imported torch, 3.96 s and 0.03 s.
MIN_ITEMS_FOR_WORKERS = 100


def auto_workers(n_items: int) -> int:
    """The automatic number of worker processes for `n_items` items: every CPU, or 1 for a small job."""
    return 1 if n_items < MIN_ITEMS_FOR_WORKERS else (os.cpu_count() or 1)


def ordered_map(
    func: Callable[[T], R],
    items: list[T],
    workers: int,
    chunksize: int = 4,
    initializer: Callable[[], None] | None = None,
) -> Iterator[R]:
    """`map(func, items)` in `workers` processes (in-process for 1), results streamed in input order.

    Workers are spawned, never forked: a fork of a process whose native thread pools (PyTorch's, or OpenCV's once
    cv2.resize has run here) hold a lock can deadlock the child. Both were seen: `cxrres train` preparing its
    cache, and a second `prepare_cache` call after an in-process one. Spawning costs ≈ 10 % on 405 images.
    `func` and `initializer` must be importable module-level functions.

    Nothing hangs: a worker that dies (killed, out of memory, SIGBUS) raises `WorkerDied` at once and the others are
    ended; so does a signal handler's exception (SIGTERM) or the consumer leaving early. Where workers cannot start
    at all, the work runs in this process after one warning.
    """
    if workers <= 1 or len(items) <= 1:
        yield from map(func, items)
        return
    executor = _start_pool(workers, initializer)
    if executor is None:
        yield from map(func, items)
        return
    chunks = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
    pending: deque[futures.Future] = deque()
    window = 2 * workers  # chunks in flight: bounds the results held in memory
    try:
        for start in range(len(chunks)):
            while len(pending) < window and start + len(pending) < len(chunks):
                pending.append(executor.submit(_chunk, func, chunks[start + len(pending)]))
            yield from _result(pending.popleft())  # type: ignore[misc]
    except BrokenProcessPool:
        raise WorkerDied(
            "a worker process died abruptly (killed, out of memory, or a write to a full disk); "
            "the others were stopped; run the same command again to continue"
        ) from None
    finally:
        _stop(executor)


def _with_path(error: OSError, path: Path) -> OSError:
    """`error` naming `path` when it names no file (a failed write or fsync of an open file names none)."""
    if error.filename is None and error.errno is not None:
        return type(error)(error.errno, error.strerror or os.strerror(error.errno), str(path))
    return error


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` through a temporary file, fsync and a rename, so readers never see half a file; on failure (a
    full disk) the temporary file is removed and the OSError names `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise _with_path(error, path) from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) atomically (see `write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload: dict, sort_keys: bool = False) -> None:
    """Write `payload` as indented JSON atomically (see `write_text_atomic`)."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=sort_keys) + ("" if sort_keys else "\n"))
