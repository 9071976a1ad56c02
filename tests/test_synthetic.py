"""The phantom: determinism, a valid NIH layout, class/box consistency, lesion sizes, and the resolution mechanism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrres.cli import main
from cxrres.data import BOX_CLASSES, CLASSES, DataRoot, boxes_in_part, build_split
from cxrres.data.cache import ResolutionCache, prepare_cache
from cxrres.errors import CxrresError
from cxrres.synthetic import Anatomy, ImageSpec, measure_cnr, plan, render, synthesize

#: Mean box areas (px² at 1024) of the real official boxes (DESIGN.md).
REAL_MEAN_AREA = {
    "Nodule": 5.5e3,
    "Atelectasis": 34e3,
    "Mass": 50e3,
    "Pneumothorax": 55e3,
    "Effusion": 62e3,
    "Infiltration": 120e3,
    "Pneumonia": 159e3,
    "Cardiomegaly": 184e3,
}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    synthesize(out, n_images=60, n_patients=24, size_px=128, seed=3, workers=2, progress=False)
    return out


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_identical_bytes_for_any_worker_count(phantom: Path, tmp_path: Path) -> None:
    synthesize(tmp_path / "one", n_images=60, n_patients=24, size_px=128, seed=3, workers=1, progress=False)
    assert _all_files(tmp_path / "one") == _all_files(phantom)
    synthesize(tmp_path / "other", n_images=60, n_patients=24, size_px=128, seed=4, workers=1, progress=False)
    assert _all_files(tmp_path / "other")["images/00000001_000.png"] != _all_files(phantom)["images/00000001_000.png"]


def test_layout_is_valid_through_the_data_layer(phantom: Path, tmp_path: Path) -> None:
    root = DataRoot.at(phantom)
    assert len(root.data_entry) == 60 and root.data_entry["patient_id"].nunique() == 24
    assert len(root.images) == 60
    split = build_split(root, "chexnet")  # picks up phantom/splits/chexnet, checked for patient leakage
    assert sum(len(split.images(p)) for p in ("train", "val", "test")) == 60
    official = build_split(root, "official", val_fraction=0.2)
    assert official.images("test") == split.images("test")
    for part in ("train", "val", "test"):  # split labels equal Data_Entry labels
        assert np.array_equal(split.labels(part), root.data_entry.loc[split.images(part), list(CLASSES)].to_numpy())
    report = prepare_cache(phantom, [32], tmp_path / "cache", workers=1, progress=False)
    assert report.n_images == 60 and not report.missing
    assert ResolutionCache.open(tmp_path / "cache", 32).source_size_px["00000001_000.png"] == 128


def test_boxes_belong_to_test_images_with_that_finding(phantom: Path) -> None:
    root = DataRoot.at(phantom)
    split = build_split(root, "chexnet")
    boxes = root.boxes
    assert len(boxes) > 0 and len(boxes_in_part(root, split)) == len(boxes)
    entry = root.data_entry
    for row in boxes.itertuples():
        assert entry.loc[row.image, row.label] == 1, (row.image, row.label)
        assert 0 <= row.x and 0 <= row.y and row.x + row.w <= 128 and row.y + row.h <= 128
    boxed = set(zip(boxes["image"], boxes["label"]))
    test = split.part("test")
    for name in test.index:
        for label in BOX_CLASSES:
            if test.loc[name, label]:
                assert (name, label) in boxed, (name, label)


def test_about_half_the_images_have_no_finding_and_findings_co_occur() -> None:
    specs, parts = plan(2000, 800, seed=0)
    findings = [s.findings for s in specs]
    assert 0.45 < np.mean([not f for f in findings]) < 0.55
    counts = {c: sum(c in f for f in findings) for c in CLASSES}
    assert all(counts[c] > 0 for c in CLASSES)
    assert counts["Infiltration"] > counts["Nodule"] > counts["Hernia"]
    both = sum("Effusion" in f and "Atelectasis" in f for f in findings)
    expected_if_independent = counts["Effusion"] * counts["Atelectasis"] / len(findings)
    assert both > 1.5 * expected_if_independent
    patients = {s.patient_id for s in specs}
    assert len(patients) == 800 and set(parts.values()) == {"train", "val", "test"}


def test_enrichment_multiplies_a_class_and_leaves_the_rest_in_order() -> None:
    plain = [s.findings for s in plan(2000, 800, seed=0)[0]]
    enriched = [s.findings for s in plan(2000, 800, seed=0, enrich={"Nodule": 4.0, "Cardiomegaly": 4.0})[0]]
    count = lambda findings, c: sum(c in f for f in findings)  # noqa: E731
    for c in ("Nodule", "Cardiomegaly"):
        assert count(enriched, c) > 2 * count(plain, c), c  # 4x the weight, diluted by the sum of weights
    assert count(enriched, "Infiltration") < count(plain, "Infiltration")  # fixed number of draws per image
    assert [not f for f in enriched] == [not f for f in plain]  # the same images stay normal
    with pytest.raises(ValueError, match="unknown class"):
        plan(10, 5, seed=0, enrich={"Nodules": 2.0})
    with pytest.raises(ValueError, match="positive"):
        plan(10, 5, seed=0, enrich={"Nodule": 0.0})


def test_synth_cli_rejects_a_malformed_enrichment(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path / "p"), "--images", "4", "--enrich", "Nodule:3"])
    assert "expected CLASS=FACTOR, got 'Nodule:3'" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "p"), "--images", "4", "--size", "64", "--enrich", "Nodul=3"]) == 1
    assert "unknown class(es) Nodul" in capsys.readouterr().err
    assert not (tmp_path / "p" / "Data_Entry_2017_v2020.csv").exists()


def test_lesion_boxes_have_realistic_relative_sizes() -> None:
    areas = {}
    for label in REAL_MEAN_AREA:
        values = []
        for i in range(6):
            spec = ImageSpec("x.png", i, 0, (label,), 100 + i, Anatomy.sample(np.random.default_rng([3, i])))
            _, boxes = render(spec, 256)
            values += [w * h * 16 for name, (x, y, w, h) in boxes if name == label]  # px² at 1024
        areas[label] = float(np.mean(values))
        assert 0.6 < areas[label] / REAL_MEAN_AREA[label] < 1.5, (label, areas[label])
    assert (
        areas["Nodule"]
        < areas["Atelectasis"]
        < areas["Mass"]
        < areas["Infiltration"]
        < areas["Pneumonia"]
        < areas["Cardiomegaly"]
    )


def test_nodules_fade_at_low_resolution_while_cardiomegaly_stays_visible() -> None:
    nodule = measure_cnr("Nodule", (64, 512), n=3)
    heart = measure_cnr("Cardiomegaly", (64, 512), n=3)
    assert nodule[64] < 0.5 * nodule[512]
    assert heart[64] > 10 and heart[64] > 2 * nodule[64]


def test_bad_arguments() -> None:
    with pytest.raises(CxrresError, match="patients"):
        synthesize("/tmp/never", n_images=5, n_patients=9, progress=False)
    with pytest.raises(CxrresError, match="too small"):
        synthesize("/tmp/never", n_images=5, size_px=16, progress=False)


def test_describe_reports_box_areas_in_the_1024_frame(phantom: Path) -> None:
    from cxrres.data.split_summary import describe_split

    root = DataRoot.at(phantom)
    summary = describe_split(root, build_split(root, "chexnet"))
    boxes = root.boxes
    for label, box in summary["boxes"].items():
        raw = boxes[boxes["label"] == label]
        if len(raw):
            assert box["mean_area_px2"] == pytest.approx(float((raw["w"] * raw["h"]).mean()) * 64, abs=0.1)
