"""What of a data root is read, and by which rules (issue 24): one file has one name, a published CSV is read strictly
(UTF-8, named distinct header fields, rows as wide as the header), links out of the root are followed and listed,
cache sources are fingerprinted by content, and data strings in Markdown output are escaped."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrres.data import DataRoot, build_split
from cxrres.data.cache import MANIFEST, ResolutionCache, prepare_cache
from cxrres.data.cache_store import FINGERPRINT_BLOCK_BYTES, source_fingerprint
from cxrres.data.datasets import DataOptions, chexpert, detect_dataset, listed_images, open_dataset
from cxrres.data.datasets.summary import describe_table, format_table_summary
from cxrres.data.paths import normal_relpath
from cxrres.data.split_summary import describe_split, format_summary
from cxrres.errors import DataFormatError, SplitError


def _plain_root(root: Path, rows: list[str], header: str = "image,patient,split,Nodule,Mass") -> Path:
    """A plain-CSV root: labels.csv of `rows` under `header`, and a 16-px PNG for each distinct file it names."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    for i in range(6):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(root / "images" / f"{i}.png")
    return root


#: Six images of six patients, two per part.
GOOD = [
    f"images/{i}.png,p{i},{part},{i % 2},0" for i, part in enumerate(["train", "train", "val", "val", "test", "test"])
]


# ---- 9: one file, one name ----


@pytest.mark.parametrize("spelling", ["images/./0.png", "images//0.png", "./images/0.png", "images/0.png/"])
def test_one_file_spelled_two_ways_is_a_duplicate(tmp_path: Path, spelling: str) -> None:
    root = _plain_root(tmp_path / "r", GOOD + [f"{spelling},p9,test,1,0"])  # another patient, in test: leakage
    with pytest.raises(DataFormatError, match=r"labels\.csv:8: duplicate image 'images/0\.png' \(first on line 2"):
        open_dataset(root)


def test_chexpert_path_spelled_two_ways_is_a_duplicate(tmp_path: Path) -> None:
    info = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(chexpert.CLASSES)
    row = "CheXpert-v1.0-small/train/patient{p:05d}/study1/{sep}view1_frontal.jpg,Female,60,Frontal,AP" + ",1.0" * 14
    lines = [info] + [row.format(p=p, sep="") for p in range(1, 9)] + [row.format(p=1, sep="./")]
    root = tmp_path / "chexpert"
    root.mkdir()
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataFormatError, match=r"train\.csv:10: duplicate image 'train/patient00001/study1/view1_frontal"
    ):
        open_dataset(root)


def test_normal_relpath_rules() -> None:
    assert [normal_relpath(t) for t in ("a/./b", "a//b", "a/b/", "./a/b", "a/b")] == ["a/b"] * 5
    assert [normal_relpath(t) for t in ("", ".", "/a/b", "../a", "a/../b", "a\\b", " a/b", "a\x00b")] == [None] * 8


def test_two_names_linked_to_one_file_are_refused(tmp_path: Path) -> None:
    root = _plain_root(tmp_path / "r", GOOD[:5] + ["images/5.png,p5,test,1,0"])
    (root / "images" / "5.png").unlink()
    (root / "images" / "5.png").symlink_to("0.png")  # a second name for images/0.png, of another patient
    with pytest.raises(SplitError, match=r"images/0\.png and images/5\.png are one file"):
        listed_images(root, "csv")


# ---- 10: a published CSV is read strictly ----


@pytest.mark.parametrize(
    "header,rows,where,problem",
    [
        ("image,patient,split,Nodule,Mass,Nodule", [r + ",1" for r in GOOD], 1, "header names column 'Nodule' twice"),
        ("image,patient,split,Nodule,,Mass", [r + ",1" for r in GOOD], 1, "header field 5 of 6 has no name"),
        (
            "image,patient,split,Nodule,Mass",
            GOOD[:3] + ["images/3.png,p3,val"] + GOOD[4:],
            5,
            "expected 5 fields as in the header, found 3",
        ),
        (
            "image,patient,split,Nodule,Mass",
            GOOD[:3] + ["images/3.png,p3,val,1,0,1"] + GOOD[4:],
            5,
            "expected 5 fields as in the header, found 6",
        ),
    ],
)
def test_csv_header_and_width_breaches_are_refused_at_their_line(
    tmp_path: Path, header: str, rows: list[str], where: int, problem: str
) -> None:
    root = _plain_root(tmp_path / "r", rows, header)
    with pytest.raises(DataFormatError) as caught:
        open_dataset(root, "csv")
    assert str(caught.value).startswith(f"{root / 'labels.csv'}:{where}: {problem}")


def test_a_quoted_field_over_two_lines_keeps_file_lines(tmp_path: Path) -> None:
    rows = GOOD[:1] + ['"images/1.png",p1,"tr\nain",1,0'] + GOOD[2:4] + ["images/4.png,p4,test,1"] + GOOD[5:]
    root = _plain_root(tmp_path / "r", rows)
    with pytest.raises(DataFormatError, match=r"labels\.csv:7: expected 5 fields"):  # record 6 starts on line 7
        open_dataset(root, "csv")


# ---- 11: a file that is not UTF-8 is named as such ----


def test_latin1_labels_csv_is_named_not_passed_to_nih(tmp_path: Path) -> None:
    root = _plain_root(tmp_path / "header", GOOD, "image,patient,split,Nodule,Épanchement")
    data = (root / "labels.csv").read_text().encode("latin-1")
    (root / "labels.csv").write_bytes(data)
    with pytest.raises(DataFormatError) as caught:
        detect_dataset(root)  # images/ is there too: NIH would otherwise take the root and ask for BBox_List
    assert data.index(b"\xc9") == 27
    assert str(caught.value).startswith(
        f"{root / 'labels.csv'}:1: not UTF-8 text: byte 0xc9 at byte offset 27, column 28"
    )


def test_latin1_row_names_its_line_and_byte_offset(tmp_path: Path) -> None:
    rows = GOOD[:3] + ["images/3.png,José,val,1,0"] + GOOD[4:]
    root = _plain_root(tmp_path / "row", rows)
    data = (root / "labels.csv").read_text().encode("latin-1")
    (root / "labels.csv").write_bytes(data)
    assert detect_dataset(root) == "csv"
    with pytest.raises(DataFormatError) as caught:
        open_dataset(root)
    offset = data.index(b"\xe9")
    assert str(caught.value).startswith(
        f"{root / 'labels.csv'}:5: not UTF-8 text: byte 0xe9 at byte offset {offset:,}, column 17"
    )


# ---- 14: links out of the root are followed and listed ----


def _outside_copy(mini: Path, tmp_path: Path) -> Path:
    """mini with 00000002_000.png replaced by a link to a copy outside the root; returns the copy."""
    outside = tmp_path / "elsewhere" / "00000002_000.png"
    outside.parent.mkdir()
    shutil.move(mini / "images" / "00000002_000.png", outside)
    (mini / "images" / "00000002_000.png").symlink_to(outside)
    return outside


def test_link_out_of_the_root_is_listed_by_describe_and_the_manifest(mini: Path, tmp_path: Path) -> None:
    outside = _outside_copy(mini, tmp_path)
    root = DataRoot.at(mini)
    summary = describe_split(root, build_split(root, "official"))
    assert summary["symlinks_outside_root"] == {
        "count": 1,
        "first": [{"image": "00000002_000.png", "file": str(outside)}],
    }
    assert (
        f"1 image is a symlink to files outside the data root (followed; first: 00000002_000.png -> {outside})"
        in format_summary(summary)
    )
    prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    manifest = json.loads((tmp_path / "c" / MANIFEST).read_text())
    assert manifest["symlinks_outside_root"]["count"] == 1
    cache = ResolutionCache.open(tmp_path / "c", 16)
    assert cache.array()[cache.rows["00000002_000.png"]].any()  # followed: the image is read


def test_linked_images_folder_lists_every_image(tmp_path: Path) -> None:
    root = _plain_root(tmp_path / "r", GOOD)
    shutil.move(root / "images", tmp_path / "store")
    (root / "images").symlink_to(tmp_path / "store")
    summary = describe_table(open_dataset(root, options=DataOptions(views="all")))
    assert summary["symlinks_outside_root"]["count"] == 6
    assert "6 images are symlinks to files outside the data root" in format_table_summary(summary)


# ---- 15: a source swapped for another of the same size, its mtime kept, is noticed ----


def test_same_size_swap_with_mtime_kept_rebuilds_the_cache(mini: Path, tmp_path: Path) -> None:
    image = mini / "images" / "00000002_000.png"
    Image.fromarray(np.full((48, 48), 100, np.uint8)).save(image, compress_level=0)
    prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    stat = image.stat()
    Image.fromarray(np.full((48, 48), 200, np.uint8)).save(image, compress_level=0)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert image.stat().st_size == stat.st_size and image.stat().st_mtime_ns == stat.st_mtime_ns
    report = prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    assert report.built_px == (16,)
    cache = ResolutionCache.open(tmp_path / "c", 16)
    assert (cache.array()[cache.rows["00000002_000.png"]] == 200).all()


def test_fingerprint_reads_head_and_tail_not_times(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = bytearray(os.urandom(3 * FINGERPRINT_BLOCK_BYTES))
    path.write_bytes(data)
    first = source_fingerprint(path)
    os.utime(path, ns=(1, 1))
    assert source_fingerprint(path) == first  # times alone change nothing (a copied data root keeps its cache)
    for at in (0, len(data) - 1):
        changed = bytearray(data)
        changed[at] ^= 1
        path.write_bytes(changed)
        assert source_fingerprint(path) != first
    middle = bytearray(data)
    middle[len(data) // 2] ^= 1  # documented blind spot: a same-size edit in the middle of a large file
    path.write_bytes(middle)
    assert source_fingerprint(path) == first


# ---- 13: data strings in Markdown output are escaped ----


def test_markdown_tables_and_prose_escape_data_strings(tmp_path: Path) -> None:
    from cxrres.deploy.export import _table
    from cxrres.report.document import Block, to_markdown
    from cxrres.report.tables import Table

    hostile = "<script>alert(1)</script>"
    table = Table(["class", "AUC"], [[hostile, "0.5"], ["a|b", "0.6"], ["Pleural_Thickening", "0.7"]], bold={(1, 1)})
    text = to_markdown(
        f"study {hostile}", [("Data", [Block(text=f"data set `csv`: class {hostile}"), Block(table=table)])], tmp_path
    )
    card = _table(["Class", "AUC"], [[hostile, "0.5"], ["a|b", "0.6"]])
    for markdown in (text, card, table.to_markdown()):
        assert "<script>" not in markdown and "alert(1)" in markdown
        rows = [line for line in markdown.splitlines() if line.startswith("| ")]
        assert all(len(line.replace("\\|", "").split("|")) == 4 for line in rows)  # 2 cells: no cell split by a '|'
    assert "| a\\|b | **0.6** |" in table.to_markdown() and "| Pleural_Thickening | 0.7 |" in table.to_markdown()
    assert "data set `csv`: class &lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_real_csv_files_keep_parsing_with_file_lines() -> None:
    """PadChest's quoted multi-line cells: rows keep their file lines (the last of 160,861 records is on line
    166,738)."""
    from cxrres.data.datasets.common import read_columns

    path = (
        Path(__file__).resolve().parents[2]
        / "shared"
        / "data"
        / "padchest"
        / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"
    )
    if not path.is_file():
        pytest.skip("../shared PadChest CSV absent")
    frame = read_columns(path, ("ImageID", "Labels"))
    assert len(frame) == 160_861 and frame.index[0] == 2 and frame.index[-1] == 166_738
    assert pd.Index(frame.index).is_monotonic_increasing
