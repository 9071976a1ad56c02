"""`cxrres localize` on every box data set, on fixtures written here: a tiny run (32 px, 1 epoch) trained and localized
in the VinDr-CXR Kaggle layout (non-square DICOMs with PatientIDs, a bad row skipped); the PhysioNet and RSNA layouts
localized with a run directory holding an untrained network (the box bookkeeping does not depend on training). Every
ground-truth box of the test part is one row of localization_samples.csv, the counts per class are exact, classes are
ordered by box size in each image's own frame, and a study localizes only the runs whose classes have boxes."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pydicom")

import torch  # noqa: E402

from cxrres import runs  # noqa: E402
from cxrres.config import TrainConfig, resolve  # noqa: E402
from cxrres.data.datasets import open_dataset  # noqa: E402
from cxrres.data.source import open_table  # noqa: E402
from cxrres.util.filenames import safe_filename  # noqa: E402
from cxrres.localization.localize import figure_name, localize_run  # noqa: E402
from cxrres.models.registry import create_model  # noqa: E402
from cxrres.study.grid import boxed_classes, make_study, needs_localization  # noqa: E402
from cxrres.study.plan import describe_plan, study_plan  # noqa: E402
from cxrres.training.train import train  # noqa: E402

from conftest import write_dicom  # noqa: E402
from test_rsna_dataset import write_fixture as write_rsna  # noqa: E402
from test_vindr import write_fixture as write_vindr, write_physionet  # noqa: E402

Box = tuple[str, str, float, float, float, float]  # image name, class, x, y, w, h (source px)


def _noise(shape: tuple[int, int], seed: int, dtype=np.uint16) -> np.ndarray:
    top = 4095 if dtype == np.uint16 else 255
    return np.random.default_rng(seed).integers(0, top + 1, shape).astype(dtype)


def vindr_kaggle(root: Path, n_images: int = 36) -> tuple[list[Box], dict[str, tuple[int, int]]]:
    """A VinBigData root: `n_images` non-square DICOMs (3 per patient) and train.csv with 3 readers per image; image i
    has Cardiomegaly when i is even (two boxes from R1 when i % 6 == 0, a box from R2 too when i % 4 == 0), Nodule/Mass
    when i % 3 == 0 (R1), and an extra bad row (a duplicate) on image 5. Returns (boxes, (h, w) by image name)."""
    rows, boxes, sizes = [], [], {}
    for i in range(n_images):
        image = f"img{i:03d}"
        h, w = 40 + 8 * (i % 3), 56 + 8 * (i % 2)  # 40..56 x 56..64, never square
        sizes[image + ".dicom"] = (h, w)
        write_dicom(root / "train" / f"{image}.dicom", _noise((h, w), i), patient_id=f"P{i // 3:02d}")
        marks: dict[str, list[tuple[str, tuple[int, int, int, int]]]] = {"R1": [], "R2": [], "R3": []}
        if i % 2 == 0:
            marks["R1"].append(("Cardiomegaly", (10, 12, 40, 32)))
            if i % 6 == 0:
                marks["R1"].append(("Cardiomegaly", (30, 30, 50, 38)))
            if i % 4 == 0:
                marks["R2"].append(("Cardiomegaly", (11, 12, 42, 30)))
        if i % 3 == 0:
            marks["R1"].append(("Nodule/Mass", (2 + i % 5, 3, 8 + i % 5, 8)))
        for reader, found in marks.items():
            if not found:
                rows.append(f"{image},No finding,14,{reader},,,,")
            for label, (x0, y0, x1, y1) in found:
                rows.append(f"{image},{label},{3 if label == 'Cardiomegaly' else 8},{reader},{x0},{y0},{x1},{y1}")
                boxes.append((image + ".dicom", label, x0, y0, x1 - x0, y1 - y0))
    rows.append(rows[[r.startswith("img005,") for r in rows].index(True)])  # a duplicated row: image 5 is left out
    write_vindr(root, rows)
    return [b for b in boxes if b[0] != "img005.dicom"], sizes


def _config(root: Path, out: Path, **settings) -> TrainConfig:
    return TrainConfig(
        data=str(root),
        resolution_px=32,
        weights="none",
        out=str(out),
        cache=str(out) + "-cache",
        max_epochs=1,
        batch_size=16,
        progress=False,
        **settings,
    )


def untrained_run(root: Path, out: Path, class_names: str, **settings) -> Path:
    """A run directory as `localize` reads it (config.yaml's resolved settings, checkpoints/best.ckpt) holding a freshly
    initialised network."""
    config = resolve(_config(root, out, class_names=class_names, **settings))
    (out / runs.CHECKPOINTS).mkdir(parents=True)
    runs.write_yaml_atomic(out / runs.CONFIG, {"settings": dataclasses.asdict(config)})
    torch.save(create_model(config.arch, len(config.classes), "none").state_dict(), out / runs.CHECKPOINTS / runs.BEST)
    return out


def _check_samples(run: Path, expected: list[Box]) -> pd.DataFrame:
    """Every expected box is exactly one row of localization_samples.csv; the per-class n of localization.csv."""
    samples = pd.read_csv(run / runs.LOCALIZATION_SAMPLES)
    got = Counter(
        zip(samples["image"], samples["class"], samples["gt_x"], samples["gt_y"], samples["gt_w"], samples["gt_h"])
    )
    assert got == Counter(expected)
    summary = pd.read_csv(run / runs.LOCALIZATION).set_index("class")
    assert summary["n"].drop("mean").to_dict() == dict(Counter(b[1] for b in expected))
    groups = Counter((b[0], b[1]) for b in expected)
    assert all(n == groups[(i, c)] for i, c, n in zip(samples["image"], samples["class"], samples["n_boxes"]))
    return summary


def test_vindr_kaggle_localizes_every_test_box(tmp_path: Path) -> None:
    root = tmp_path / "vindr"
    boxes, sizes = vindr_kaggle(root)
    config = _config(root, tmp_path / "run", skip_bad=True)
    table = open_table(root, config.data_options())
    assert any("patient-wise" in n and "PatientID" in n for n in table.notes)
    assert table.frame.groupby("patient_id")["part"].nunique().max() == 1  # each patient in one part
    assert len(table.skipped) == 1 and "img005.dicom" not in table.frame.index
    run = train(config)
    assert (
        (run / runs.SKIPPED_ROWS).read_text() == f"{root / 'train.csv'}:{len(pd.read_csv(root / 'train.csv')) + 1}: "
        f"duplicate of line {_first_line(root, 'img005,')}\n"
    )
    result = localize_run(run, examples=1, progress=False)
    test = set(table.images("test"))
    expected = [b for b in boxes if b[0] in test]
    assert expected and {b[1] for b in expected} == {"Cardiomegaly", "Nodule/Mass"}
    summary = _check_samples(run, expected)
    # classes ordered by mean box area at 1024 px of each image's own padded square (its longer side)
    frame = pd.DataFrame(expected, columns=["image", "label", "x", "y", "w", "h"])
    side = frame["image"].map(lambda n: max(sizes[n]))
    order = (frame["w"] * frame["h"] * (1024 / side) ** 2).groupby(frame["label"]).mean().sort_values().index.tolist()
    assert summary.index[:-1].tolist() == order
    figures = sorted(p.name for p in result.figures)  # examples=1: one per class, named by class and image
    assert len(figures) == 2 and all(p.is_file() for p in result.figures)
    assert figures[0].startswith("Cardiomegaly_img") and figures[1].startswith("Nodule_Mass-")
    assert figure_name("Nodule/Mass", "img003.dicom") == safe_filename("Nodule/Mass") + "_img003.png"
    assert result.skipped_rows == table.skipped


def _first_line(root: Path, prefix: str) -> int:
    """The file line (header = 1) of the first train.csv row starting with `prefix`."""
    lines = (root / "train.csv").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(prefix))


def test_physionet_localizes_the_official_test_boxes(tmp_path: Path) -> None:
    labels, boxes, test_labels, test_boxes = [], [], [], []
    for i in range(24):
        card = i % 2 == 0
        for reader in ("R1", "R2", "R3"):
            labels.append(f"t{i},{reader},{int(card and reader != 'R3')},0,0,{int(not card or reader == 'R3')}")
            boxes.append(
                f"t{i},{reader},Cardiomegaly,5,6,30,28" if card and reader != "R3" else f"t{i},{reader},No finding,,,,"
            )
    for i in range(6):  # the consensus test part: Nodule/Mass boxes on s0, s2, s4 (two on s0), Cardiomegaly on s1
        test_labels.append(f"s{i},R_consensus,{int(i == 1)},{int(i % 2 == 0)},0,{int(i % 2 == 1 and i != 1)}")
        test_boxes += [f"s{i},R_consensus,Nodule/Mass,{2 + i},4,{9 + i},12"] if i % 2 == 0 else []
        test_boxes += ["s0,R_consensus,Nodule/Mass,20,20,28,30"] if i == 0 else []
        test_boxes += (
            ["s1,R_consensus,Cardiomegaly,4,4,40,30"]
            if i == 1
            else [f"s{i},R_consensus,No finding,,,,"]
            if i % 2
            else []
        )
    root = write_physionet(tmp_path / "p", boxes, labels, test_boxes, test_labels)
    for i in range(24):
        write_dicom(root / "train" / f"t{i}.dicom", _noise((48, 40), i, np.uint8))
    for i in range(6):
        write_dicom(root / "test" / f"s{i}.dicom", _noise((44, 52), 100 + i, np.uint8))
    run = untrained_run(root, tmp_path / "run", "Cardiomegaly,Nodule/Mass,Other diseases")
    localize_run(run, examples=0, progress=False)
    expected = [(f"s{i}.dicom", "Nodule/Mass", 2.0 + i, 4.0, 7.0, 8.0) for i in (0, 2, 4)] + [
        ("s0.dicom", "Nodule/Mass", 20.0, 20.0, 8.0, 10.0),
        ("s1.dicom", "Cardiomegaly", 4.0, 4.0, 36.0, 26.0),
    ]
    _check_samples(run, expected)
    nodules = untrained_run(root, tmp_path / "nodules", "Nodule/Mass")  # boxes of classes it does not predict: left out
    localize_run(nodules, examples=0, progress=False)
    _check_samples(nodules, expected[:-1])


def test_rsna_localizes_every_test_box_in_the_1024_frame(tmp_path: Path) -> None:
    rows = []
    for i in range(30):
        n = (0, 1, 2, 3)[i % 4]
        rows += [f"q{i:02d},{100 + 200 * k},{150 + 100 * k},{80 + 10 * i},{120},1" for k in range(n)] or [
            f"q{i:02d},,,,,0"
        ]
    root = write_rsna(tmp_path / "rsna", rows)
    for i in range(30):
        write_dicom(root / "stage_2_train_images" / f"q{i:02d}.dcm", _noise((1024, 1024), i, np.uint8))
    run = untrained_run(root, tmp_path / "run", "Lung Opacity")
    table = open_table(root, runs.read_settings(run).data_options())
    localize_run(run, examples=1, progress=False)
    test = set(table.images("test"))
    expected = [
        (f"q{i:02d}.dcm", "Lung Opacity", 100.0 + 200 * k, 150.0 + 100 * k, 80.0 + 10 * i, 120.0)
        for i in range(30)
        for k in range((0, 1, 2, 3)[i % 4])
        if f"q{i:02d}.dcm" in test
    ]
    assert len(expected) >= 3
    _check_samples(run, expected)
    assert [p.name for p in (run / runs.LOCALIZATION_EXAMPLES).iterdir()] == [
        figure_name("Lung Opacity", pd.read_csv(run / runs.LOCALIZATION_SAMPLES)["image"].iloc[0])
    ]


def test_a_data_set_without_boxes_is_refused_in_one_line(tmp_path: Path) -> None:
    from conftest import write_chexpert_small
    from cxrres.errors import CxrresError

    root = write_chexpert_small(tmp_path / "CheXpert-v1.0-small")
    run = untrained_run(root, tmp_path / "run", "Cardiomegaly,Edema")
    with pytest.raises(
        CxrresError, match=r"localization needs ground-truth boxes; the chexpert data set has none"
    ) as caught:
        localize_run(run, progress=False)
    assert "\n" not in str(caught.value)


def test_needs_localization_asks_the_data_set(tmp_path: Path) -> None:
    boxed = {"Nodule/Mass", "Cardiomegaly"}
    assert needs_localization(TrainConfig(label="Nodule/Mass"), boxed)
    assert not needs_localization(TrainConfig(label="Other lesion"), boxed)
    assert needs_localization(TrainConfig(class_names="Other lesion,Cardiomegaly"), boxed)
    assert not needs_localization(TrainConfig(class_names="Other lesion"), boxed)
    assert needs_localization(TrainConfig(), boxed) and not needs_localization(TrainConfig(), set())
    root = tmp_path / "vindr"
    write_vindr(root, [f"i{k},Nodule/Mass,8,R1,1,1,5,5" for k in range(20)])
    assert boxed_classes(open_dataset(root)) == {"Nodule/Mass"}
    for train_settings, left in (
        ({}, "left: train, evaluate, localize"),
        ({"class_names": "Other lesion"}, "left: train, evaluate\n"),
    ):
        study = make_study(
            {"data": str(root), "out": str(tmp_path / "s"), "resolutions": [32], "train": train_settings}
        )
        assert left in describe_plan(study, study_plan(study)) + "\n"
