"""The pixel limits and shared rules of decoding: the largest source image, the one-line refusal of an image
(`ImageReadError`), the header check before decoding, and a window's linear map to grey 0-255. Used by `images`
(PNG/JPEG/TIFF) and `dicom_pixels` (DICOM)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cxrres.errors import CxrresError


#: Largest source image decoded, in pixels (8192 x 8192), both as width x height and as its padded square
#: max(width, height)**2: every array after the decode (float32 grey, its padded square, a DICOM's float64 values)
#: is then at most 8 bytes x 2**26 pixels = 512 MiB. Chest radiographs are at most ≈ 4,300 x 4,300.
MAX_SOURCE_PIXELS = 8192 * 8192


class ImageReadError(CxrresError):
    """An image file cannot be decoded (unreadable, truncated, unsupported)."""


def check_pixels(path: Path, width: int, height: int, max_pixels: int, frames: int = 1) -> None:
    """ImageReadError if a header's size (px) is empty, or its pixels or its padded square max(width, height)**2
    exceed `max_pixels`: refused before decoding."""
    if width < 1 or height < 1:
        raise ImageReadError(f"{path}: header claims an empty image ({width} x {height} pixels)")
    limit = math.isqrt(max_pixels)
    if width * height * frames > max_pixels:
        many = f" x {frames:,} frames" if frames > 1 else ""
        raise ImageReadError(
            f"{path}: header claims {width:,} x {height:,} pixels{many}, more than the limit of "
            f"{max_pixels:,} ({limit:,} x {limit:,}); refused before decoding"
        )
    side = max(width, height)
    if side * side > max_pixels:
        raise ImageReadError(
            f"{path}: header claims {width:,} x {height:,} pixels, whose padded square "
            f"{side:,} x {side:,} is more than the limit of {max_pixels:,} pixels ({limit:,} x "
            f"{limit:,}); refused before decoding"
        )


def window_grey(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Grey float32 in [0, 255] from float64 `values`: `low` -> 0, `high` -> 255 (either order), (value - low) * 255 /
    (high - low) between (product first, like grey_from_bits), clipped outside; all 0 (black) when high == low."""
    if high == low:
        return np.zeros(values.shape, np.float32)
    out = np.clip(values, min(low, high), max(low, high)).astype(np.float64, copy=False)
    out -= low
    out *= 255.0
    out /= high - low
    return out.astype(np.float32)
