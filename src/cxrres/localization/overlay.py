"""Heat-map overlays: a radiograph with its saliency map, the detections and (when known) the true boxes, a colour bar
of the normalised map, and in words what the picture is: image, class, probability, call at the operating threshold,
box threshold, and why the map is blank when it is. Drawn with matplotlib (Agg, no pyplot state), written as PNG."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from cxrres.localization import saliency
from cxrres.errors import CxrresError

#: Longer side of an overlay's picture panel (radiograph, map, boxes), px.
FIGURE_PX = 512
#: Colour map of the heat map and its colour bar.
COLORMAP = "jet"
#: Weight of the heat map in the blend with the radiograph (the colour bar shows the colours unblended).
HEAT_ALPHA = 0.4
DPI = 100
MARGIN_PX, LINE_PX, BAR_PX = 8, 14, 84  # around the panel; per caption line above it; colour bar and its labels


@dataclass(frozen=True)
class Caption:
    """What an overlay says in words."""

    image: str  # the image's name
    label: str  # the class the map is of
    box_threshold: float  # detections: connected components of {normalised map >= box_threshold}
    probability: float | None = None  # the network's probability of `label`
    threshold: float | None = None  # operating threshold of `label` (NaN: the run has none; None: no call shown)
    method: str = "gradcam"
    blank: str = ""  # why the map is blank ('' when it has contrast)
    note: str = ""  # more words (localize: precision and boxes hit)

    def call(self) -> str:
        """'call: positive (p ≥ t, ...)', 'call: negative (p < t, ...)', 'no operating point (no call)' or ''."""
        if self.threshold is None or self.probability is None:
            return ""
        if math.isnan(self.threshold):
            return "no operating point (no call)"
        if self.probability >= self.threshold:
            return f"call: positive (p ≥ {self.threshold:.3f}, the operating threshold)"
        return f"call: negative (p < {self.threshold:.3f}, the operating threshold)"

    def lines(self) -> list[str]:
        """The caption lines drawn above the picture: class, probability and call; image, method and box threshold;
        the note."""
        head = [self.label] + ([f"p = {self.probability:.3f}"] if self.probability is not None else [])
        head += [self.call()] if self.call() else []
        where = f"image {self.image} · {self.method} · boxes: map ≥ {self.box_threshold:.2f}"
        return [" · ".join(head), where] + ([self.note] if self.note else [])


@dataclass
class Overlay:
    """An overlay figure, the picture panel inside it, and its words."""

    figure: Figure
    panel: np.ndarray  # RGB uint8, FIGURE_PX on its longer side: radiograph, blended map, boxes
    lines: list[str]  # the caption lines as drawn (wrapped)
    blank: str  # why the map is blank ('' when it has contrast)

    def texts(self) -> list[str]:
        """Every text drawn on the figure (caption, blank notice, colour bar label and ticks)."""
        found = [t.get_text() for t in self.figure.texts]
        for ax in self.figure.axes:
            found += [t.get_text() for t in ax.texts]
            if ax.axison:  # the colour bar: its label and ticks
                found += [ax.get_ylabel()] + [t.get_text() for t in ax.get_yticklabels()]
        return [t for t in found if t]


def figure_px(panel_hw: tuple[int, int], n_lines: int) -> tuple[int, int]:
    """(height, width) of an overlay PNG, px, around a picture panel of `panel_hw` px with `n_lines` caption lines."""
    h, w = panel_hw
    return h + n_lines * LINE_PX + 3 * MARGIN_PX, w + BAR_PX + 2 * MARGIN_PX


def wrap_lines(lines: list[str], width_px: int) -> list[str]:
    """Caption lines broken at spaces to fit `width_px` (about 7 px per character of the bold first line)."""
    return [part for line in lines for part in textwrap.wrap(line, max(30, width_px // 7))]


def panel_picture(
    grey: np.ndarray,
    frame: np.ndarray,
    gt: tuple | list[tuple] | None,
    detections: list[tuple],
    iou_threshold: float,
    blank: bool,
) -> np.ndarray:
    """RGB uint8 panel (FIGURE_PX on its longer side): radiograph, the map blended in (none when `blank`), every
    ground-truth box in white, detections green (IoU >= `iou_threshold` with some box) or red, yellow without truth."""
    h, w = frame.shape
    scale = FIGURE_PX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    base = cv2.resize(grey.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    picture = cv2.cvtColor(np.clip(base, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    if not blank:
        heat = colormaps[COLORMAP](np.clip(cv2.resize(frame.astype(np.float32), size), 0, 1))[..., :3]
        picture = np.clip((1 - HEAT_ALPHA) * picture + HEAT_ALPHA * 255 * heat + 0.5, 0, 255).astype(np.uint8)
    gts = gt_boxes(gt)

    def rect(box: tuple, colour: tuple[int, int, int]) -> None:
        x, y, bw, bh = (v * scale for v in box)
        cv2.rectangle(picture, (int(x), int(y)), (int(x + bw) - 1, int(y + bh) - 1), colour, 2)

    for d in detections:
        if gt is None:
            rect(d, (255, 220, 0))
        else:
            rect(d, (0, 200, 0) if any(saliency.iou(d, g) >= iou_threshold for g in gts) else (230, 0, 0))
    for g in gts:
        rect(g, (255, 255, 255))
    return picture


def heatmap_figure(
    grey: np.ndarray,
    frame: np.ndarray,
    gt: tuple | list[tuple] | None,
    detections: list[tuple],
    iou_threshold: float,
    caption: Caption,
) -> Overlay:
    """The overlay of a map `frame` (normalised to [0, 1], in the image's pixels) on the radiograph `grey`: the panel
    (`panel_picture`), a colour bar of the normalised map, the caption lines above; a blank map (`caption.blank`, or a
    frame without contrast) is drawn untinted with the reason across it, and the reason is `Overlay.blank`."""
    blank = caption.blank
    if not blank and not float(np.max(frame)) > float(np.min(frame)):
        blank = "map is constant over the image (any contrast it has lies in the padding to a square)"
    panel = panel_picture(grey, frame, gt, detections, iou_threshold, bool(blank))
    ph, pw = panel.shape[:2]
    lines = wrap_lines(caption.lines(), pw + BAR_PX)
    fh, fw = figure_px((ph, pw), len(lines))
    fig = Figure(figsize=(fw / DPI, fh / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((MARGIN_PX / fw, MARGIN_PX / fh, pw / fw, ph / fh))
    ax.imshow(panel, interpolation="nearest")
    ax.set_axis_off()
    cax = fig.add_axes(((MARGIN_PX + pw + 10) / fw, MARGIN_PX / fh, 14 / fw, ph / fh))
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), colormaps[COLORMAP]), cax=cax)
    bar.set_label("map, min-max normalised (0..1)" + ("; blank" if blank else ""), fontsize=8)
    cax.tick_params(labelsize=7)
    for i, line in enumerate(lines):
        fig.text(
            MARGIN_PX / fw,
            1 - (MARGIN_PX // 2 + LINE_PX * i) / fh,
            line,
            va="top",
            ha="left",
            fontsize=8.5,
            fontweight="bold" if i == 0 else "normal",
        )
    if blank:
        ax.text(
            0.5,
            0.5,
            "blank map\n" + textwrap.fill(blank, max(24, pw // 8)),
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="white",
            fontsize=9,
            bbox={"facecolor": "black", "alpha": 0.75, "edgecolor": "none"},
        )
    return Overlay(fig, panel, lines, blank)


def gt_boxes(gt: tuple | list[tuple] | None) -> list[tuple]:
    """The ground truth as a list of (x, y, w, h) boxes: [] for None, [gt] for one box, else the list itself."""
    if gt is None:
        return []
    if len(gt) == 4 and all(np.isscalar(v) for v in gt):
        return [tuple(gt)]
    return [tuple(b) for b in gt]


def save_overlay(path: Path, overlay: Overlay) -> None:
    """Write an overlay as PNG (DPI) via a temporary name and a rename."""
    tmp = path.with_name(path.stem + ".tmp.png")
    try:
        overlay.figure.savefig(tmp, dpi=DPI, format="png")
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise CxrresError(f"{path}: cannot write the figure ({error})") from error
    tmp.replace(path)
