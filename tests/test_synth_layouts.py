"""The phantom in every published layout (`cxrres synth --layout`): detected by the adapters, exact counts against the
plan, uncertain labels for the CheXpert-coded layouts, true multi-lesion boxes in RSNA DICOMs, determinism, and the
NIH layout unchanged."""

from __future__ import annotations

import csv
import gzip
import hashlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from cxrres.data.layout import PHANTOM_MARKER
from cxrres import runs
from cxrres.cli import main
from cxrres.data.datasets import DataOptions, apply_uncertain, chexpert, detect_dataset, mimic, open_dataset, padchest
from cxrres.data.images import read_grey
from cxrres.data.labels import CLASSES
from cxrres.errors import CxrresError
from cxrres.synthetic import plan, render, synthesize, to_uint8
from cxrres.synthetic.layouts import LAYOUTS, mimic_ids, synthesize_layout
from cxrres.synthetic.padchest_layout import STORED_MAX
from cxrres.synthetic.rsna_layout import opacity_counts, patient_uid
from cxrres.synthetic.writing import OPACITY_FINDINGS

N_IMAGES, N_PATIENTS, SIZE_PX, SEED = 40, 16, 64, 7
#: Digest (decoded PNG pixels, every other file's bytes) of `synthesize(40 images, 16 patients, 96 px, seed 5)` as
#: written before the layouts existed (commit 1f868fb): the NIH layout must not change by a pixel or a byte.
NIH_DIGEST = "1716fb44ae899e9ea5e225f171fc7eb227f48be9ecb59a0a0189db912419d47c"


def _write(layout: str, out: Path, workers: int = 1) -> dict:
    return synthesize_layout(
        layout,
        out,
        n_images=N_IMAGES,
        n_patients=None if layout == "rsna" else N_PATIENTS,
        size_px=SIZE_PX,
        seed=SEED,
        workers=workers,
        progress=False,
    )


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    for layout in LAYOUTS:
        _write(layout, base / layout)
    return {layout: base / layout for layout in LAYOUTS}


@pytest.fixture(scope="module")
def planned():
    """(specs, parts by patient) of the fixture's phantom, straight from the plan."""
    return plan(N_IMAGES, N_PATIENTS, SEED)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _digest(root: Path) -> str:
    """SHA-256 over every file's name and content (PNG pixels decoded), the phantom marker (added later) left out."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != PHANTOM_MARKER):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        if path.suffix == ".png":
            pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            h.update(f"{pixels.shape}{pixels.dtype}".encode() + pixels.tobytes())
        else:
            h.update(path.read_bytes())
    return h.hexdigest()


def _rows(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_nih_layout_is_byte_for_byte_the_old_phantom(tmp_path: Path) -> None:
    synthesize_layout(
        "nih", tmp_path / "new", n_images=40, n_patients=16, size_px=96, seed=5, workers=1, progress=False
    )
    assert _digest(tmp_path / "new") == NIH_DIGEST
    assert (tmp_path / "new" / PHANTOM_MARKER).read_text().startswith("Synthetic chest radiographs")
    synthesize(tmp_path / "direct", n_images=40, n_patients=16, size_px=96, seed=5, workers=1, progress=False)
    assert _files(tmp_path / "direct") == _files(tmp_path / "new")


def test_every_layout_is_detected_as_its_data_set(roots: dict[str, Path]) -> None:
    assert {layout: detect_dataset(root) for layout, root in roots.items()} == {layout: layout for layout in LAYOUTS}


@pytest.mark.parametrize("layout", ["chexpert", "mimic", "csv", "rsna", "padchest"])
def test_same_arguments_give_identical_bytes_for_any_worker_count(
    roots: dict[str, Path], tmp_path: Path, layout: str
) -> None:
    _write(layout, tmp_path / layout, workers=2)
    assert _files(tmp_path / layout) == _files(roots[layout])


def test_csv_layout_is_the_plan_over_the_nih_pngs(roots: dict[str, Path], planned) -> None:
    specs, parts = planned
    table = open_dataset(roots["csv"])
    assert table.classes == CLASSES and len(table.frame) == N_IMAGES and table.notes == ()
    for part in ("train", "val", "test"):
        names = [f"images/{s.name}" for s in specs if parts[s.patient_id] == part]
        assert sorted(table.images(part)) == sorted(names)
        expected = [sum(c in s.findings for s in specs if parts[s.patient_id] == part) for c in CLASSES]
        assert table.labels(part).sum(axis=0).astype(int).tolist() == expected
    nih = _files(roots["nih"] / "images")
    assert {name: data for name, data in _files(roots["csv"] / "images").items()} == nih  # the very same PNG files


def _chexpert_expected(spec, name: str) -> bool | None:
    """Whether CheXpert class `name` is present in `spec` (None: no NIH counterpart), by the names table's pairs."""
    pairs = {
        "Cardiomegaly": "Cardiomegaly",
        "Edema": "Edema",
        "Consolidation": "Consolidation",
        "Pneumonia": "Pneumonia",
        "Atelectasis": "Atelectasis",
        "Pneumothorax": "Pneumothorax",
        "Pleural Effusion": "Effusion",
    }
    if name == "Lung Opacity":
        return any(f in spec.findings for f in ("Consolidation", "Infiltration", "Pneumonia"))
    return pairs[name] in spec.findings if name in pairs else None


def test_chexpert_layout_counts_views_and_labels(roots: dict[str, Path], planned) -> None:
    specs, parts = planned
    root = roots["chexpert"]
    table = open_dataset(root)
    by_path = {
        f"{'valid' if parts[s.patient_id] == 'test' else 'train'}/patient{s.patient_id:05d}/study{s.follow_up + 1}"
        f"/view1_frontal.jpg": s
        for s in specs
    }
    assert sorted(table.frame.index) == sorted(by_path)  # frontal only by default: one per planned image
    assert sorted(table.images("test")) == sorted(p for p, s in by_path.items() if parts[s.patient_id] == "test")
    assert len(table.images("train")) + len(table.images("val")) == sum(parts[s.patient_id] != "test" for s in specs)
    laterals = sorted(str(p.relative_to(root)) for p in root.glob("*/*/*/view2_lateral.jpg"))
    assert 0 < len(laterals) < N_IMAGES
    everything = open_dataset(root, options=DataOptions(views="all"))
    assert len(everything.frame) == N_IMAGES + len(laterals) and set(everything.frame.index) - set(by_path) == set(
        laterals
    )
    assert (everything.frame.loc[laterals, "view"] == "Lateral").all()
    rows = {r["Path"].split("/", 1)[1]: r for r in _rows(root / "train.csv") + _rows(root / "valid.csv")}
    assert all(r["Path"].startswith("CheXpert-v1.0-small/") for r in rows.values())
    cells = {"train": [], "test": []}
    for path, spec in by_path.items():
        part = "test" if parts[spec.patient_id] == "test" else "train"
        for name in chexpert.CLASSES:
            value, present = rows[path][name], _chexpert_expected(spec, name)
            if name == "No Finding":
                assert value == ("1.0" if not spec.findings else ("0.0" if part == "test" else ""))
            elif part == "test":  # valid.csv: read by radiologists, 1.0 or 0.0 only
                assert value == ("1.0" if present else "0.0")
            elif present is None:
                assert value == ""
            else:
                assert value in (("1.0", "-1.0") if present else ("0.0", "", "-1.0"))
                cells["train"].append((value, present))
    values = [v for v, _ in cells["train"]]
    assert {"1.0", "-1.0", "0.0", ""} <= set(values)
    assert ("-1.0", True) in cells["train"] and ("-1.0", False) in cells["train"]  # uncertain findings and mentions


def test_uncertain_policies_change_the_counts_on_the_chexpert_layout(roots: dict[str, Path]) -> None:
    table = open_dataset(roots["chexpert"])
    raw = np.concatenate([table.labels("train"), table.labels("val")])
    ones, uncertain = (raw == 1).sum(axis=0), (raw == -1).sum(axis=0)
    assert uncertain.sum() > 0
    targets, mask = apply_uncertain(raw, "ignore")
    assert (targets * mask).sum(axis=0).tolist() == ones.tolist() and (~mask).sum(axis=0).tolist() == uncertain.tolist()
    targets, mask = apply_uncertain(raw, "zeros")
    assert targets.sum(axis=0).tolist() == ones.tolist() and mask.all()
    targets, mask = apply_uncertain(raw, "ones")
    assert targets.sum(axis=0).tolist() == (ones + uncertain).tolist() and mask.all()
    assert (targets.sum(axis=0) > apply_uncertain(raw, "zeros")[0].sum(axis=0)).any()


def test_mimic_layout_has_the_plan_as_official_split(roots: dict[str, Path], planned) -> None:
    specs, parts = planned
    root = roots["mimic"]
    table = open_dataset(root)
    assert len(table.frame) == N_IMAGES and table.frame["patient_id"].nunique() == N_PATIENTS
    for part in ("train", "val", "test"):
        assert len(table.images(part)) == sum(parts[s.patient_id] == part for s in specs)
    ids = [mimic_ids(s, i) for i, s in enumerate(specs)]
    assert len({study for _, study in ids}) == N_IMAGES and len({subject for subject, _ in ids}) == N_PATIENTS
    assert all(10_000_000 <= subject < 20_000_000 and 50_000_000 <= study < 60_000_000 for subject, study in ids)
    for (subject, study), spec in zip(ids, specs):
        rows = table.frame[table.frame["path"].str.startswith(f"files/p{str(subject)[:2]}/p{subject}/s{study}/")]
        assert len(rows) == 1 and rows["part"].iloc[0] == parts[spec.patient_id]
    assert all((root / p).is_file() for p in open_dataset(root, options=DataOptions(views="all")).frame["path"])
    split = _rows(root / mimic.SPLIT_FILE)
    assert len(split) == len(list(root.glob("files/p1*/p*/s*/*.jpg"))) > N_IMAGES  # laterals are listed too
    spec_of = {str(study): spec for (_, study), spec in zip(ids, specs)}
    labelers = [_rows(root / mimic.LABEL_FILES[name]) for name in ("chexpert", "negbio")]
    assert len(labelers[0]) == len(labelers[1]) == N_IMAGES and labelers[0] != labelers[1]
    for rows in labelers:  # both labelers: 1.0 only for a finding the image has, which is 1.0 or -1.0
        for row in rows:
            spec = spec_of[row["study_id"]]
            for name in mimic.CLASSES:
                present = _chexpert_expected(spec, name)
                if name == "No Finding":
                    assert row[name] == ("1.0" if not spec.findings else "")
                elif present is None:
                    assert row[name] == ""
                else:
                    assert row[name] in (("1.0", "-1.0") if present else ("0.0", "", "-1.0"))
    negbio = mimic.read(root, DataOptions(labeler="negbio"))
    assert negbio.frame.index.tolist() == table.frame.index.tolist()


def test_padchest_layout_has_the_plan_in_twelve_bit_pngs(roots: dict[str, Path], planned) -> None:
    specs, _ = planned
    root = roots["padchest"]
    table = open_dataset(root)
    assert table.classes == CLASSES and len(table.frame) == N_IMAGES
    assert table.frame["patient_id"].nunique() == N_PATIENTS and set(table.frame["view"]) <= {"PA", "AP"}
    everything = open_dataset(root, options=DataOptions(views="all"))
    laterals = everything.frame[everything.frame["view"] == "L"]
    assert len(everything.frame) == N_IMAGES + len(laterals) and len(laterals) > 0
    rows = _rows(root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv")
    assert len(rows) == len(everything.frame) and list(rows[0])[:2] == ["", "ImageID"]
    assert len({row["PatientID"] for row in rows}) == N_PATIENTS
    expected = [sum(c in s.findings for s in specs) for c in CLASSES]
    assert np.nansum(table.frame[list(CLASSES)].to_numpy(), axis=0).astype(int).tolist() == expected
    assert sum(r["Labels"] == "['normal']" for r in rows if r["Projection"] != "L") == sum(
        not s.findings for s in specs
    )
    for path in everything.frame["path"]:
        pixels = cv2.imread(str(root / path), cv2.IMREAD_UNCHANGED)
        assert pixels.dtype == np.uint16 and pixels.shape == (SIZE_PX, SIZE_PX) and 255 < pixels.max() <= STORED_MAX


def test_rsna_layout_has_every_true_lesion_as_a_box(roots: dict[str, Path]) -> None:
    root = roots["rsna"]
    specs, _ = plan(N_IMAGES, N_IMAGES, SEED)
    by_uid = {patient_uid(SEED, s): replace(s, lesion_counts=opacity_counts(s)) for s in specs}
    table = open_dataset(root)
    assert sorted(table.frame.index) == sorted(f"{uid}.dcm" for uid in by_uid) and table.frame["frontal"].all()
    for part in ("train", "val", "test"):
        positive = [any(f in by_uid[n[:-4]].findings for f in OPACITY_FINDINGS) for n in table.images(part)]
        assert int(table.labels(part).sum()) == sum(positive)
    boxes = table.boxes.groupby("image")
    n_boxes = 0
    for uid, spec in by_uid.items():
        image, truth = render(spec, SIZE_PX, box_classes=OPACITY_FINDINGS)
        found = boxes.get_group(f"{uid}.dcm") if f"{uid}.dcm" in boxes.groups else table.boxes.iloc[:0]
        written = sorted(tuple(int(v) for v in row) for row in found[["x", "y", "w", "h"]].to_numpy())
        assert written == sorted(box for _, box in truth)
        n_boxes += len(truth)
        decoded = read_grey(root / "stage_2_train_images" / f"{uid}.dcm")
        assert np.abs(decoded - to_uint8(image).astype(np.float32)).mean() < 2.0  # JPEG baseline, quality 95
        if truth and set(spec.findings) <= set(OPACITY_FINDINGS):  # the lesion signal lies in the boxes
            lesion = np.abs(image - render(spec, SIZE_PX, with_lesions=False)[0])
            inside = np.zeros(lesion.shape, bool)
            for _, (x, y, w, h) in truth:
                inside[y : y + h, x : x + w] = True
            assert all(lesion[y : y + h, x : x + w].mean() > 1.3 * lesion[~inside].mean() for _, (x, y, w, h) in truth)
    per_image = table.boxes.groupby("image").size()
    assert len(table.boxes) == n_boxes and (per_image >= 2).sum() >= 2
    for _, group in table.boxes.groupby("image"):  # several lesions of one image never touch
        b = group[["x", "y", "w", "h"]].to_numpy()
        for i in range(len(b)):
            for j in range(i):
                assert not (
                    b[i, 0] < b[j, 0] + b[j, 2]
                    and b[j, 0] < b[i, 0] + b[i, 2]
                    and b[i, 1] < b[j, 1] + b[j, 3]
                    and b[j, 1] < b[i, 1] + b[i, 3]
                )
    classes = _rows(root / "stage_2_detailed_class_info.csv")
    assert len(classes) == len(_rows(root / "stage_2_train_labels.csv")) == N_IMAGES - len(per_image) + n_boxes


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_describe_runs_on_every_layout(roots: dict[str, Path], layout: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["describe", "--data", str(roots[layout])]) == 0
    out = capsys.readouterr().out
    assert ("test" in out) and (layout == "nih" or f"data set {layout}" in out)


def test_prepare_caches_every_rsna_image(roots: dict[str, Path], tmp_path: Path) -> None:
    assert (
        main(
            [
                "prepare",
                "--data",
                str(roots["rsna"]),
                "--resolutions",
                "32",
                "--cache",
                str(tmp_path / "cache"),
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    index = pd.read_csv(tmp_path / "cache" / "index.csv")
    assert len(index) == N_IMAGES and index["ok"].all() and (index["source_height_px"] == SIZE_PX).all()


def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(CxrresError, match="one image per patient"):
        synthesize_layout("rsna", tmp_path / "r", n_images=10, n_patients=5, size_px=64, progress=False)
    with pytest.raises(CxrresError, match="at most 1024 px"):
        synthesize_layout("rsna", tmp_path / "r", n_images=10, size_px=2048, progress=False)
    with pytest.raises(CxrresError, match="unknown phantom layout"):
        synthesize_layout("vindr", tmp_path / "p", n_images=10)
    assert main(["synth", "--layout", "mimic", "--out", str(tmp_path / "m"), "--images", "4", "--size", "32"]) == 1
    assert "too small" in capsys.readouterr().err and not (tmp_path / "m").exists()
    with pytest.raises(SystemExit):
        main(["synth", "--layout", "dicom", "--out", str(tmp_path / "x")])


@pytest.fixture
def one_thread():
    """Torch on one thread: a tiny network on a shared 2-core machine trains 4x faster than with two spinning."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_rsna_phantom_trains_and_localizes_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture, one_thread
) -> None:
    root, run = tmp_path / "rsna", tmp_path / "run"
    assert (
        main(
            [
                "synth",
                "--layout",
                "rsna",
                "--out",
                str(root),
                "--images",
                "48",
                "--size",
                "64",
                "--seed",
                "4",
                "--enrich",
                "Pneumonia=3,Consolidation=3",
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )  # val has positives
    assert "48 images of 64 px from 48 patients" in capsys.readouterr().out
    assert (
        main(
            [
                "train",
                "--data",
                str(root),
                "--cache",
                str(tmp_path / "cache"),
                "--out",
                str(run),
                "--resolution",
                "32",
                "--max-epochs",
                "1",
                "--weights",
                "none",
                "--batch-size",
                "8",
                "--arch",
                "resnet34",
                "--quiet",
            ]
        )
        == 0
    )
    table = open_dataset(root)
    n_test, n_positive = len(table.images("test")), int(table.labels("test").sum())
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    assert config["data"]["dataset"] == "rsna" and config["data"]["images"]["test"] == n_test
    predictions = runs.read_predictions(run)
    assert predictions.classes == ["Lung Opacity"] and len(predictions.images) == n_test
    assert main(["evaluate", str(run), "--n-boot", "20"]) == 0
    auc = pd.read_csv(run / runs.AUC).set_index("class")
    assert (auc.loc["Lung Opacity", "n_pos"], auc.loc["Lung Opacity", "n_neg"]) == (n_positive, n_test - n_positive)
    assert predictions.images == table.images("test") and 0 < n_positive < n_test
    # localize: every true test box of the phantom is scored exactly once, in the image's own pixels
    assert main(["localize", str(run), "--examples", "1", "--quiet"]) == 0
    samples = pd.read_csv(run / runs.LOCALIZATION_SAMPLES)
    truth = table.boxes[table.boxes["image"].isin(table.images("test"))]
    key = lambda f, cols: sorted(map(tuple, f[cols].astype({c: float for c in cols[1:]}).to_numpy().tolist()))  # noqa: E731
    assert len(samples) == len(truth) > n_positive  # several boxes on some images
    assert key(samples, ["image", "gt_x", "gt_y", "gt_w", "gt_h"]) == key(truth, ["image", "x", "y", "w", "h"])
    summary = pd.read_csv(run / runs.LOCALIZATION).set_index("class")
    assert int(summary.loc["Lung Opacity", "n"]) == len(truth)
    assert (samples.groupby("image")["n_boxes"].first() == truth.groupby("image").size()).all()


def test_padchest_classes_may_be_its_own_terms(tmp_path: Path, capsys: pytest.CaptureFixture, one_thread) -> None:
    """`--classes` on PadChest takes PadChest terms beside NIH names; the parts stay those of the default read."""
    import ast

    root, run = tmp_path / "pc", tmp_path / "run"
    assert (
        main(
            [
                "synth",
                "--layout",
                "padchest",
                "--out",
                str(root),
                "--images",
                "40",
                "--size",
                "64",
                "--seed",
                "2",
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    base = [
        "train",
        "--data",
        str(root),
        "--cache",
        str(tmp_path / "cache"),
        "--resolution",
        "32",
        "--max-epochs",
        "1",
        "--weights",
        "none",
        "--batch-size",
        "8",
        "--arch",
        "resnet34",
        "--quiet",
    ]
    assert main(base + ["--out", str(run), "--classes", "normal,Effusion"]) == 0
    predictions = runs.read_predictions(run)
    assert predictions.classes == ["normal", "Effusion"]
    default = open_dataset(root)
    assert predictions.images == default.images("test")
    with open(root / padchest.FILE_NAMES[0], newline="") as handle:
        listed = {r["ImageID"]: ast.literal_eval(r["Labels"]) for r in csv.DictReader(handle)}
    expected = [
        [int(listed[i] == ["normal"]), int(any(t in padchest.NIH_TERMS["Effusion"] for t in listed[i]))]
        for i in predictions.images
    ]
    assert predictions.labels.tolist() == expected and 0 < sum(e[0] for e in expected) < len(expected)
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "bad"), "--classes", "pleural efusion"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'pleural efusion': no row's Labels lists this PadChest term" in err[0]
