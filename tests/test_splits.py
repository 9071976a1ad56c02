"""Layouts, splits and leakage checks, on the sample and (exact counts) on the real NIH metadata."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrres.data import CLASSES, DataRoot, boxes_in_part, build_split
from cxrres.data.datasets import dataset_classes
from cxrres.data.layout import find_images
from cxrres.data.datasets import DataOptions
from cxrres.data.source import DataSource, open_table
from cxrres.data.splits import carve_validation
from cxrres.data.split_summary import describe_data, describe_split
from cxrres.errors import CxrresError, MissingImagesError, SplitError

from conftest import MINI


@pytest.fixture(autouse=True)
def _user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep any default cache out of ~/.cache."""
    monkeypatch.setenv("CXRRES_CACHE_DIR", str(tmp_path / "user-cache"))


def test_flat_and_kaggle_layouts_find_the_same_images(mini: Path) -> None:
    flat = find_images(mini)
    assert len(flat) == 14
    # Kaggle: images_001/images/ and images_002/images/
    for i, name in enumerate(sorted(flat)):
        folder = mini / f"images_{1 + i % 2:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(str(mini / "images" / name), folder / name)
    (mini / "images").rmdir()
    kaggle = find_images(mini)
    assert sorted(kaggle) == sorted(flat)
    assert kaggle["00000001_001.png"].parent.parent.name == "images_002"


def test_image_in_both_layouts_is_an_error(mini: Path) -> None:
    (mini / "images_001" / "images").mkdir(parents=True)
    shutil.copy(mini / "images" / "00000001_000.png", mini / "images_001" / "images")
    with pytest.raises(CxrresError, match="00000001_000.png also found"):
        find_images(mini)


def test_missing_images_reported_with_count_and_names(mini: Path) -> None:
    (mini / "images" / "00000002_000.png").unlink()
    root = DataRoot.at(mini)
    names = sorted(root.data_entry.index)
    _, missing = root.locate(names)
    assert missing == ["00000002_000.png"]
    with pytest.raises(
        MissingImagesError, match=r"1 of 14 listed images are missing on disk \(first: 00000002_000.png\)"
    ):
        root.require_images(names)


def test_split_from_files_on_sample() -> None:
    root = DataRoot.at(MINI)
    split = build_split(root, "chexnet", MINI / "splits")
    assert [len(split.images(p)) for p in ("train", "val", "test")] == [5, 3, 6]
    # labels come from the split files and equal Data_Entry here
    entry = root.data_entry
    for part in ("train", "val", "test"):
        assert np.array_equal(split.labels(part), entry.loc[split.images(part), list(CLASSES)].to_numpy())
    assert len(boxes_in_part(root, split)) == 5


def test_patient_leakage_is_an_error(mini: Path) -> None:
    splits = mini / "splits"
    train = (splits / "train_list.txt").read_text()
    test_line = next(
        row for row in (splits / "test_list.txt").read_text().splitlines() if row.startswith("00000006_001")
    )
    (splits / "train_list.txt").write_text(train + test_line.replace("00000006_001", "00000006_002") + "\n")
    with open(mini / "Data_Entry_2017.csv", "a") as entry:
        entry.write("00000006_002.png,Infiltration,2,6,36,M,PA,2500,2048,0.143,0.143,\n")
    with pytest.raises(
        SplitError,
        match=r"patient leakage: 1 patients have images in more than one part \(e.g. patient 6 in test and train\)",
    ):
        build_split(DataRoot.at(mini), "chexnet", splits)


def test_image_in_two_parts_is_an_error(mini: Path) -> None:
    splits = mini / "splits"
    line = (splits / "test_list.txt").read_text().splitlines()[0]
    (splits / "val_list.txt").write_text((splits / "val_list.txt").read_text() + line + "\n")
    with pytest.raises(SplitError, match="appear in more than one part"):
        build_split(DataRoot.at(mini), "chexnet", splits)


def test_official_split_carves_whole_patients_deterministically() -> None:
    root = DataRoot.at(MINI)
    a = build_split(root, "official", val_fraction=0.3, seed=1)
    b = build_split(root, "official", val_fraction=0.3, seed=1)
    assert a.frame.equals(b.frame)
    assert a.images("test") == root.test_list
    assert len(a.images("val")) >= 0.3 * 8
    val_patients = set(a.part("val")["patient_id"])
    assert not val_patients & set(a.part("train")["patient_id"])


def test_carve_validation_fraction_and_bounds() -> None:
    patients = np.repeat(np.arange(100), 3)
    mask = carve_validation([f"{i}" for i in range(300)], patients, 0.2, seed=0)
    assert mask.sum() == 60  # whole patients of 3 images: exactly 20 patients reach 20 %
    assert set(np.unique(patients[mask])).isdisjoint(np.unique(patients[~mask]))
    assert not np.array_equal(mask, carve_validation([f"{i}" for i in range(300)], patients, 0.2, seed=1))
    with pytest.raises(CxrresError, match="between 0 and 1"):
        carve_validation(["a"], np.array([1]), 1.5, seed=0)


def test_bundled_chexnet_split_needs_the_full_data_entry() -> None:
    with pytest.raises(SplitError, match="give its split with --split-dir"):
        build_split(DataRoot.at(MINI), "chexnet")


# ---- exact counts on the real NIH metadata (skipped without ../shared) ----


def test_real_metadata_counts(real_root: Path) -> None:
    root = DataRoot.at(real_root)
    entry = root.data_entry
    assert len(entry) == 112_120 and entry["patient_id"].nunique() == 30_805
    assert entry["Infiltration"].sum() == 19_894 and entry["Hernia"].sum() == 227
    assert (entry[list(CLASSES)].sum(axis=1) == 0).sum() == 60_361  # No Finding
    boxes = root.boxes
    assert len(boxes) == 984 and boxes["image"].nunique() == 880
    assert boxes["label"].value_counts().to_dict() == {
        "Atelectasis": 180,
        "Effusion": 153,
        "Cardiomegaly": 146,
        "Infiltration": 123,
        "Pneumonia": 120,
        "Pneumothorax": 98,
        "Mass": 85,
        "Nodule": 79,
    }
    assert len(root.train_val_list) == 86_524 and len(root.test_list) == 25_596
    assert set(boxes["image"]) <= set(root.test_list)


def test_real_chexnet_split(real_root: Path) -> None:
    root = DataRoot.at(real_root)
    split = build_split(root, "chexnet")
    summary = describe_split(root, split)
    assert summary["images"] == {"train": 78_468, "val": 11_219, "test": 22_433}
    assert summary["classes"]["Hernia"] == {"train": 144, "val": 41, "test": 42}
    assert sum(b["count"] for b in summary["boxes"].values()) == 204
    assert summary["boxes"]["Nodule"] == {"count": 18, "mean_area_px2": pytest.approx(5527.4, abs=0.1)}
    # bundled files are the CheXNet files
    shared = build_split(root, "chexnet", real_root / "splits" / "chexnet")
    assert shared.frame.equals(split.frame)


def test_real_official_splits(real_root: Path) -> None:
    root = DataRoot.at(real_root)
    carved = build_split(root, "official")
    assert [len(carved.images(p)) for p in ("train", "val", "test")] == [77_871, 8_653, 25_596]
    files = build_split(root, "official", real_root / "splits" / "official_with_val")
    assert [len(files.images(p)) for p in ("train", "val", "test")] == [75_312, 11_212, 25_596]
    assert len(boxes_in_part(root, files)) == 984


def test_real_images_found(real_root: Path) -> None:
    root = DataRoot.at(real_root)
    assert len(root.images) == 405
    _, missing = root.locate(sorted(root.data_entry.index))
    assert len(missing) == 112_120 - 405


def test_nih_table_carries_its_split_of_record(mini: Path) -> None:
    """NIH read through the common path is one DatasetTable: its `Split` rides along (digest, describe, boxes)."""
    root = DataRoot.at(mini)
    split = build_split(root, "official")
    source = DataSource.read(mini, DataOptions(split="official"))
    table = source.table
    assert table.split is not None and table.split.name == "official" and table.split.frame.equals(split.frame)
    expected = hashlib.sha256(split.frame.drop(columns=["patient_id"]).to_csv().encode()).hexdigest()
    assert source.digest() == table.digest() == expected  # NIH runs keep the identity of their Split
    assert source.boxes("test").equals(boxes_in_part(root, split, "test"))
    assert table.implied_classes and dataset_classes(mini) == CLASSES == table.classes
    assert describe_data(root, table) == describe_split(root, split)  # describe and the report as before
    assert describe_data(root, table, of_record=False)["dataset"] == "nih"  # --views other than frontal: the table's
    with pytest.raises(CxrresError, match="without a cache"):
        source.cache_dir


def test_table_without_split_of_record_digests_its_frame(tmp_path: Path) -> None:
    from cxrres.synthetic.layouts import synthesize_layout

    synthesize_layout("csv", tmp_path / "csv", n_images=24, size_px=64, seed=1, workers=1, progress=False)
    table = open_table(tmp_path / "csv", DataOptions())
    assert table.dataset == "csv" and table.split is None and not table.implied_classes
    assert table.digest() == hashlib.sha256(table.frame.drop(columns=["patient_id"]).to_csv().encode()).hexdigest()
    assert dataset_classes(tmp_path / "csv") == table.classes
    assert "dataset" in describe_data(DataRoot.at(tmp_path / "csv"), table)
