"""Box sizes in one frame: the study orders findings by mean box area at 1024 px (smallest first)."""

from __future__ import annotations

import pandas as pd


def mean_area_1024(boxes: pd.DataFrame, side_px: pd.Series) -> pd.Series:
    """Mean box area per class in px² at 1024 px, smallest first; `side_px[i]` is box i's image side (its longer
    side, px), from which its (w, h) are scaled to the 1024-px frame."""
    area = boxes["w"] * boxes["h"] * (1024.0 / side_px.to_numpy(dtype=float)) ** 2
    return area.groupby(boxes["label"]).mean().sort_values(kind="stable")


def classes_by_box_size(boxes: pd.DataFrame, side_px: pd.Series) -> list[str]:
    """The classes of `boxes`, smallest mean box at 1024 px first."""
    return mean_area_1024(boxes, side_px).index.tolist()
