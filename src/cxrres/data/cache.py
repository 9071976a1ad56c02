"""Resolution caches: every source image decoded once, area-resized to each resolution, stored as one uint8
array per resolution (`r{R}.npy`, shape (N, R, R)) that training memory-maps.

A cache directory holds
- `manifest.json` — the single source of truth: format, method, source fingerprint, the complete resolutions
  and the skipped images. An array not listed there as complete is never trusted;
- `index.csv` — row number, image name, source path (relative to the data root), source height/width, ok flag;
- `r{R}.npy` — the arrays; rows of skipped images are zero;
- `.work/` — only while a pass runs or after it was interrupted: partial arrays and `state.json` (how many
  leading rows are finished). A rerun with the same sources and resolutions continues from there;
- `.lock` — the file `prepare` holds an exclusive `flock` on, so that several processes preparing one cache at
  once take turns: the first builds, the others then find the resolutions complete and reuse them.

The default cache directory is not under the data root (which may be read-only shared storage) but in the user's
cache: `$CXRRES_CACHE_DIR`, else `$XDG_CACHE_HOME/cxrres`, else `~/.cache/cxrres`, then `<root name>-<hash>` of the
resolved data root (`default_cache_dir`).

Every array's size and CRC-32 (and index.csv's) are recorded in the manifest and checked whenever a resolution is
opened or reused: a truncated or altered array is refused by `ResolutionCache.open` and rebuilt by `prepare_cache`.

Sources are fingerprinted by every image's name, size in bytes and a hash of its first and last blocks
(`cache_store.source_fingerprint`; not its times) plus the method; a cache whose fingerprint differs from the current
sources is rebuilt, never reused. Images that are links to files outside the data root are followed and listed in
the manifest (`symlinks_outside_root`; `paths.resolve_images`). The manifest also records how many sources are deeper
than 8 bits (16-bit PNG/TIFF, DICOM) and the rule that converted them (`images.SIXTEEN_BIT_RULE`): a cache with such
sources made by another rule is rebuilt; one without (8-bit PNG/JPEG) is kept when the rule changes
(`cache_store.sixteen_bit_current`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from tqdm import tqdm

from cxrres import __version__
from cxrres.data.images import SIXTEEN_BIT_RULE
from cxrres.data.diskspace import cache_bytes_needed, check_free_space
from cxrres.data.cache_store import (
    SIXTEEN_BIT_KEY,
    cache_lock,
    damage,
    default_cache_dir,
    file_crc32,
    read_json,
    sixteen_bit_current,
    sixteen_bit_entry,
    source_fingerprint,
    write_json,
)
from cxrres.data.datasets import detect_dataset, listed_images
from cxrres.data.layout import DataRoot, describe_missing
from cxrres.data.paths import outside_summary, resolve_images
from cxrres.errors import CacheError
from cxrres.util.parallel import auto_workers, ordered_map, refuse_in_worker_bootstrap
from cxrres.data.cache_workers import _close_pass, _decode_task, _init_worker, _reserve, array_name

#: 2: the manifest records each array's size and CRC-32 and index.csv's CRC-32.
FORMAT_VERSION = 2
METHOD = "pad-bottom-right-to-square, cv2.INTER_AREA float32, round to uint8"
MANIFEST = "manifest.json"
INDEX = "index.csv"
WORK = ".work"
STATE = "state.json"
MIN_RESOLUTION_PX, MAX_RESOLUTION_PX = 8, 4096
#: Seconds between two progress checkpoints (memmap flush + state.json) during a pass.
CHECKPOINT_EVERY_S = 2.0


def parse_resolutions(text: str | Iterable[int]) -> tuple[int, ...]:
    """Sorted unique resolutions (px) from "64,128" or an iterable; CacheError if out of range."""
    try:
        values = [int(v) for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip()]
    except ValueError:
        raise CacheError(f"resolutions must be comma-separated integers, got {text!r}") from None
    if not values:
        raise CacheError("no resolution given")
    bad = [v for v in values if not MIN_RESOLUTION_PX <= v <= MAX_RESOLUTION_PX]
    if bad:
        raise CacheError(f"resolution {bad[0]} px out of range [{MIN_RESOLUTION_PX}, {MAX_RESOLUTION_PX}]")
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class Sources:
    """The images a cache is built from, in cache row order, and their fingerprint."""

    root: Path
    names: list[str]
    paths: list[Path]
    missing: list[str]
    fingerprint: str
    skipped_rows: tuple[str, ...] = ()  # bad metadata rows left out under skip_bad ('file:line: problem')
    outside: tuple[tuple[str, str], ...] = ()  # (name, real file) of images linked from outside the root

    @classmethod
    def scan(cls, data: DataRoot, dataset: str = "nih", skip_bad: bool = False) -> "Sources":
        """NIH: the images listed in Data_Entry (or all on disk) that exist, named by file name; another data set:
        every image it lists (all views; with `skip_bad` not those of bad metadata rows) that exists, under its name in
        the data set's table; sorted by name."""
        skipped: tuple[str, ...] = ()
        if dataset == "nih":
            paths, missing = data.locate(sorted(data.data_entry.index) if data.has_data_entry else sorted(data.images))
            names = [p.name for p in paths]
        else:
            names, paths, missing, skipped = listed_images(data.root, dataset, skip_bad)
        outside = tuple(resolve_images(data.root, names, paths).outside)
        digest = hashlib.sha256(f"format={FORMAT_VERSION};method={METHOD};sources=size+head+tail\n".encode())
        for name, path in zip(names, paths):
            digest.update(f"{name}\t{source_fingerprint(path)}\n".encode())
        return cls(data.root, names, paths, missing, digest.hexdigest(), skipped, outside)


@dataclass
class PrepareReport:
    """What a `prepare_cache` call did."""

    cache_dir: Path
    n_images: int
    resolutions_px: tuple[int, ...]
    built_px: tuple[int, ...]
    reused_px: tuple[int, ...]
    resumed_from: int
    skipped: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped_rows: tuple[str, ...] = ()  # bad metadata rows left out (skip_bad), 'file:line: problem' each


def _start_or_resume(work: Path, sources: Sources, todo: tuple[int, ...]) -> dict:
    """The state of the pass in `work`: resumed if it matches sources and resolutions, else a fresh one."""
    state = read_json(work / STATE)
    wanted = {
        "fingerprint": sources.fingerprint,
        "resolutions_px": list(todo),
        "n_images": len(sources.names),
        "sixteen_bit_rule": SIXTEEN_BIT_RULE,
    }
    arrays_ok = state is not None and all((work / array_name(r)).is_file() for r in todo)
    if state is not None and arrays_ok and all(state.get(k) == v for k, v in wanted.items()):
        return state
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    n = len(sources.names)
    for r in todo:
        np.lib.format.open_memmap(work / array_name(r), mode="w+", dtype=np.uint8, shape=(n, r, r)).flush()
    np.lib.format.open_memmap(work / "source_hw.npy", mode="w+", dtype=np.int32, shape=(n, 2)).flush()
    _reserve(work, [work / array_name(r) for r in todo] + [work / "source_hw.npy"])
    state = {**wanted, "done": 0, "skipped": [], "token": uuid.uuid4().hex}
    write_json(work / STATE, state)
    return state


def prepare_cache(
    data_dir: str | Path | DataRoot,
    resolutions_px: Iterable[int],
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    dataset: str | None = None,
) -> PrepareReport:
    """Build (or resume, or reuse) the resolution caches of the images of `data_dir` (read as `dataset`, default
    detected); see the module docstring."""
    refuse_in_worker_bootstrap("prepare_cache")  # else the worker would wait for the lock its parent holds
    started = time.perf_counter()
    data = data_dir if isinstance(data_dir, DataRoot) else DataRoot.at(data_dir)
    resolutions = parse_resolutions(resolutions_px)
    cache = Path(cache_dir).expanduser().resolve() if cache_dir else default_cache_dir(data.root)
    sources = Sources.scan(data, dataset or detect_dataset(data.root), skip_bad)
    if not sources.names:
        raise CacheError(
            f"{data.root}: no images found (looked in images/ and images_*/images/, or the data set's listed paths)"
        )
    if sources.missing:
        tqdm.write(
            f"warning: {describe_missing(sources.missing, len(sources.missing) + len(sources.names))}; caching "
            f"the {len(sources.names):,} present (train on them with --allow-missing)",
            file=sys.stderr,
        )
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(
            f"{cache}: cannot create cache directory ({exc.strerror}); choose another with --cache"
        ) from None
    with cache_lock(cache):
        return _prepare_locked(cache, sources, resolutions, workers, skip_bad, progress, started)


def _complete_resolutions(cache: Path, manifest: dict, wanted: tuple[int, ...]) -> set[int]:
    """The complete resolutions of a matching manifest; a wanted one whose array or index is damaged is left out
    (so that it is rebuilt), with a message."""
    complete = {int(r) for r in manifest.get("resolutions_px", {})}
    index_problem = damage(cache / INDEX, manifest.get("index_file", {}))
    for r in sorted(complete & set(wanted)):
        problem = index_problem and f"{INDEX}: {index_problem}"
        problem = problem or damage(cache / array_name(r), manifest["resolutions_px"][str(r)])
        if problem:
            tqdm.write(f"{cache / array_name(r)}: damaged ({problem}); rebuilding it", file=sys.stderr)
            complete.discard(r)
    return complete


def _prepare_locked(
    cache: Path,
    sources: Sources,
    resolutions: tuple[int, ...],
    workers: int | None,
    skip_bad: bool,
    progress: bool,
    started: float,
) -> PrepareReport:
    """`prepare_cache` once the cache directory exists and this process holds its lock."""
    manifest = read_json(cache / MANIFEST)
    if (
        manifest
        and manifest.get("fingerprint") == sources.fingerprint
        and manifest.get("format") == FORMAT_VERSION
        and sixteen_bit_current(cache / MANIFEST, manifest, sources.paths)
    ):
        complete = _complete_resolutions(cache, manifest, resolutions)
    else:
        manifest, complete = None, set()
    todo = tuple(r for r in resolutions if r not in complete)
    reused = tuple(r for r in resolutions if r in complete)
    report = PrepareReport(
        cache,
        len(sources.names),
        resolutions,
        todo,
        reused,
        0,
        missing=sources.missing,
        skipped_rows=sources.skipped_rows,
    )
    if not todo:
        report.skipped = manifest.get("skipped", []) if manifest else []
        report.seconds = time.perf_counter() - started
        return report

    if not os.access(cache, os.W_OK):
        raise CacheError(
            f"{cache}: cache directory is not writable and lacks {','.join(map(str, todo))} px; "
            "choose another with --cache"
        )
    work = cache / WORK
    if not (work / STATE).is_file():  # a resumed build already holds its arrays
        check_free_space(cache, cache_bytes_needed(len(sources.names), todo), "prepare")
    state = _start_or_resume(work, sources, todo)
    report.resumed_from = state["done"]
    # The workers write the rows; the parent maps the same files only to flush them at checkpoints (msync writes back
    # a file's dirty pages whichever process dirtied them).
    arrays = {r: np.load(work / array_name(r), mmap_mode="r+") for r in todo}
    source_hw = np.load(work / "source_hw.npy", mmap_mode="r+")
    n = len(sources.names)
    token = state.setdefault("token", uuid.uuid4().hex)
    tasks = [(i, str(sources.paths[i]), todo, str(work), token) for i in range(state["done"], n)]
    n_workers = max(1, workers if workers is not None else auto_workers(len(tasks)))

    def checkpoint(done: int) -> None:
        for array in arrays.values():
            array.flush()
        source_hw.flush()
        state["done"] = done
        write_json(work / STATE, state)

    last = time.monotonic()
    bar = tqdm(
        total=n, initial=state["done"], unit="img", desc=f"prepare {','.join(map(str, todo))} px", disable=not progress
    )
    try:
        for row, ok, shape, error in ordered_map(_decode_task, tasks, n_workers, initializer=_init_worker):
            if not ok:
                if not skip_bad:
                    checkpoint(row)
                    raise CacheError(f"{error} (use --skip-bad to skip it and list it in the manifest)")
                state["skipped"].append({"image": sources.names[row], "error": error})
                tqdm.write(f"skipped: {error}", file=sys.stderr)
            else:
                source_hw[row] = shape
            bar.update(1)
            if time.monotonic() - last > CHECKPOINT_EVERY_S:
                checkpoint(row + 1)
                last = time.monotonic()
        checkpoint(n)
    finally:
        bar.close()
        _close_pass(token)
    _finish(cache, work, sources, todo, manifest, state, np.asarray(source_hw))
    arrays.clear()  # drop the parent's memory maps (here and in `checkpoint`) before the work folder goes
    source_hw = None
    shutil.rmtree(work, ignore_errors=True)
    report.skipped = state["skipped"]
    report.seconds = time.perf_counter() - started
    return report


def _finish(
    cache: Path,
    work: Path,
    sources: Sources,
    todo: tuple[int, ...],
    manifest: dict | None,
    state: dict,
    source_hw: np.ndarray,
) -> None:
    """Move the finished arrays into place and publish the manifest (invalidate first, then rename, then publish)."""
    kept = dict(manifest["resolutions_px"]) if manifest else {}
    for r in todo:
        kept.pop(str(r), None)
    payload = {
        "format": FORMAT_VERSION,
        "cxrres_version": __version__,
        "method": METHOD,
        "fingerprint": sources.fingerprint,
        "data_root": str(sources.root),
        "n_images": len(sources.names),
        "n_missing": len(sources.missing),
        "resolutions_px": kept,
        "skipped": state["skipped"],
        "symlinks_outside_root": outside_summary(list(sources.outside)),
        "index": INDEX,
        SIXTEEN_BIT_KEY: manifest[SIXTEEN_BIT_KEY] if manifest else sixteen_bit_entry(sources.paths),
    }
    write_json(cache / MANIFEST, payload)  # stale arrays of `todo` are no longer trusted from here on
    skipped = {s["image"] for s in state["skipped"]}
    index = pd.DataFrame(
        {
            "row": np.arange(len(sources.names)),
            "image": sources.names,
            "source": [os.path.relpath(p, sources.root) for p in sources.paths],
            "source_height_px": source_hw[:, 0],
            "source_width_px": source_hw[:, 1],
            "ok": [name not in skipped for name in sources.names],
        }
    )
    tmp_index = cache / (INDEX + ".tmp")
    index.to_csv(tmp_index, index=False)
    index_bytes, index_crc = file_crc32(tmp_index)
    os.replace(tmp_index, cache / INDEX)
    payload["index_file"] = {"bytes": index_bytes, "crc32": index_crc}
    for r in todo:
        size, crc = file_crc32(work / array_name(r))
        os.replace(work / array_name(r), cache / array_name(r))
        payload["resolutions_px"][str(r)] = {
            "file": array_name(r),
            "shape": [len(sources.names), r, r],
            "dtype": "uint8",
            "bytes": size,
            "crc32": crc,
        }
    if manifest is None:  # sources changed: arrays of resolutions not rebuilt now are stale
        for stale in cache.glob("r*.npy"):
            if stale.name not in {array_name(r) for r in todo}:
                stale.unlink()
    payload["completed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(cache / MANIFEST, payload)


@dataclass(frozen=True)
class ResolutionCache:
    """One complete resolution of a cache: a read-only memory map and the row of each image."""

    cache_dir: Path
    resolution_px: int
    rows: dict[str, int]
    source_size_px: dict[str, int]  # side of the padded square frame, max(h, w)
    source_hw: dict[str, tuple[int, int]]  # (height, width) of the source image, px
    sources: dict[str, str]  # source path relative to the data root

    @classmethod
    def open(cls, cache_dir: str | Path, resolution_px: int) -> "ResolutionCache":
        """Open a complete resolution; CacheError (naming the directory or file) if it is absent, incomplete, or its
        array or index differs from the size and CRC-32 in the manifest (one read of the array: 0.18 s for 425 MB in the
        page cache, measured on the 405-image 1024-px cache; repeated opens of an unchanged file in one process are
        free)."""
        cache_dir = Path(cache_dir)
        manifest = read_json(cache_dir / MANIFEST)
        if manifest is None:
            raise CacheError(f"{cache_dir}: no complete cache here (manifest.json missing); run `cxrres prepare`")
        if str(resolution_px) not in manifest.get("resolutions_px", {}):
            have = ", ".join(sorted(manifest.get("resolutions_px", {}), key=int)) or "none"
            raise CacheError(
                f"{cache_dir}: resolution {resolution_px} px not prepared (complete: {have}); "
                f"run `cxrres prepare --resolutions {resolution_px}`"
            )
        rebuild = (
            f"run `cxrres prepare --data {manifest.get('data_root', 'DIR')} --resolutions {resolution_px} "
            f"--cache {cache_dir}` to rebuild it"
        )
        if manifest.get("format") != FORMAT_VERSION:
            raise CacheError(
                f"{cache_dir}: cache format {manifest.get('format')} was written by another cxrres version "
                f"(this one reads format {FORMAT_VERSION}); {rebuild}"
            )
        for path, entry in (
            (cache_dir / INDEX, manifest.get("index_file", {})),
            (cache_dir / array_name(resolution_px), manifest["resolutions_px"][str(resolution_px)]),
        ):
            problem = damage(path, entry)
            if problem:
                raise CacheError(f"{path}: damaged cache file ({problem}); not used; {rebuild}")
        index = pd.read_csv(cache_dir / INDEX)
        ok = index[index["ok"]]
        side = np.maximum(ok["source_height_px"], ok["source_width_px"]).astype(int)
        hw = zip(ok["source_height_px"].astype(int), ok["source_width_px"].astype(int))
        return cls(
            cache_dir,
            resolution_px,
            dict(zip(ok["image"], ok["row"].astype(int))),
            dict(zip(ok["image"], side)),
            dict(zip(ok["image"], hw)),
            dict(zip(ok["image"], ok["source"].astype(str))),
        )

    def array(self) -> np.ndarray:
        """The (N, R, R) uint8 array, memory-mapped read-only (cheap; call once per process)."""
        return np.load(self.cache_dir / array_name(self.resolution_px), mmap_mode="r")

    def rows_of(self, names: list[str]) -> np.ndarray:
        """Cache rows of `names`; CacheError listing those not in the cache (missing or skipped)."""
        absent = [n for n in names if n not in self.rows]
        if absent:
            raise CacheError(
                f"{self.cache_dir}: {len(absent):,} images not in the cache (missing or skipped; first: "
                f"{', '.join(absent[:5])})"
            )
        return np.asarray([self.rows[n] for n in names], np.int64)
