"""Where a cache lives and whether its files are intact: the default directory outside the data root, the lock that
serialises builders, CRC-32 checks of its arrays, whether its 16-bit sources were converted by today's rule, and its
JSON files."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from cxrres.data.images import SIXTEEN_BIT_RULE, follows_sixteen_bit_rule
from cxrres.util.parallel import write_json_atomic

LOCK = ".lock"
#: Environment variable: the directory holding the default caches, one subdirectory per data root.
CACHE_DIR_ENV = "CXRRES_CACHE_DIR"
#: Bytes read per step when checksumming an array (bounds the memory of a check).
CHECKSUM_CHUNK_BYTES = 16 * 2**20


def user_cache_home() -> Path:
    """Directory of the default caches: $CXRRES_CACHE_DIR, else $XDG_CACHE_HOME/cxrres, else ~/.cache/cxrres."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache").resolve() / "cxrres"


def root_hash(data_dir: str | Path) -> str:
    """12 hex digits of the SHA-256 of a data root's resolved path: what tells two roots apart in folder names."""
    return hashlib.sha256(str(Path(data_dir).expanduser().resolve()).encode()).hexdigest()[:12]


def default_cache_dir(data_dir: str | Path) -> Path:
    """The default cache of a data root: `user_cache_home() / "<root name>-<root_hash(root)>"`."""
    root = Path(data_dir).expanduser().resolve()
    return user_cache_home() / f"{root.name or 'root'}-{root_hash(root)}"


@contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `cache/.lock` (blocking; released by the OS if the process dies).

    Where the lock file cannot be created (a read-only, complete cache) or the file system has no locks, this
    goes on unlocked; a message says so when another process may be writing.
    """
    try:
        fd = os.open(cache / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            tqdm.write(f"{cache}: another process is preparing this cache; waiting for it", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            tqdm.write(
                f"{cache}: file locks unavailable here ({exc.strerror}); do not prepare it from two processes at once",
                file=sys.stderr,
            )
        yield
    finally:
        os.close(fd)


def file_crc32(path: Path) -> tuple[int, str]:
    """(size in bytes, CRC-32 as 8 hex digits) of a file, read in CHECKSUM_CHUNK_BYTES steps."""
    crc, size = 0, 0
    buffer = bytearray(CHECKSUM_CHUNK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            crc = zlib.crc32(view[:n], crc)
            size += n
    return size, f"{crc:08x}"


#: Bytes of a source image's head and of its tail that its fingerprint hashes (the whole file when it is shorter
#: than twice this): a PNG's tail holds the zlib stream's Adler-32 of all its pixels.
FINGERPRINT_BLOCK_BYTES = 16 * 1024


def source_fingerprint(path: Path) -> str:
    """A source image's content fingerprint: its size in bytes and the SHA-256 of its first and last
    FINGERPRINT_BLOCK_BYTES (all of it when shorter than two blocks): at most 32 KiB read per image.

    Any change of size, of the first or last 16 KiB is detected, whatever the file's times (a file swapped for
    another of the same size with its mtime kept included). Not detected: a same-size edit confined to the middle of
    a file over 32 KiB (for a PNG, whose tail holds the Adler-32 of all its pixel data, only an Adler-32 collision)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            digest.update(handle.read(FINGERPRINT_BLOCK_BYTES))
            if size > FINGERPRINT_BLOCK_BYTES:
                handle.seek(max(FINGERPRINT_BLOCK_BYTES, size - FINGERPRINT_BLOCK_BYTES))
                digest.update(handle.read(FINGERPRINT_BLOCK_BYTES))
    except OSError as exc:  # a folder named like an image, an unreadable file: decoding it names it (or skips it)
        return f"unreadable:{exc.errno}"
    return f"{size}:{digest.hexdigest()}"


#: Per process: files already checked, by (path, device, inode, size, mtime ns, ctime ns) -> CRC-32 they matched.
_VERIFIED: dict[tuple, str] = {}
#: A check is remembered only for a file last changed at least this long before it (s): file times are coarse, so a
#: file altered within the same tick as its check could otherwise keep the same times.
VERIFIED_MIN_AGE_S = 2.0


def damage(path: Path, entry: dict) -> str | None:
    """What is wrong with a cache file against its manifest entry (`bytes`, `crc32`), or None if it matches.

    A check of an unchanged file (same inode, size and times) is done once per process.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "file missing"
    if "bytes" not in entry or "crc32" not in entry:
        return "no checksum recorded (made by an older cxrres)"
    if stat.st_size != entry["bytes"]:
        return f"{stat.st_size:,} bytes, expected {entry['bytes']:,} (truncated or overwritten)"
    key = (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if _VERIFIED.get(key) == entry["crc32"]:
        return None
    started = time.time()
    _, crc = file_crc32(path)
    if crc != entry["crc32"]:
        return f"CRC-32 {crc}, expected {entry['crc32']} (bytes changed after prepare)"
    if started - max(stat.st_mtime, stat.st_ctime) >= VERIFIED_MIN_AGE_S:
        _VERIFIED[key] = crc
    return None


#: Manifest key of the 16-bit record: {"rule": images.SIXTEEN_BIT_RULE when built, "images": sources that rule
#: converts (16-bit PNG/TIFF and, since the rule covers them, DICOM)}.
SIXTEEN_BIT_KEY = "sixteen_bit"


def sixteen_bit_entry(paths: Iterable[Path]) -> dict:
    """The manifest's 16-bit record for sources `paths`: today's rule and how many of them it converts (DICOM by
    suffix, 16-bit by header only: 35-75 µs a file on 405 real NIH PNGs, so ≈ 4-8 s for ChestX-ray14's 112,120)."""
    return {"rule": SIXTEEN_BIT_RULE, "images": sum(follows_sixteen_bit_rule(p) for p in paths)}


def sixteen_bit_current(manifest_path: Path, manifest: dict, paths: Iterable[Path]) -> bool:
    """Whether a manifest's arrays are what today's decoding gives: made by today's rule, or with no source that the
    rule converts; only then is the cache reused. A manifest made by another rule that counted none (or from before
    the record, when 16-bit was value / 257) is checked once by reading the sources' headers, since older rules did
    not count DICOM: with none (NIH, CheXpert, MIMIC, the phantom), today's record is written into it in place and it
    is kept; else it is stale and the cache is rebuilt."""
    entry = manifest.get(SIXTEEN_BIT_KEY)
    if entry is not None and entry.get("rule") == SIXTEEN_BIT_RULE:
        return True
    if entry is not None and entry.get("images") != 0:
        return False
    entry = sixteen_bit_entry(paths)
    if entry["images"]:
        return False
    manifest[SIXTEEN_BIT_KEY] = entry
    try:
        write_json(manifest_path, manifest)
    except OSError:  # a read-only cache: the headers are read again next time
        pass
    return True


def write_json(path: Path, payload: dict) -> None:
    write_json_atomic(path, payload, sort_keys=True)


def read_json(path: Path) -> dict | None:
    """Parsed JSON of `path`, or None if it is absent or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
