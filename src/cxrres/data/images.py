"""Decoding radiographs to one grey channel and area-resizing them to a training resolution.

Conventions (documented in docs/data.md):
- 8-bit L is taken as is. RGB/RGBA/LA/P/1 are converted to grey with Pillow's ITU-R 601-2 luma
  (L = 0.299 R + 0.587 G + 0.114 B); alpha is ignored. The NIH RGBA files carry grey in R=G=B, so this is exact.
- 16-bit (I;16*, I) images are mapped linearly from [0, 65535] to [0, 255] (value / 257), with no windowing.
- DICOM (.dcm, needs `pydicom`): the stored pixel values are mapped linearly from [0, 2**BitsStored - 1] to
  [0, 255]; MONOCHROME1 is inverted so that bone is bright.
- A non-square image is zero-padded at the bottom or the right to a square of side max(width, height), so
  that a box (x, y, w, h) in source pixels maps to resolution R by the single factor R / max(width, height).
- Resizing is area interpolation (OpenCV INTER_AREA, the mean over each output pixel's footprint) in float32,
  rounded to the nearest uint8.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cxrres.errors import CxrresError

_GREY_MODES = {"L"}
_TO_LUMA_MODES = {"RGB", "RGBA", "LA", "P", "1", "CMYK", "YCbCr", "RGBX", "PA", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class ImageReadError(CxrresError):
    """An image file cannot be decoded (unreadable, truncated, unsupported)."""


def _grey_from_pil(image: Image.Image) -> np.ndarray:
    """Grey float32 array in [0, 255] from a loaded Pillow image (see the module docstring for the rules)."""
    if image.mode in _GREY_MODES:
        return np.asarray(image, dtype=np.float32)
    if image.mode in _TO_LUMA_MODES:
        return np.asarray(image.convert("L"), dtype=np.float32)
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float32)
        return np.clip(values, 0, 65535) / 257.0
    raise ValueError(f"unsupported image mode {image.mode}")


def _grey_from_dicom(path: Path) -> np.ndarray:
    try:
        import pydicom
    except ImportError:
        raise ImageReadError(f"{path}: reading DICOM needs pydicom (pip install pydicom)") from None
    dataset = pydicom.dcmread(str(path))
    values = dataset.pixel_array.astype(np.float32)
    if values.ndim != 2:
        raise ValueError(f"expected one grey frame, found pixel array of shape {values.shape}")
    bits = int(getattr(dataset, "BitsStored", 16))
    grey = np.clip(values, 0, 2**bits - 1) * (255.0 / (2**bits - 1))
    if getattr(dataset, "PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        grey = 255.0 - grey
    return grey


def read_grey(path: str | Path) -> np.ndarray:
    """Decode an image file to a 2-D float32 grey array in [0, 255]; ImageReadError naming the file if impossible."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".dcm":
            return _grey_from_dicom(path)
        with Image.open(path) as image:
            image.load()
            return _grey_from_pil(image)
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt files; all mean "cannot read this image"
        raise ImageReadError(f"{path}: cannot decode image: {exc}") from None


def pad_to_square(grey: np.ndarray) -> np.ndarray:
    """Zero-pad a (H, W) array at the bottom/right to (S, S), S = max(H, W); square input is returned as is."""
    height, width = grey.shape
    side = max(height, width)
    if height == width:
        return grey
    padded = np.zeros((side, side), grey.dtype)
    padded[:height, :width] = grey
    return padded


def area_resize_float(grey: np.ndarray, resolution_px: int) -> np.ndarray:
    """Area-interpolate a square float32 array to (resolution_px, resolution_px) float32 (mean over each footprint)."""
    return cv2.resize(grey.astype(np.float32, copy=False), (resolution_px, resolution_px), interpolation=cv2.INTER_AREA)


def area_resize(grey: np.ndarray, resolution_px: int) -> np.ndarray:
    """Area-interpolate a square float grey array (0..255) to (resolution_px, resolution_px) uint8 (rounded, clipped)."""
    return np.clip(np.rint(area_resize_float(grey, resolution_px)), 0, 255).astype(np.uint8)


def load_resized(path: str | Path, resolutions_px: tuple[int, ...]) -> tuple[dict[int, np.ndarray], tuple[int, int]]:
    """Decode `path` once and return {resolution: uint8 (R, R) array} and the source (height, width) in pixels."""
    grey = read_grey(path)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ImageReadError(f"{path}: expected a 2-D image, got shape {grey.shape}")
    square = pad_to_square(grey)
    return {r: area_resize(square, r) for r in resolutions_px}, (int(grey.shape[0]), int(grey.shape[1]))
