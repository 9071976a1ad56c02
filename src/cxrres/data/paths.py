"""Image identities and image files: the rules by which a metadata cell becomes an image, and a listed image a file.

Names. A path a metadata file gives for an image (relative to the data root) is normalised before it becomes the
image's identity: `images/./a.png`, `images//a.png` and `images/a.png/` are all `images/a.png`, so one file cannot
enter a table under two names (and, with two patient ids, sit in train and test). A path that is empty, absolute,
climbs with `..`, or holds a backslash or NUL is refused at file:line. A cell that names a file (an id to which the
adapter adds a folder and suffix) must be a plain file name: no `/`, not `.` or `..`.

Files. Symbolic links are followed, inside the root or out of it (a data set is often assembled from links into
shared storage), but never silently: `resolve_images` reports every image whose real file lies outside the real
data root, and `describe` and the cache manifest list them. Two listed images that are one file (a link to another
listed image, a hard link) are refused: that is the same leakage as two names for one path.
"""

from __future__ import annotations

import os
import posixpath
from stat import S_ISREG
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrres.errors import DataFormatError, SplitError

_SUSPECT = r"(?:^|/)\.\.?(?:/|$)|//|^/|/$|\\|\x00|^\s|\s$"


def normal_relpath(text: str) -> str | None:
    """`text` as a normalised POSIX path relative to the root (`a/./b//c` -> `a/b/c`); None if it cannot be one."""
    if not text or text.startswith("/") or "\\" in text or "\x00" in text or text != text.strip():
        return None
    if ".." in text.split("/"):
        return None
    normal = posixpath.normpath(text)
    return None if normal in (".", "") else normal


def relpaths(path: Path, cells: pd.Series, column: str) -> pd.Series:
    """The `cells` (indexed by file line) as normalised relative paths (`normal_relpath`); DataFormatError at the line
    of the first that is not one. Only cells that need it are rewritten (a fast scan finds them)."""
    cells = cells.astype(str)
    suspect = cells.str.contains(_SUSPECT, regex=True) | (cells == "")
    if not suspect.any():
        return cells
    fixed = cells[suspect].map(normal_relpath)
    if fixed.isna().any():
        line = int(fixed.index[fixed.isna().to_numpy()][0])
        raise DataFormatError(path, f"column {column!r}: not a path relative to the data root: {cells[line]!r}", line)
    out = cells.copy()
    out[suspect] = fixed
    return out


def not_file_name(cells: pd.Series) -> pd.Series:
    """True where a cell is not a plain file name (holds `/`, `\\` or NUL; empty, `.`, `..`; padded with spaces)."""
    cells = cells.astype(str)
    return cells.str.contains(r"[/\\\x00]|^\s|\s$", regex=True) | cells.isin(["", ".", ".."])


def file_names(path: Path, cells: pd.Series, column: str) -> pd.Series:
    """The `cells` (indexed by file line), each a plain file name (no `/`, `\\`, NUL; not empty, `.`, `..`, nor
    padded with spaces); DataFormatError at the line of the first that is not."""
    cells = cells.astype(str)
    bad = not_file_name(cells)
    if bad.any():
        line = int(bad.idxmax())
        raise DataFormatError(path, f"column {column!r}: not a file name: {cells[line]!r}", line)
    return cells


def refuse_duplicates(path: Path, names: pd.Series, what: str = "image") -> None:
    """DataFormatError at the line of the first name (in `names`, indexed by file line) seen before, with both lines."""
    repeated = names.duplicated()
    if repeated.any():
        line = int(repeated.idxmax())
        first = int(names.index[(names == names[line]).to_numpy()][0])
        raise DataFormatError(
            path, f"duplicate {what} {names[line]!r} (first on line {first}; paths are compared normalised)", line
        )


@dataclass(frozen=True)
class ResolvedImages:
    """Listed images on disk: `present` (one bool per listed path: a regular file, links followed), and `outside`
    (name, real file) of each present image whose real file lies outside the real data root (through a link)."""

    present: list[bool]
    outside: list[tuple[str, str]]


def resolve_images(root: Path, names: list[str], paths: list[Path]) -> ResolvedImages:
    """Which listed images (`names`, their `paths` under `root`) are files, and which leave the root through a link.

    Links are followed; SplitError if two listed names are one file (same device and inode). One stat per image and
    one realpath per folder (or per image that is itself a link): about 2 µs per image on a local disk."""
    real_root = os.path.realpath(root)
    inside = real_root.rstrip(os.sep) + os.sep
    real_dirs: dict[str, str] = {}
    present: list[bool] = []
    outside: list[tuple[str, str]] = []
    seen: dict[tuple[int, int], str] = {}
    for name, image in zip(names, paths):
        text = os.fspath(image)
        try:
            stat = os.stat(text)
        except OSError:
            present.append(False)
            continue
        present.append(S_ISREG(stat.st_mode))
        if not present[-1]:  # a folder named like an image: not an image file
            continue
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            raise SplitError(
                f"{root}: images {seen[key]} and {name} are one file ({image}); each image must be listed "
                "once (a link or hard link to a listed image gives it a second name)"
            )
        seen[key] = name
        folder, base = os.path.split(text)
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder)
        real = os.path.realpath(text) if os.path.islink(text) else os.path.join(real_dirs[folder], base)
        if not real.startswith(inside):
            outside.append((name, real))
    return ResolvedImages(present, outside)


def outside_summary(outside: list[tuple[str, str]], show: int = 20) -> dict:
    """The `describe --json` / manifest entry on images read through links from outside the root."""
    return {"count": len(outside), "first": [{"image": name, "file": real} for name, real in outside[:show]]}


def outside_line(entry: dict | None, show: int = 3) -> str:
    """One line from an `outside_summary` entry ('' when no image leaves the root)."""
    if not entry or not entry["count"]:
        return ""
    first = ", ".join(f"{item['image']} -> {item['file']}" for item in entry["first"][:show])
    more = ", ..." if entry["count"] > show else ""
    are = "image is a symlink" if entry["count"] == 1 else "images are symlinks"
    return f"{entry['count']:,} {are} to files outside the data root (followed; first: {first}{more})"
