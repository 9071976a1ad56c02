"""cxrres.localization.saliency and cxrres localize: geometry on hand-made arrays, the post-ReLU split, agreement with
pytorch-grad-cam, and an end-to-end run on a phantom."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cxrres.cli import main
from cxrres.data import read_bbox_list
from cxrres.models.registry import create_model
from cxrres.localization.saliency import (
    METHODS,
    boxes_from_saliency,
    class_activation_maps,
    iou,
    pointing_hit,
    score_detections,
    split_network,
    to_box_frame,
)


def test_components_touching_diagonal_and_border():
    s = np.zeros((6, 8))
    s[0:2, 0:2] = 1.0  # at the border (top-left)
    s[2, 2] = 1.0  # touches the first block only diagonally
    s[4:6, 5:8] = 1.0  # bottom-right border
    s[3, 5:7] = 1.0  # shares an edge with the block below: same component
    assert boxes_from_saliency(s, connectivity=8) == [(0, 0, 3, 3), (5, 3, 3, 3)]
    assert boxes_from_saliency(s, connectivity=4) == [(0, 0, 2, 2), (2, 2, 1, 1), (5, 3, 3, 3)]


def test_single_maximum_constant_map_and_inclusive_threshold():
    s = np.zeros((5, 5))
    s[3, 1] = 7.0
    assert boxes_from_saliency(s) == [(1, 3, 1, 1)]
    assert boxes_from_saliency(np.full((4, 4), 0.3)) == []
    ramp = np.array([[0.0, 0.25, 0.5, 0.75, 1.0]])
    assert boxes_from_saliency(ramp, threshold=0.5) == [(2, 0, 3, 1)]  # 0.5 itself is in the mask
    assert boxes_from_saliency(ramp * 10 + 3, threshold=0.5) == [(2, 0, 3, 1)]  # min-max normalised first


def test_iou_known_values():
    assert iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert iou((0, 0, 2, 2), (1, 0, 2, 2)) == pytest.approx(2 / 6)
    assert iou((0, 0, 4, 4), (1, 1, 2, 2)) == pytest.approx(4 / 16)
    assert iou((0, 0, 2, 2), (2, 0, 2, 2)) == 0.0  # touching edges: [0, 2) and [2, 4) do not overlap
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_at_most_one_true_positive_per_box():
    gt = (10, 10, 10, 10)
    assert score_detections([(10, 10, 10, 10), (11, 11, 9, 9), (50, 50, 5, 5)], gt) == (pytest.approx(1 / 3), True)
    assert score_detections([], gt) == (0.0, False)
    assert score_detections([(50, 50, 5, 5)], gt) == (0.0, False)
    # IoU exactly at the threshold counts: (10,10,10,10) vs (10,10,1,10) -> 10/100
    assert score_detections([(10, 10, 1, 10)], gt, iou_threshold=0.1) == (1.0, True)


def test_pointing_game_uses_the_maximum_pixel_centre():
    frame = np.zeros((10, 10))
    frame[4, 7] = 1.0  # pixel centre (7.5, 4.5)
    assert pointing_hit(frame, (7, 4, 1, 1)) and pointing_hit(frame, (0, 0, 8, 5))
    assert not pointing_hit(frame, (0, 0, 7.5, 10))  # [0, 7.5) excludes the centre 7.5
    assert not pointing_hit(frame, (8, 4, 2, 2))
    frame[9, 0] = 1.0  # a tie: the first maximum in row-major order counts
    assert pointing_hit(frame, (7, 4, 1, 1)) and not pointing_hit(frame, (0, 9, 1, 1))
    assert not pointing_hit(np.zeros((4, 4)), (0, 0, 4, 4))  # a blank map points nowhere
    # a 4x4 map peaking in one cell, upsampled to 1024 px: the maximum sits in that cell
    cam = np.zeros((4, 4), np.float32)
    cam[1, 2] = 3.0
    assert pointing_hit(to_box_frame(cam, (1024, 1024)), (600, 340, 80, 80))
    assert not pointing_hit(to_box_frame(cam, (1024, 1024)), (512, 256, 60, 60))


def test_map_to_box_frame():
    cam = np.zeros((4, 4), np.float32)
    cam[1, 2] = 3.0  # one cell of a 4x4 map over a 1024-px square covers x in [512, 768), y in [256, 512)
    assert boxes_from_saliency(to_box_frame(cam, (1024, 1024))) == [(512, 256, 256, 256)]
    corner = np.zeros((4, 4), np.float32)
    corner[0, 0] = 1.0
    assert boxes_from_saliency(to_box_frame(corner, (1024, 1024))) == [(0, 0, 256, 256)]
    # a 600 x 800 source was padded bottom to 800 x 800: the map covers the square, then is cropped to the image
    frame = to_box_frame(cam, (600, 800))
    assert frame.shape == (600, 800)
    assert boxes_from_saliency(frame) == [(400, 200, 200, 200)]
    assert not to_box_frame(np.ones((4, 4)), (64, 64)).any()


def test_densenet_in_place_relu_is_handled():
    torch.manual_seed(0)
    model = create_model("densenet121", 3, weights="none").eval()
    x = torch.randn(2, 3, 64, 64)
    seen = {}
    hook = model.features.norm5.register_forward_hook(lambda m, i, o: seen.update(norm5=o.detach().clone(), live=o))
    with torch.no_grad():
        logits = model(x)
    hook.remove()
    assert (seen["norm5"] < 0).any()  # what a hook on features.norm5 sees: the map before the ReLU ...
    assert torch.equal(seen["live"], torch.relu(seen["norm5"]))  # ... whose tensor forward() then ReLUs in place
    backbone, head = split_network(model)
    with torch.no_grad():
        a = backbone(x)
        assert (a >= 0).all() and torch.equal(a, torch.relu(seen["norm5"]))
        assert torch.allclose(head(a), logits, atol=1e-6)
    resnet = create_model("resnet34", 3, weights="none").eval()
    backbone, head = split_network(resnet)
    with torch.no_grad():
        assert torch.allclose(head(backbone(x)), resnet(x), atol=1e-6)


class _Explicit(nn.Module):
    """DenseNet with its final ReLU as a separate, not-in-place module, for pytorch-grad-cam's hooks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.features, self.relu, self.classifier = model.features, nn.ReLU(inplace=False), model.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.features(x))
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(a, 1), 1))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_agrees_with_pytorch_grad_cam(method):
    cams = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    library = {
        "gradcam": cams.GradCAM,
        "hirescam": cams.HiResCAM,
        "gradcam++": cams.GradCAMPlusPlus,
        "xgradcam": cams.XGradCAM,
        "layercam": cams.LayerCAM,
    }[method]
    torch.manual_seed(1)
    model = create_model("densenet121", 4, weights="none").eval()
    x = torch.randn(3, 3, 96, 96)
    classes = [0, 3, 1]
    wrapped = _Explicit(model)
    with library(model=wrapped, target_layers=[wrapped.relu]) as cam:
        expected = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])
    ours = class_activation_maps(model, x, torch.tensor(classes), method).numpy()

    def scale(img: np.ndarray) -> np.ndarray:
        img = img - img.min()
        return img / (1e-7 + img.max())

    for e, o in zip(expected, ours):  # the library min-max scales, resizes to the input size, and scales again
        np.testing.assert_allclose(scale(cv2.resize(scale(o), (96, 96))), e, atol=2e-4)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[str, str]:
    from cxrres.synthetic import synthesize
    from cxrres.config import TrainConfig
    from cxrres.training.train import train

    base = tmp_path_factory.mktemp("loc")
    synthesize(base / "phantom", n_images=80, size_px=128, seed=5, workers=1, progress=False)
    run = train(
        TrainConfig(
            data=str(base / "phantom"),
            resolution_px=32,
            weights="none",
            out=str(base / "run"),
            max_epochs=1,
            batch_size=16,
            progress=False,
        )
    )
    return str(base / "phantom"), str(run)


def test_localize_end_to_end_on_phantom(trained_run, capsys):
    phantom, run = trained_run
    assert main(["localize", run, "--examples", "1", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    samples = pd.read_csv(f"{run}/localization_samples.csv")
    boxes = read_bbox_list(f"{phantom}/BBox_List_2017.csv")
    assert len(samples) == len(boxes)  # every lesion box of the test part is scored
    summary = pd.read_csv(f"{run}/localization.csv")
    assert summary["class"].iloc[-1] == "mean" and summary["n"].iloc[:-1].sum() == len(samples)
    areas = boxes.assign(area=boxes["w"] * boxes["h"]).groupby("label")["area"].mean()
    order = summary["class"][:-1].tolist()
    assert [areas[c] for c in order] == sorted(areas)  # ordered by mean box size
    assert set(payload["classes"]) == set(order)
    for c in order:
        row = summary.set_index("class").loc[c]
        assert payload["classes"][c] == {
            "n": int(row["n"]),
            "precision": pytest.approx(row["precision"], abs=1e-6),
            "accuracy": pytest.approx(row["accuracy"], abs=1e-6),
            "pointing": pytest.approx(row["pointing"], abs=1e-6),
        }
        part = samples[samples["class"] == c]
        assert row["accuracy"] == pytest.approx(part["hit"].mean())
        assert row["pointing"] == pytest.approx(part["pointing"].mean())
    assert set(samples["pointing"]) <= {0, 1}
    assert ((samples["precision"] >= 0) & (samples["precision"] <= 1)).all()
    assert (samples["hit"] == (samples["precision"] > 0)).all()
    figures = list((Path(run) / "localization_examples").glob("*.png"))
    assert len(figures) == len(order)
