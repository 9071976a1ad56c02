"""Metadata readers: formats, label mapping and the malformed-file errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cxrres.data.labels import CHEXNET_ORDER, CLASSES
from cxrres.data.metadata import (
    parse_finding_labels,
    patient_from_name,
    read_bbox_list,
    read_data_entry,
    read_image_list,
    read_split_file,
)
from cxrres.errors import DataFormatError

from conftest import MINI


@pytest.fixture(autouse=True)
def _user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep any default cache out of ~/.cache."""
    monkeypatch.setenv("CXRRES_CACHE_DIR", str(tmp_path / "user-cache"))


def test_data_entry_2017_format_with_trailing_empty_column() -> None:
    entry = read_data_entry(MINI / "Data_Entry_2017.csv")
    assert len(entry) == 14
    assert entry.loc["00000001_001.png", ["Cardiomegaly", "Emphysema"]].tolist() == [1, 1]
    assert entry.loc["00000001_001.png", list(CLASSES)].sum() == 2
    assert entry.loc["00000002_000.png", list(CLASSES)].sum() == 0  # No Finding
    assert entry.loc["00000008_001.png", "patient_id"] == 8
    assert entry["width_px"].iloc[0] == 2500 and entry["spacing_mm_y"].iloc[0] == pytest.approx(0.143)


def test_data_entry_v2020_format_without_trailing_column(tmp_path: Path) -> None:
    text = (MINI / "Data_Entry_2017.csv").read_text().replace(",\n", "\n")
    path = tmp_path / "Data_Entry_2017_v2020.csv"
    path.write_text(text)
    assert read_data_entry(path).equals(read_data_entry(MINI / "Data_Entry_2017.csv"))


@pytest.mark.parametrize(
    "mutate, line, message",
    [
        (lambda t: t.replace("Image Index", "Image"), 1, "unexpected header"),
        (lambda t: t[: t.index("00000002_000.png") + 30], 4, "expected 11 fields"),  # truncated mid-row
        (lambda t: t.replace("Cardiomegaly|Emphysema", "Cardiomegaly|Emphysem"), 3, "unknown finding label"),
        (lambda t: t.replace(",1,31,", ",x,31,"), 2, "Patient ID"),
        (lambda t: t.replace("2500,2048,0.143,0.143", "2500,2048,nan,0.143", 1), 2, "not a finite number: 'nan'"),
        (lambda t: t.replace("2500,2048,0.143,0.143", "2500,2048,0.143,0,143", 1), 2, "expected 11 fields"),
        (
            lambda t: t.replace("2500,2048,0.143,0.143", "2500,2048.0,0.143,0.143", 1),
            2,
            "column 'Height]': not an integer",
        ),
        (
            lambda t: t + "00000001_000.png,No Finding,0,1,31,F,PA,2500,2048,0.143,0.143,\n",
            16,
            "duplicate image 00000001_000.png",
        ),
        (lambda t: "", None, "empty"),
    ],
)
def test_data_entry_errors_name_file_and_line(tmp_path: Path, mutate, line, message) -> None:
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text(mutate((MINI / "Data_Entry_2017.csv").read_text()))
    with pytest.raises(DataFormatError) as info:
        read_data_entry(path)
    assert info.value.line == line
    assert message in str(info.value)
    assert str(info.value).startswith(str(path) + (f":{line}:" if line else ":"))


def test_bbox_list_maps_infiltrate_and_keeps_float_coordinates() -> None:
    boxes = read_bbox_list(MINI / "BBox_List_2017.csv")
    assert len(boxes) == 5
    assert "Infiltrate" not in set(boxes["label"]) and (boxes["label"] == "Infiltration").sum() == 1
    first = boxes.iloc[0]
    assert (first["x"], first["y"], first["w"], first["h"]) == (4.710938, 9.386719, 7.03125, 3.75)  # 48-px frame


def test_bbox_list_errors(tmp_path: Path) -> None:
    path = tmp_path / "BBox_List_2017.csv"
    good = (MINI / "BBox_List_2017.csv").read_text()
    path.write_text(good.replace("Atelectasis,4.710938", "Atelectasis,abc"))
    with pytest.raises(DataFormatError, match=r":2: column 'x': not a number"):
        read_bbox_list(path)
    path.write_text(good.replace("7.031250,3.750000", "-1,3.75"))
    with pytest.raises(DataFormatError, match=r":2: box has non-positive size"):
        read_bbox_list(path)
    path.write_text(good.rstrip("\n").rsplit(",", 1)[0] + "\n")  # last row cut short: one field missing
    with pytest.raises(DataFormatError, match=r":6: expected 6 fields, found 5"):
        read_bbox_list(path)


def test_image_list_without_final_newline_and_errors(tmp_path: Path) -> None:
    names = read_image_list(MINI / "test_list.txt")
    assert names[0] == "00000006_000.png" and names[-1] == "00000008_001.png" and len(names) == 6
    path = tmp_path / "list.txt"
    path.write_text("a.png\nb.png\na.png")
    with pytest.raises(DataFormatError, match=r"list.txt:3: duplicate image a.png \(first on line 1\)"):
        read_image_list(path)
    path.write_text("a.png b.png\n")
    with pytest.raises(DataFormatError, match=r":1: expected one image name"):
        read_image_list(path)
    with pytest.raises(DataFormatError, match=r"file not found"):
        read_image_list(tmp_path / "absent.txt")


def test_split_file_reorders_chexnet_columns(tmp_path: Path) -> None:
    path = tmp_path / "train_list.txt"
    # one positive in each CheXNet column j -> CLASSES index of CHEXNET_ORDER[j]
    rows = [f"{j:08d}_000.png " + " ".join("1" if k == j else "0" for k in range(14)) for j in range(14)]
    path.write_text("\n".join(rows))
    names, labels = read_split_file(path)
    assert len(names) == 14 and labels.shape == (14, 14)
    for j, name in enumerate(CHEXNET_ORDER):
        assert np.flatnonzero(labels[j]).tolist() == [CLASSES.index(name)]


def test_split_file_names_only_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "val.txt"
    path.write_text("a.png\nb.png\n")
    assert read_split_file(path) == (["a.png", "b.png"], None)
    path.write_text("a.png " + "0 " * 14 + "\nb.png 0 1\n")
    with pytest.raises(DataFormatError, match=r":2: expected 15 fields, found 3"):
        read_split_file(path)
    path.write_text("a.png " + "0 " * 13 + "2\n")
    with pytest.raises(DataFormatError, match=r":1: labels must be 0 or 1"):
        read_split_file(path)
    path.write_text("a.png 0 1 0\n")
    with pytest.raises(DataFormatError, match=r":1: expected a name and 14 labels"):
        read_split_file(path)


def test_small_helpers() -> None:
    assert parse_finding_labels("No Finding") == []
    assert parse_finding_labels("Infiltrate|Mass") == ["Infiltration", "Mass"]
    assert parse_finding_labels("Mass|Flu") is None
    assert patient_from_name("00000013_005.png") == 13
    assert patient_from_name("case13.png") is None


def test_data_entry_parse_is_reused_only_for_an_unchanged_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxrres.data import metadata

    path = tmp_path / "Data_Entry_2017.csv"
    path.write_bytes((MINI / "Data_Entry_2017.csv").read_bytes())
    os.utime(path, ns=(10**18, 10**18))  # last changed in 2001: old enough to be remembered
    first = read_data_entry(path)
    first.loc["00000001_000.png", "patient_id"] = 999  # callers get copies: this must not leak into the next call
    calls: list[Path] = []
    monkeypatch.setattr(metadata, "_parse_data_entry", lambda p: calls.append(p) or pytest.fail("parsed again"))
    assert read_data_entry(path).loc["00000001_000.png", "patient_id"] == 1 and not calls
    path.write_bytes(path.read_bytes().replace(b",1,31,F,", b",1,32,F,", 1))  # same size, new mtime: parsed again
    monkeypatch.undo()
    assert read_data_entry(path).loc["00000001_000.png", "age"] == 32
