"""Fuzzing the metadata readers: seeded mutations of the real ChestX-ray14 files, each either parsed or refused with
one line of cxrres's own error type naming the file (and the line, for a problem in one line) — never another
exception. Skipped without the real material (../shared/data/chestxray14 or CXRRES_DATA_ROOT)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from cxrres.data.labels import CLASSES
from cxrres.data.metadata import read_bbox_list, read_data_entry, read_image_list, read_split_file
from cxrres.errors import CxrresError, DataFormatError

#: Mutated inputs per reader per run (2,400 in all).
N_DATA_ENTRY, N_BBOX, N_IMAGE_LIST, N_SPLIT = 900, 600, 400, 500
#: Lines sampled from each real file (besides its header), so one parse takes milliseconds.
SAMPLE_LINES = 300
#: Problems that concern a whole file, so their DataFormatError carries no line number.
WHOLE_FILE_PROBLEMS = ("file is empty", "no data rows", "no image names")
#: Longest acceptable error message (characters, excluding the path): one readable line.
MAX_MESSAGE_CHARS = 400

HOSTILE_TOKENS: tuple[bytes, ...] = (
    b"",
    b" ",
    b"-1",
    b"0",
    b"1e999",
    b"-1e999",
    b"nan",
    b"inf",
    b"9" * 40,
    b"0x1F",
    b"1_000",
    "\uff11\uff12".encode(),
    b'"',
    b'"abc',
    b'a"b',
    b"a,b",
    b"\t",
    b"\x00",
    b"\xff\xfe",
    "\u00e9".encode("latin-1"),
    "\ufeff".encode(),
    b"No Finding|Mass",
    b"|",
    b"Mass|Mass",
    b"Infiltrate",
    b"no finding",
    b"00000001_000.png",
    b"../x.png",
    b"a b.png",
    b"x.PNG",
    b"999Y",
    b"-3Y",
    b"058Y",
    b"12M",
    b"\r",
    b"\n",
    b"1" * 5000,
)


@pytest.fixture(autouse=True)
def _user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep any default cache out of ~/.cache."""
    monkeypatch.setenv("CXRRES_CACHE_DIR", str(tmp_path / "user-cache"))


def _sample(path: Path, header_lines: int, n: int, rng: random.Random) -> list[bytes]:
    """The file's header lines plus `n` of its other lines (kept in file order), as bytes with their line ends."""
    lines = path.read_bytes().splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    body = lines[header_lines:]
    keep = sorted(rng.sample(range(len(body)), min(n, len(body))))
    return lines[:header_lines] + [body[i] for i in keep]


def _split_fields(line: bytes, delimiter: bytes | None) -> tuple[list[bytes], bytes]:
    """(fields, line end) of one line."""
    end = b"\n" if line.endswith(b"\n") else b""
    body = line[: len(line) - len(end)]
    return (body.split(delimiter) if delimiter else body.split(b" ")), end


def mutate(lines: list[bytes], rng: random.Random, delimiter: bytes | None) -> tuple[bytes, list[str]]:
    """1 to 3 seeded mutations of a file given as lines; returns the bytes and what was done."""
    lines = list(lines)
    done: list[str] = []
    join = delimiter or b" "
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(
            (
                "bit",
                "delete",
                "duplicate",
                "truncate",
                "field",
                "insert",
                "swap-fields",
                "add-field",
                "drop-field",
                "line-end",
                "swap-lines",
                "header-only",
                "bom",
                "long-line",
            )
        )
        i = rng.randrange(len(lines)) if lines else 0
        if not lines and kind not in ("bom",):
            kind = "bom"
        if kind == "bit":
            data = bytearray(lines[i])
            if data:
                j = rng.randrange(len(data))
                data[j] ^= 1 << rng.randrange(8)
            lines[i] = bytes(data)
        elif kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
        elif kind == "truncate":
            blob = b"".join(lines)
            cut = rng.randrange(len(blob) + 1)
            lines = blob[:cut].splitlines(keepends=True)
        elif kind in ("field", "swap-fields", "add-field", "drop-field"):
            fields, end = _split_fields(lines[i], delimiter)
            j = rng.randrange(len(fields))
            if kind == "field":
                fields[j] = rng.choice(HOSTILE_TOKENS)
            elif kind == "swap-fields":
                k = rng.randrange(len(fields))
                fields[j], fields[k] = fields[k], fields[j]
            elif kind == "add-field":
                fields.insert(j, rng.choice(HOSTILE_TOKENS))
            elif len(fields) > 1:
                del fields[j]
            lines[i] = join.join(fields) + end
        elif kind == "insert":
            data = lines[i]
            j = rng.randrange(len(data) + 1)
            lines[i] = data[:j] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 12))) + data[j:]
        elif kind == "line-end":
            ending = rng.choice((b"\r\n", b"\r", b""))
            lines = [line.rstrip(b"\r\n") + ending for line in lines]
        elif kind == "swap-lines":
            k = rng.randrange(len(lines))
            lines[i], lines[k] = lines[k], lines[i]
        elif kind == "header-only":
            lines = lines[:1]
        elif kind == "bom":
            lines = [b"\xef\xbb\xbf" + (lines[0] if lines else b"")] + lines[1:]
        elif kind == "long-line":
            lines.insert(i, join.join([b"x"] * rng.choice((20, 5_000, 200_000))) + b"\n")
        done.append(f"{kind}@{i}")
    return b"".join(lines), done


def _check_parsed(reader: str, result: object) -> None:
    """Invariants of what a reader returns, so a silently wrong parse also fails."""
    if reader == "data_entry":
        assert isinstance(result, pd.DataFrame) and result.index.is_unique
        for column in ("patient_id", "follow_up", "age", "width_px", "height_px"):
            assert result[column].dtype.kind in "iu", column
        assert np.isfinite(result[["spacing_mm_x", "spacing_mm_y"]].to_numpy(np.float64)).all()
        assert set(np.unique(result[list(CLASSES)].to_numpy())) <= {0, 1}
    elif reader == "bbox":
        assert isinstance(result, pd.DataFrame)
        assert (
            np.isfinite(result[["x", "y", "w", "h"]].to_numpy(np.float64)).all()
            and (result[["w", "h"]] > 0).all().all()
        )
    elif reader == "image_list":
        assert isinstance(result, list) and len(set(result)) == len(result) and all(isinstance(n, str) for n in result)
    else:
        names, labels = result  # type: ignore[misc]
        assert len(set(names)) == len(names)
        assert labels is None or (labels.shape == (len(names), len(CLASSES)) and set(np.unique(labels)) <= {0, 1})


def _fuzz(
    reader: str,
    read: Callable[[Path], object],
    lines: list[bytes],
    path: Path,
    n: int,
    seed: int,
    delimiter: bytes | None,
) -> tuple[int, int]:
    """Run `n` mutated inputs through `read`; returns (parsed, refused). Fails on any other outcome."""
    rng = random.Random(seed)
    parsed = refused = 0
    for trial in range(n):
        data, done = mutate(lines, rng, delimiter)
        path.write_bytes(data)
        where = f"{reader} trial {trial} (seed {seed}): {', '.join(done)}"
        try:
            result = read(path)
        except CxrresError as exc:
            message = str(exc)
            assert str(path) in message, f"{where}: error does not name the file: {message[:200]}"
            assert "\n" not in message and len(message) - len(str(path)) <= MAX_MESSAGE_CHARS, (
                f"{where}: not one short line: {message[:300]!r}"
            )
            if isinstance(exc, DataFormatError) and exc.line is None:
                assert exc.problem.startswith(WHOLE_FILE_PROBLEMS), f"{where}: no line number in {message!r}"
            refused += 1
        except Exception as exc:  # the point of the test: report the input that crashed a reader
            raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc
        else:
            _check_parsed(reader, result)
            parsed += 1
    return parsed, refused


def test_fuzz_metadata_readers(
    real_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, object], None]
) -> None:
    rng = random.Random(19)
    split_dir = real_root / "splits" / "chexnet"
    cases = [
        (
            "data_entry",
            read_data_entry,
            _sample(real_root / "Data_Entry_2017_v2020.csv", 1, SAMPLE_LINES, rng),
            tmp_path / "Data_Entry_2017_v2020.csv",
            N_DATA_ENTRY,
            b",",
        ),
        (
            "bbox",
            read_bbox_list,
            _sample(real_root / "BBox_List_2017.csv", 1, SAMPLE_LINES, rng),
            tmp_path / "BBox_List_2017.csv",
            N_BBOX,
            b",",
        ),
        (
            "image_list",
            read_image_list,
            _sample(real_root / "test_list.txt", 0, SAMPLE_LINES, rng),
            tmp_path / "test_list.txt",
            N_IMAGE_LIST,
            None,
        ),
        (
            "split",
            read_split_file,
            _sample(split_dir / "val_list.txt", 0, SAMPLE_LINES, rng),
            tmp_path / "val_list.txt",
            N_SPLIT,
            None,
        ),
    ]
    totals: dict[str, tuple[int, int]] = {}
    for seed, (reader, read, lines, path, n, delimiter) in enumerate(cases):
        path.write_bytes(b"".join(lines))
        _check_parsed(reader, read(path))  # the unmutated sample parses
        totals[reader] = _fuzz(reader, read, lines, path, n, seed, delimiter)
    tried = sum(p + r for p, r in totals.values())
    summary = f"fuzzed {tried:,} mutated metadata inputs: " + ", ".join(
        f"{k} {p} parsed / {r} refused" for k, (p, r) in totals.items()
    )
    record_property("fuzzed_inputs", tried)
    with capsys.disabled():
        print(f"\n{summary}")
    assert tried >= 2000
    assert all(r > 0 for _, r in totals.values()) and sum(p for p, _ in totals.values()) > 0  # both outcomes exercised
