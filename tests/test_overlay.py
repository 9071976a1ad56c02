"""Heat-map overlays: what a figure says (class, probability, call and its threshold, box threshold, image name, colour
bar), why a blank map is blank, and file names built from data (`safe_filename`) inside their folder and unique."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from cxrres.localization import saliency
from cxrres.config import TrainConfig
from cxrres.util.filenames import MAX_CHARS, safe_filename
from cxrres.localization.localize import figure_name
from cxrres.models.registry import create_model
from cxrres.localization.overlay import Caption, figure_px, heatmap_figure, save_overlay
from cxrres.deploy.predict import write_heatmaps


def _map_with_a_peak() -> np.ndarray:
    cam = np.zeros((4, 4))
    cam[1, 2], cam[2, 2] = 1.0, 0.5
    return saliency.to_box_frame(cam, (80, 60))


def _all_text(overlay) -> str:
    return "\n".join(overlay.texts())


def test_figure_says_class_probability_call_threshold_and_image(tmp_path: Path) -> None:
    grey = np.tile(np.linspace(0, 255, 60), (80, 1))
    caption = Caption("00000003_000.png", "Effusion", 0.35, probability=0.731, threshold=0.412, method="hirescam")
    overlay = heatmap_figure(grey, _map_with_a_peak(), None, [(30, 20, 15, 20)], 0.0, caption)
    texts = overlay.texts()
    assert [t.get_text() for t in overlay.figure.texts] == overlay.lines  # the caption is what the figure shows
    text = _all_text(overlay)
    for part in ("Effusion", "p = 0.731", "call: positive (p ≥ 0.412", "00000003_000.png", "hirescam", "map ≥ 0.35"):
        assert part in text, part
    assert "map, min-max normalised (0..1)" in texts and {"0.0", "1.0"} <= set(texts)  # the colour bar
    assert overlay.blank == "" and "blank map" not in text
    assert not (overlay.panel[..., 0] == overlay.panel[..., 2]).all()  # the map tints the radiograph
    save_overlay(tmp_path / "a.png", overlay)
    assert Image.open(tmp_path / "a.png").size[::-1] == figure_px(overlay.panel.shape[:2], len(overlay.lines))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    negative = heatmap_figure(grey, _map_with_a_peak(), None, [], 0.0, Caption("x.dcm", "Nodule", 0.5, 0.2, 0.412))
    assert "call: negative (p < 0.412" in _all_text(negative)
    no_point = heatmap_figure(grey, _map_with_a_peak(), None, [], 0.0, Caption("x.dcm", "Nodule", 0.5, 0.2, math.nan))
    assert "no operating point" in _all_text(no_point) and "call:" not in _all_text(no_point)


def test_blank_reason_names_the_cause_and_the_grid() -> None:
    zero = saliency.blank_reason(np.zeros((2, 2)), 64)
    assert zero.startswith("map is zero everywhere") and "2 x 2 at 64 px" in zero
    constant = saliency.blank_reason(np.full((1, 1), 0.3), 32)
    assert constant.startswith("map is constant (0.3") and "normalisation is undefined" in constant
    assert "1 x 1 at 32 px" in constant
    assert saliency.blank_reason(np.array([[0.0, 0.1], [0.0, 0.0]]), 64) == ""
    assert "non-finite" in saliency.blank_reason(np.array([[np.nan, 1.0]]), 64)


def test_a_zero_map_is_drawn_blank_with_its_reason() -> None:
    grey = np.full((64, 64), 100.0)
    cam = np.zeros((2, 2))
    reason = saliency.blank_reason(cam, 64)
    overlay = heatmap_figure(
        grey,
        saliency.to_box_frame(cam, (64, 64)),
        None,
        [],
        0.0,
        Caption("x.png", "Nodule", 0.5, 0.2, 0.1, blank=reason),
    )
    assert overlay.blank == reason
    text = _all_text(overlay)
    assert "blank map\nmap is zero everywhere" in text and "2 x 2 at 64 px" in text.replace("\n", " ")
    assert (overlay.panel == 100).all()  # untinted: no uniform blue wash that looks like a map
    # a frame without contrast is blank even when the caller gave no reason
    plain = heatmap_figure(grey, np.zeros((64, 64), np.float32), None, [], 0.0, Caption("x.png", "Nodule", 0.5))
    assert plain.blank.startswith("map is constant over the image")


def test_safe_filename_keeps_names_inside_their_folder_and_unique() -> None:
    for text in ("A/B", "../x", "..", "a\\b", "Lung Opacity", "", ".hidden", "x" * 300, "Nodule/Mass", "é"):
        name = safe_filename(text)
        assert name and "/" not in name and "\\" not in name and not name.startswith(".") and len(name) <= MAX_CHARS + 9
        assert safe_filename(text) == name  # stable
    assert (
        safe_filename("Pleural_Thickening") == "Pleural_Thickening" and safe_filename("00000003_000") == "00000003_000"
    )
    assert (
        safe_filename("A/B").startswith("A_B-") and len({safe_filename(t) for t in ("A/B", "A_B", "A B", "A:B")}) == 4
    )
    assert len({safe_filename("x" * 300), safe_filename("x" * 301)}) == 2
    assert figure_name("Nodule/Mass", "img003.dicom") == safe_filename("Nodule/Mass") + "_img003.png"


def test_write_heatmaps_slash_class_shared_stems_and_blank_warnings(tmp_path: Path, caplog) -> None:
    images = [tmp_path / "in1" / "img.png", tmp_path / "in2" / "img.png"]  # one stem, two inputs
    for i, path in enumerate(images):
        path.parent.mkdir()
        cv2.imwrite(str(path), np.random.default_rng(i).integers(0, 255, (48, 40), dtype=np.uint8))
    torch.manual_seed(0)
    model = create_model("resnet34", 2, weights="none", progress=False)
    config = TrainConfig(data=str(tmp_path), resolution_px=32)
    out = tmp_path / "out" / "heatmaps"
    with caplog.at_level(logging.WARNING, logger="cxrres.deploy.predict"):
        written = write_heatmaps(
            model,
            config,
            ["A/B", "C"],
            images,
            np.array([[0.7, 0.2], [0.1, 0.9]]),
            "all",
            "gradcam",
            0.5,
            out,
            torch.device("cpu"),
            thresholds=np.array([0.5, np.nan]),
        )
    assert len(written) == 4 == len(set(written)) and all(p.parent == out and p.is_file() for p in written)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)  # no temporary left
    assert sum(safe_filename("A/B") in p.name for p in written) == 2
    assert written[0].name == f"img_{safe_filename('A/B')}.png" and written[2].name.startswith("img-")
    # ResNet-34 at 32 px: the last feature map is a single cell, so every map is blank, and each says so
    blanks = [r.getMessage() for r in caplog.records if "blank heat map" in r.getMessage()]
    assert len(blanks) == 4 and all("1 x 1 at 32 px" in m for m in blanks)
    assert any(str(written[0]) in m for m in blanks)
