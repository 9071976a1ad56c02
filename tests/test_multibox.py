"""Several ground-truth boxes per image and class: one-to-one greedy matching, precision per group, accuracy and
pointing per box; the exact reduction to the single-box definitions; localize's per-box rows, its summary and the
overlay drawing every box."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrres.localization.localize import format_boxes, group_rows, parse_boxes, summarise
from cxrres.localization.overlay import Caption, gt_boxes, heatmap_figure
from cxrres.localization.saliency import (
    iou,
    iou_matrix,
    match_boxes,
    pointing_hit,
    pointing_hits,
    score_boxes,
    score_detections,
)

A, B = (0, 0, 10, 10), (6, 0, 10, 10)


def test_iou_matrix_equals_iou_exactly() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 30, (40, 4)).astype(float)
    b = rng.integers(0, 30, (25, 4)).astype(float)
    b[:3, 2:] = 0  # empty boxes
    m = iou_matrix(a, b)
    assert m.shape == (40, 25)
    assert all(m[i, j] == iou(tuple(a[i]), tuple(b[j])) for i in range(40) for j in range(25))
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 25)


def test_greedy_matching_takes_the_highest_iou_first() -> None:
    # d = (4, 0, 10, 10): IoU with A = 60 / 140 = 3/7, with B = 80 / 120 = 2/3; e = (0, 0, 5, 10): A 50 / 100, B 0.
    d, e = (4, 0, 10, 10), (0, 0, 5, 10)
    assert match_boxes([d, e], [A, B]) == [(1, 0.5), (0, pytest.approx(2 / 3))]
    assert score_boxes([d, e], [A, B])[:2] == (1.0, [True, True])
    # d alone: it goes to B (2/3 > 3/7), A stays unmatched
    assert score_boxes([d], [A, B])[:2] == (1.0, [False, True])
    # one detection never hits two boxes; a second positive detection of one box is a false positive
    assert score_boxes([A, A], [A])[:2] == (0.5, [True])


def test_greedy_is_not_the_maximum_matching() -> None:
    # f = (2, 0, 10, 10): A 80 / 120 = 2/3, B 60 / 140 = 3/7; g = (-8, 0, 10, 10): A 20 / 180 = 1/9, B 0.
    # Greedy gives A to f (2/3 first), so g finds A taken and B stays unmatched: 1 TP of 2 detections
    # (a maximum matching f -> B, g -> A would have 2). This is the protocol as specified (greedy, highest first).
    f, g = (2, 0, 10, 10), (-8, 0, 10, 10)
    precision, hits, matches = score_boxes([f, g], [A, B])
    assert (precision, hits) == (0.5, [True, False]) and matches == [(0, pytest.approx(2 / 3)), None]
    assert score_boxes([f, g], [A, B], iou_threshold=0.5)[:2] == (0.5, [True, False])
    assert score_boxes([], [A, B])[:2] == (0.0, [False, False])
    assert score_boxes([f], [])[:2] == (0.0, [])


def test_one_box_reduces_exactly_to_the_single_box_scores() -> None:
    rng = np.random.default_rng(7)
    for _ in range(3000):
        gt = tuple(int(v) for v in (*rng.integers(0, 20, 2), *rng.integers(1, 12, 2)))
        detections = [
            tuple(int(v) for v in (*rng.integers(0, 25, 2), *rng.integers(1, 12, 2)))
            for _ in range(int(rng.integers(0, 6)))
        ]
        threshold = float(rng.choice([0.1, 0.25, 0.5]))
        precision, hits, _ = score_boxes(detections, [gt], threshold)
        assert (precision, hits[0]) == score_detections(detections, gt, threshold)
        frame = rng.integers(0, 3, (24, 30)).astype(float) * (rng.random() < 0.9)  # ties, sometimes blank
        assert pointing_hits(frame, [gt]) == [pointing_hit(frame, gt)]


def test_pointing_per_box() -> None:
    frame = np.zeros((20, 20))
    frame[5, 12] = 1.0  # centre (12.5, 5.5)
    assert pointing_hits(frame, [A, B, (12, 5, 1, 1), (0, 10, 20, 10)]) == [False, True, True, False]
    assert pointing_hits(np.zeros((4, 4)), [A, B]) == [False, False]


def test_group_rows_one_per_box_with_shared_detections() -> None:
    frame = np.zeros((40, 60), np.float32)
    frame[2:8, 1:9] = 1.0  # detection (1, 2, 8, 6)
    frame[20:30, 40:50] = 0.8  # detection (40, 20, 10, 10)
    group = pd.DataFrame({"x": [0, 40, 10], "y": [0, 22, 30], "w": [10, 10, 5], "h": [10, 10, 5]})
    rows = group_rows(frame, "im.png", "Nodule", group, 0.5, 0.1)
    assert [r["hit"] for r in rows] == [1, 1, 0] and [r["pointing"] for r in rows] == [1, 0, 0]
    assert (
        {r["precision"] for r in rows} == {1.0}
        and {r["n_boxes"] for r in rows} == {3}
        and {r["tp"] for r in rows} == {2}
    )
    assert rows[0]["detections"] == "1 2 8 6; 40 20 10 10"
    assert [r["matched_iou"] for r in rows] == [round(48 / 100, 6), round(80 / 120, 6), 0.0]
    assert parse_boxes(rows[0]["detections"]) == [(1, 2, 8, 6), (40, 20, 10, 10)] and parse_boxes("") == []
    assert format_boxes(parse_boxes("1 2 3 4; 5 6 7 8")) == "1 2 3 4; 5 6 7 8"


def test_summary_precision_per_group_accuracy_and_pointing_per_box() -> None:
    samples = pd.DataFrame(
        {
            "image": ["a", "a", "b", "c"],
            "class": ["Mass", "Mass", "Mass", "Nodule"],
            "precision": [0.5, 0.5, 1.0, 0.0],
            "hit": [1, 0, 1, 0],
            "pointing": [1, 1, 0, 1],
            "n_boxes": [2, 2, 1, 1],
        }
    )
    summary = summarise(samples, ["Nodule", "Mass"]).set_index("class")
    assert summary.loc["Mass"].to_dict() == {
        "n": 3,
        "precision": 0.75,
        "accuracy": pytest.approx(2 / 3),
        "pointing": pytest.approx(2 / 3),
    }
    assert summary.loc["Nodule", "n"] == 1 and summary.loc["mean", "precision"] == pytest.approx(0.375)
    assert list(summary.index) == ["Nodule", "Mass", "mean"]


def test_overlay_draws_every_box() -> None:
    assert gt_boxes(None) == [] and gt_boxes((1, 2, 3, 4)) == [(1, 2, 3, 4)]
    assert gt_boxes([(1, 2, 3, 4), (5, 6, 7, 8)]) == [(1, 2, 3, 4), (5, 6, 7, 8)]
    grey = np.full((512, 512), 0.0)
    frame = np.zeros((512, 512), np.float32)
    picture = heatmap_figure(
        grey, frame, [(100, 100, 50, 50), (300, 300, 60, 40)], [], 0.1, Caption("x.png", "Mass", 0.5)
    ).panel
    assert (picture[100, 120] == 255).all() and (picture[300, 330] == 255).all()
    assert not (picture[200, 200] == 255).all()


def _reference_greedy(detections: list[tuple], gts: list[tuple], threshold: float) -> list:
    """Greedy one-to-one matching written out plainly: all pairs by IoU (highest first, then box, then detection)."""
    pairs = sorted(
        ((iou(d, g), gi, di) for gi, g in enumerate(gts) for di, d in enumerate(detections)),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    matches, used = [None] * len(gts), set()
    for value, gi, di in pairs:
        if value >= threshold and matches[gi] is None and di not in used:
            matches[gi], _ = (di, value), used.add(di)
    return matches


@pytest.mark.parametrize("n_det, n_gt", [(3, 4), (12, 8), (40, 3)])
def test_matching_equals_the_plain_greedy_for_small_and_large_groups(n_det: int, n_gt: int) -> None:
    rng = np.random.default_rng(n_det * 100 + n_gt)
    for _ in range(200):
        dets = [tuple(int(v) for v in (*rng.integers(0, 30, 2), *rng.integers(1, 15, 2))) for _ in range(n_det)]
        gts = [tuple(int(v) for v in (*rng.integers(0, 30, 2), *rng.integers(1, 15, 2))) for _ in range(n_gt)]
        assert match_boxes(dets, gts, 0.1) == _reference_greedy(dets, gts, 0.1)
