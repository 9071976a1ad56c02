"""Readers for the official ChestX-ray14 metadata files, with strict validation.

Every reader returns plain pandas/numpy objects and raises `DataFormatError` naming the file, the 1-based
line and the problem for anything malformed: wrong header, wrong field count (e.g. a truncated file),
unknown label, bad number, duplicate image.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import time
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from cxrres.data.strictcsv import check_header
from cxrres.data.labels import CHEXNET_TO_CLASSES, CLASS_INDEX, CLASSES, NO_FINDING, canonical_label
from cxrres.errors import DataFormatError

#: The fields of Data_Entry_2017(_v2020).csv's header as the csv module splits them.
DATA_ENTRY_HEADER: tuple[str, ...] = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
)
#: The four findings of Google's adjudicated labels of NIH images (Majkowska et al., Radiology 2020), in file order.
GOOGLE2019_FINDINGS: tuple[str, ...] = ("Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass")
#: google2019_nih-chest-xray-labels.csv: Data_Entry's 11 fields, the four findings (YES/NO) and `Set Id` (test/val).
GOOGLE2019_HEADER: tuple[str, ...] = (*DATA_ENTRY_HEADER, *GOOGLE2019_FINDINGS, "Set Id")
#: `Set Id` values: Google's test and validation sets.
GOOGLE2019_SETS: tuple[str, ...] = ("test", "val")
#: BBox_List_2017.csv: a 9-field header (three trailing empty) over 6-field rows.
BBOX_HEADER: tuple[str, ...] = ("Image Index", "Finding Label", "Bbox [x", "y", "w", "h]")

_IMAGE_NAME = re.compile(r"[^\s/\\]+\.(png|jpg|jpeg|dcm|dicom)", re.IGNORECASE)
_NIH_NAME = re.compile(r"(\d{8})_(\d{3})\.png", re.ASCII)
_AGE = re.compile(r"(\d{1,3})Y?", re.ASCII)


#: Longest accepted physical line of a metadata file, in bytes (the official files' longest is under 120):
#: a longer one (e.g. a million fields) is refused after reading at most this much of it.
MAX_LINE_BYTES = 65536
#: Longest excerpt of a cell or line quoted in an error message, in characters.
SHOW_CHARS = 60


def _show(text: str) -> str:
    """repr() of `text`, shortened to about SHOW_CHARS characters, for one-line error messages."""
    return repr(text) if len(text) <= SHOW_CHARS else repr(text[:SHOW_CHARS]) + f"... ({len(text):,} characters)"


def _open_binary(path: Path) -> io.BufferedIOBase:
    """Open a file for reading bytes, transparently gunzipping `*.gz`."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # type: ignore[return-value]


def _lines(path: Path) -> Iterator[str]:
    """Decoded lines of a UTF-8 text file (optional BOM; line ends \\n, \\r\\n or \\r kept), each at most
    MAX_LINE_BYTES bytes; DataFormatError naming the line if one is longer or is not UTF-8. Memory is bounded by
    MAX_LINE_BYTES whatever the file holds.

    Lines are split as latin-1 (one character per byte, never fails) and each is then decoded as UTF-8, so a
    decoding error names its line.
    """
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="latin-1", newline="") as handle:
        line = 0
        while True:
            text = handle.readline(MAX_LINE_BYTES + 1)
            if not text:
                return
            line += 1
            if len(text) > MAX_LINE_BYTES and text[-1] not in "\r\n":
                raise DataFormatError(path, f"line longer than {MAX_LINE_BYTES:,} bytes (not a metadata row)", line)
            data = text.encode("latin-1")
            try:
                decoded = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(
                    path, f"not UTF-8 text: byte 0x{data[exc.start]:02x} at column {exc.start + 1}", line
                ) from None
            yield decoded[1:] if line == 1 and decoded.startswith("\ufeff") else decoded


def _read_errors(path: Path, exc: Exception, line: int | None) -> DataFormatError:
    """The DataFormatError for a low-level failure while reading `path` (at `line` when known)."""
    if isinstance(exc, FileNotFoundError):
        return DataFormatError(path, "file not found")
    if isinstance(exc, IsADirectoryError):
        return DataFormatError(path, "is a directory, not a file")
    if isinstance(exc, csv.Error):
        return DataFormatError(path, f"malformed CSV: {' '.join(str(exc).split())}", line)
    return DataFormatError(path, f"cannot read: {' '.join(str(exc).split())}", line)


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based line number, fields) of a CSV file, skipping blank lines."""
    reader = None
    try:
        reader = csv.reader(_lines(path))
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                yield reader.line_num, fields
    except (csv.Error, OSError, EOFError, zlib.error) as exc:
        raise _read_errors(
            path, exc, reader.line_num if isinstance(exc, csv.Error) and reader is not None else None
        ) from None


def _check_image_name(path: Path, line: int, name: str) -> str:
    if not _IMAGE_NAME.fullmatch(name):
        raise DataFormatError(path, f"not an image file name: {_show(name)}", line)
    return name


def _is_count(text: str) -> bool:
    """Whether `text` is 1 to 9 ASCII digits (int() alone would also take '+1', '1_000', ' 1' and non-ASCII digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 9


def _int(path: Path, line: int, column: str, text: str) -> int:
    if not _is_count(text):
        raise DataFormatError(path, f"column {column!r}: not an integer (1 to 9 digits): {_show(text)}", line)
    return int(text)


def _float(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(path, f"column {column!r}: not a number: {_show(text)}", line) from None
    if not np.isfinite(value):
        raise DataFormatError(path, f"column {column!r}: not a finite number: {_show(text)}", line)
    return value


def _check_unique(path: Path, names: list[str], lines: list[int]) -> None:
    seen: dict[str, int] = {}
    for name, line in zip(names, lines):
        if name in seen:
            raise DataFormatError(path, f"duplicate image {name} (first on line {seen[name]})", line)
        seen[name] = line


def parse_finding_labels(text: str) -> list[str] | None:
    """Split a `Finding Labels` cell ("A|B" or "No Finding") into CLASSES names; None if a label is unknown."""
    if text == NO_FINDING:
        return []
    labels = [canonical_label(part) for part in text.split("|")]
    return None if any(label is None for label in labels) else labels  # type: ignore[return-value]


def _record(path: Path, line: int, fields: list[str], age: int) -> tuple:
    """The typed fields of one Data_Entry row; the per-column checks (with their messages) only when a cast fails."""
    try:
        spacing = float(fields[9]), float(fields[10])
        if math.isfinite(spacing[0]) and math.isfinite(spacing[1]) and all(_is_count(fields[i]) for i in (2, 3, 7, 8)):
            return (int(fields[3]), int(fields[2]), age, fields[5], fields[6], int(fields[7]), int(fields[8]), *spacing)
    except ValueError:
        pass
    return (
        _int(path, line, "Patient ID", fields[3]),
        _int(path, line, "Follow-up #", fields[2]),
        age,
        fields[5],
        fields[6],
        _int(path, line, "OriginalImage[Width", fields[7]),
        _int(path, line, "Height]", fields[8]),
        _float(path, line, "OriginalImagePixelSpacing[x", fields[9]),
        _float(path, line, "y]", fields[10]),
    )


#: The last Data_Entry parsed in this process: (path, device, inode, size, mtime ns) -> frame. A command opens the
#: data root more than once (split, cache sources); the 112,120-row file takes ≈ 1 s to parse.
_DATA_ENTRY_MEMO: dict[tuple, pd.DataFrame] = {}
#: A parse is remembered only for a file last changed at least this long before it (s): file times are coarse, so a
#: file rewritten within one tick could otherwise keep its key.
MEMO_MIN_AGE_S = 2.0


def read_data_entry(path: str | Path) -> pd.DataFrame:
    """Read Data_Entry_2017.csv (trailing empty column) or Data_Entry_2017_v2020.csv.

    Returns one row per image, indexed by image name, with columns `patient_id`, `follow_up`, `age`, `sex`,
    `view`, `width_px`, `height_px`, `spacing_mm_x`, `spacing_mm_y`, and one 0/1 uint8 column per class in
    CLASSES order. A second call on an unchanged file in one process returns a copy of the first parse.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return _parse_data_entry(path)  # _rows reports the missing or unreadable file
    key = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key in _DATA_ENTRY_MEMO:
        return _DATA_ENTRY_MEMO[key].copy()
    started = time.time()
    frame = _parse_data_entry(path)
    if started - stat.st_mtime >= MEMO_MIN_AGE_S:
        _DATA_ENTRY_MEMO.clear()
        _DATA_ENTRY_MEMO[key] = frame.copy()
    return frame


def _check_header(
    path: Path, rows: Iterator[tuple[int, list[str]]], expected: tuple[str, ...], trailing_empty: int | None
) -> None:
    """Take the header row from `rows` and check it is `expected` (fields stripped), ignoring at most `trailing_empty`
    empty fields at its end (None: any number); DataFormatError naming the file (and line) otherwise."""
    first = next(rows, None)
    if first is None:
        raise DataFormatError(path, "file is empty")
    line, header = first
    dropped = 0
    while header and header[-1] == "" and (trailing_empty is None or dropped < trailing_empty):
        header, dropped = header[:-1], dropped + 1
    check_header(path, header, line)  # a field without a name, or a name twice: said as such
    if tuple(h.strip() for h in header) != expected:
        raise DataFormatError(
            path, f"unexpected header {_show(','.join(header))}; expected {','.join(expected)!r}", line
        )


def _parse_data_entry(path: Path) -> pd.DataFrame:
    """`read_data_entry` without the memo."""
    rows = _rows(path)
    _check_header(path, rows, DATA_ENTRY_HEADER, trailing_empty=1)
    names: list[str] = []
    lines: list[int] = []
    records: list[tuple] = []
    label_rows: list[int] = []
    label_cols: list[int] = []
    width = len(DATA_ENTRY_HEADER)
    label_indices: dict[str, list[int] | None] = {}  # a few hundred distinct "A|B" cells in 112,120 rows
    for line, fields in rows:
        if len(fields) == width + 1 and fields[-1] == "":
            fields = fields[:-1]
        if len(fields) != width:
            raise DataFormatError(
                path, f"expected {width} fields, found {len(fields)} (truncated or malformed row)", line
            )
        name = _check_image_name(path, line, fields[0])
        if fields[1] not in label_indices:
            found = parse_finding_labels(fields[1])
            label_indices[fields[1]] = None if found is None else [CLASS_INDEX[label] for label in found]
        indices = label_indices[fields[1]]
        if indices is None:
            raise DataFormatError(path, f"unknown finding label in {_show(fields[1])}", line)
        label_rows.extend([len(names)] * len(indices))
        label_cols.extend(indices)
        age = _AGE.fullmatch(fields[4].strip())
        if age is None:
            raise DataFormatError(path, f"column 'Patient Age': not an age: {_show(fields[4])}", line)
        records.append(_record(path, line, fields, int(age.group(1))))
        names.append(name)
        lines.append(line)
    if not names:
        raise DataFormatError(path, "no data rows")
    _check_unique(path, names, lines)
    columns = ["patient_id", "follow_up", "age", "sex", "view", "width_px", "height_px", "spacing_mm_x", "spacing_mm_y"]
    frame = pd.DataFrame.from_records(records, columns=columns, index=pd.Index(names, name="image"))
    labels = np.zeros((len(names), len(CLASSES)), np.uint8)
    labels[label_rows, label_cols] = 1
    label_frame = pd.DataFrame(labels, columns=list(CLASSES), index=frame.index)
    return pd.concat([frame, label_frame], axis=1)


def read_bbox_list(path: str | Path) -> pd.DataFrame:
    """Read BBox_List_2017.csv: columns `image`, `label` (CLASSES spelling), `x`, `y`, `w`, `h` (px at 1024)."""
    path = Path(path)
    rows = _rows(path)
    _check_header(path, rows, BBOX_HEADER, trailing_empty=None)
    records: list[tuple] = []
    for line, fields in rows:
        while len(fields) > 6 and fields[-1] == "":
            fields = fields[:-1]
        if len(fields) != 6:
            raise DataFormatError(path, f"expected 6 fields, found {len(fields)} (truncated or malformed row)", line)
        name = _check_image_name(path, line, fields[0])
        label = canonical_label(fields[1])
        if label is None:
            raise DataFormatError(path, f"unknown finding label {_show(fields[1])}", line)
        x, y, w, h = (_float(path, line, col, text) for col, text in zip("xywh", fields[2:]))
        if w <= 0 or h <= 0:
            raise DataFormatError(path, f"box has non-positive size w={w}, h={h}", line)
        records.append((name, label, x, y, w, h))
    if not records:
        raise DataFormatError(path, "no data rows")
    return pd.DataFrame.from_records(records, columns=["image", "label", "x", "y", "w", "h"])


def read_google2019(path: str | Path) -> pd.DataFrame:
    """Read Google's adjudicated labels of NIH images (`google2019_nih-chest-xray-labels.csv[.gz]`).

    Returns one row per image (an NIH name), indexed by name, with `patient_id` (checked against the name), `sex`,
    `view`, `width_px`, `height_px` (the original image's size), `set_id` (`test` or `val`) and one 0/1 uint8 column
    per GOOGLE2019_FINDINGS (YES = 1, NO = 0).
    """
    path = Path(path)
    rows = _rows(path)
    _check_header(path, rows, GOOGLE2019_HEADER, trailing_empty=0)
    width, start = len(GOOGLE2019_HEADER), len(DATA_ENTRY_HEADER)
    names: list[str] = []
    lines: list[int] = []
    records: list[tuple] = []
    for line, fields in rows:
        if len(fields) != width:
            raise DataFormatError(
                path, f"expected {width} fields, found {len(fields)} (truncated or malformed row)", line
            )
        if not _NIH_NAME.fullmatch(fields[0]):
            raise DataFormatError(path, f"not an NIH image name (PPPPPPPP_FFF.png): {_show(fields[0])}", line)
        patient = _int(path, line, "Patient ID", fields[3])
        if patient != patient_from_name(fields[0]):
            raise DataFormatError(path, f"Patient ID {patient} is not the patient of image {fields[0]}", line)
        findings = []
        for name, cell in zip(GOOGLE2019_FINDINGS, fields[start : start + len(GOOGLE2019_FINDINGS)]):
            if cell not in ("YES", "NO"):
                raise DataFormatError(path, f"column {name!r}: expected YES or NO, found {_show(cell)}", line)
            findings.append(int(cell == "YES"))
        if fields[-1] not in GOOGLE2019_SETS:
            raise DataFormatError(path, f"column 'Set Id': expected test or val, found {_show(fields[-1])}", line)
        names.append(fields[0])
        lines.append(line)
        size = (_int(path, line, "OriginalImage[Width", fields[7]), _int(path, line, "Height]", fields[8]))
        records.append((patient, fields[5], fields[6], *size, fields[-1], *findings))
    if not names:
        raise DataFormatError(path, "no data rows")
    _check_unique(path, names, lines)
    frame = pd.DataFrame.from_records(
        records,
        columns=["patient_id", "sex", "view", "width_px", "height_px", "set_id", *GOOGLE2019_FINDINGS],
        index=pd.Index(names, name="image"),
    )
    return frame.astype({name: np.uint8 for name in GOOGLE2019_FINDINGS})


def _text_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based line number, whitespace-separated fields) of a text file, skipping blank lines."""
    try:
        for line, text in enumerate(_lines(path), start=1):
            fields = text.split()
            if fields:
                yield line, fields
    except (OSError, EOFError, zlib.error) as exc:
        raise _read_errors(path, exc, None) from None


def read_image_list(path: str | Path) -> list[str]:
    """Read train_val_list.txt / test_list.txt: one image name per line (final newline optional)."""
    path = Path(path)
    names: list[str] = []
    lines: list[int] = []
    for line, fields in _text_rows(path):
        if len(fields) != 1:
            raise DataFormatError(
                path, f"expected one image name per line, found {len(fields):,} fields: {_show(' '.join(fields))}", line
            )
        names.append(_check_image_name(path, line, fields[0]))
        lines.append(line)
    if not names:
        raise DataFormatError(path, "no image names")
    _check_unique(path, names, lines)
    return names


def read_split_file(path: str | Path) -> tuple[list[str], np.ndarray | None]:
    """Read a split file: `name` + 14 0/1 labels in CheXNet column order per line, or names only.

    Returns the names and a (N, 14) uint8 label matrix in CLASSES order, or None when the file has names only.
    """
    path = Path(path)
    names: list[str] = []
    lines: list[int] = []
    labels: list[list[int]] = []
    n_fields: int | None = None
    for line, fields in _text_rows(path):
        if n_fields is None:
            n_fields = len(fields)
            if n_fields not in (1, 1 + len(CLASSES)):
                raise DataFormatError(
                    path, f"expected a name and {len(CLASSES)} labels (or a name only), found {n_fields} fields", line
                )
        elif len(fields) != n_fields:
            raise DataFormatError(
                path, f"expected {n_fields} fields, found {len(fields)} (truncated or malformed row)", line
            )
        names.append(_check_image_name(path, line, fields[0]))
        lines.append(line)
        if n_fields > 1:
            if any(value not in ("0", "1") for value in fields[1:]):
                raise DataFormatError(path, f"labels must be 0 or 1, found {_show(' '.join(fields[1:]))}", line)
            labels.append([int(value) for value in fields[1:]])
    if not names:
        raise DataFormatError(path, "no image names")
    _check_unique(path, names, lines)
    if not labels:
        return names, None
    chexnet = np.asarray(labels, np.uint8)
    ours = np.zeros_like(chexnet)
    ours[:, list(CHEXNET_TO_CLASSES)] = chexnet
    return names, ours


def patient_from_name(name: str) -> int | None:
    """Patient ID encoded in an NIH image name (`00000013_005.png` -> 13), or None for other names."""
    match = _NIH_NAME.fullmatch(name)
    return int(match.group(1)) if match else None
