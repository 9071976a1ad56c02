"""Decoding radiographs to one grey channel and area-resizing them to a training resolution.

One rule for every stored bit depth (`preprocessing_rules()` lists the whole chain; docs/data.md, docs/dicom.md):
- 8-bit L is taken as is. RGB/RGBA/LA/P/1 are converted to grey with Pillow's ITU-R 601-2 luma
  (L = 0.299 R + 0.587 G + 0.114 B); alpha is ignored. The NIH RGBA files carry grey in R=G=B, so this is exact.
- Deeper grey (PNG/TIFF modes I;16*, I): grey = value * 255 / (2**bits - 1) (BIT_DEPTH_RULE), bits = the PNG's sBIT
  when its largest value fits in it (else 16: the PNG standard's samples scaled to 16 bits), else the smallest of
  BIT_DEPTHS holding the image's largest value. So one picture stored as 8-bit or as 16-bit (value x 257) gives the
  same grey, and 12-bit data in a 16-bit PNG (PadChest, 0..4095) spans the whole grey range.
- DICOM (.dcm or .dicom, needs `pydicom`; `dicom_pixels`, docs/dicom.md), read as radiology software displays it:
  the stored values (signed when PixelRepresentation is 1) go through the Modality LUT (RescaleSlope/Intercept or a
  Modality LUT Sequence), then the first VOI LUT or WindowCenter/Width (LINEAR, LINEAR_EXACT or SIGMOID), whose
  output range maps to [0, 255]. Without either, the stored range (BitsStored, signed or not, through the Modality
  LUT) maps to [0, 255]: the bit-depth rule with bits = BitsStored. MONOCHROME1 is inverted after windowing (bone
  bright).
  Compressed transfer syntaxes decode through pydicom's plugins; a syntax without an installed decoder, several
  frames or colour samples are refused with one line naming the file, and a decoder's own messages (libjpeg writes
  to the process's stderr) are captured, not printed.
- A non-square image is zero-padded at the bottom or the right to a square of side max(width, height), so
  that a box (x, y, w, h) in source pixels maps to resolution R by the single factor R / max(width, height).
- Resizing is area interpolation (OpenCV INTER_AREA, the mean over each output pixel's footprint) in float32,
  rounded to the nearest uint8 (halves to even).

Hostile files are refused with one line naming the file (ImageReadError), before anything large is allocated: an
empty file, a directory, a header whose width x height (x frames) exceeds MAX_SOURCE_PIXELS or whose padded square
(max(width, height) squared) does, a DICOM without pixel data or with less pixel data than its header implies
(truncated), and values that are not finite or exceed float32 after a DICOM's Modality LUT (a NaN or 1e308 slope).
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cxrres.data.pixel_rules import MAX_SOURCE_PIXELS, ImageReadError, check_pixels

_GREY_MODES = {"L"}
_TO_LUMA_MODES = {"RGB", "RGBA", "LA", "P", "1", "CMYK", "YCbCr", "RGBX", "PA", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
#: Stored bit depths tried, smallest first, for grey deeper than 8 bits that declares none (no PNG sBIT).
BIT_DEPTHS = (8, 10, 12, 14, 16)
#: The rule for every image deeper than 8 bits (16-bit PNG/TIFF, DICOM), recorded in a cache's manifest: a cache
#: holding such sources converted under another rule is rebuilt (cache_store.sixteen_bit_current). Change this string
#: whenever their conversion changes.
SIXTEEN_BIT_RULE = (
    "grey = value * 255 / (2^bits - 1); bits = PNG sBIT if the values fit, else smallest of "
    "8/10/12/14/16 holding the largest value; DICOM: VOI/window output range, else BitsStored range "
    "after the Modality LUT, -> 0..255; non-finite DICOM values refused"
)
#: Longest PNG chunk walk looking for sBIT before the first IDAT (chunks).
_PNG_MAX_CHUNKS = 64

#: torchvision's ImageNet statistics (RGB), for inputs scaled to [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def stored_bits(max_value: int, declared: int | None = None) -> int:
    """Bit depth of grey values whose largest is `max_value`: `declared` (a PNG's sBIT) when every value fits in it,
    else the smallest of BIT_DEPTHS that holds `max_value` (its bit length beyond 16 bits)."""
    if declared is not None and 1 <= declared <= 16 and max_value < 2**declared:
        return declared
    for bits in BIT_DEPTHS:
        if max_value < 2**bits:
            return bits
    return int(max_value).bit_length()


def grey_from_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Grey float32 value * 255 / (2**bits - 1) of non-negative integer `values` below 2**bits, computed in float64
    (product first, so value x 257 at 16 bits gives value exactly); through a 2**bits-entry table up to 16 bits."""
    top = 2**bits - 1
    if bits <= 16:
        table = (np.arange(top + 1, dtype=np.float64) * 255.0 / top).astype(np.float32)
        return table[values]
    return (values.astype(np.float64) * 255.0 / top).astype(np.float32)


def png_significant_bits(path: str | Path) -> int | None:
    """The grey sample's significant bits from a PNG's sBIT chunk (its first byte), read from the chunks before the
    first IDAT; None for a file that is not a PNG or has none."""
    with open(path, "rb") as handle:
        if handle.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        for _ in range(_PNG_MAX_CHUNKS):
            head = handle.read(8)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head)
            if kind in (b"IDAT", b"IEND"):
                return None
            if kind == b"sBIT":
                data = handle.read(min(length, 4))
                return data[0] if data else None
            handle.seek(length + 4, os.SEEK_CUR)
    return None


def _grey_from_deep(path: Path, values: np.ndarray, declared: int | None) -> np.ndarray:
    """Grey float32 in [0, 255] from grey deeper than 8 bits by the bit-depth rule (stored_bits, grey_from_bits)."""
    low, high = int(values.min()), int(values.max())
    if low < 0:
        raise ImageReadError(f"{path}: negative grey values (down to {low:,}); unsigned grey expected")
    return grey_from_bits(values, stored_bits(high, declared))


def _grey_from_pil(path: Path, image: Image.Image) -> np.ndarray:
    """Grey float32 array in [0, 255] from a loaded Pillow image (see the module docstring for the rules)."""
    if image.mode in _GREY_MODES:
        return np.asarray(image, dtype=np.float32)
    if image.mode in _TO_LUMA_MODES:
        return np.asarray(image.convert("L"), dtype=np.float32)
    if image.mode in _SIXTEEN_BIT_MODES:
        declared = png_significant_bits(path) if image.format == "PNG" else None
        return _grey_from_deep(path, np.asarray(image), declared)
    raise ValueError(f"unsupported image mode {image.mode}")


#: File-name suffixes read as DICOM (compared in lower case).
DICOM_SUFFIXES = (".dcm", ".dicom")


def is_dicom_path(path: str | Path) -> bool:
    """True when the file name ends in a DICOM suffix (DICOM_SUFFIXES, any case)."""
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def is_sixteen_bit(path: str | Path) -> bool:
    """True when `path` is a PNG/TIFF/... whose header says 16-bit grey (Pillow mode I;16*, I). Reads the header only;
    False for DICOM and for anything unreadable."""
    if is_dicom_path(path):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return image.mode in _SIXTEEN_BIT_MODES
    except Exception:  # an unreadable file is refused when it is decoded, not here
        return False


def follows_sixteen_bit_rule(path: str | Path) -> bool:
    """True for a source the SIXTEEN_BIT_RULE converts: a DICOM (by its suffix) or a 16-bit PNG/TIFF (its header)."""
    return is_dicom_path(path) or is_sixteen_bit(path)


def _check_file(path: Path) -> None:
    """ImageReadError naming `path` if it is missing, a directory, not a regular file, or empty."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read: {exc.strerror}") from None
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image file")
    if not path.is_file():
        raise ImageReadError(f"{path}: not a regular file")
    if stat.st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    """Image.open (header only) with the size checked against `max_pixels` before any decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {' '.join(str(exc).split())}; refused before decoding") from None
    try:
        check_pixels(path, image.width, image.height, max_pixels)
    except ImageReadError:
        image.close()
        raise
    return image


def image_size(path: str | Path, max_pixels: int = MAX_SOURCE_PIXELS) -> tuple[int, int]:
    """(height, width) in pixels from an image file's header, without decoding it; ImageReadError as `read_grey`."""
    path = Path(path)
    _check_file(path)
    try:
        if is_dicom_path(path):
            import pydicom

            header = pydicom.dcmread(str(path), stop_before_pixels=True)
            height, width = int(header.Rows), int(header.Columns)
            check_pixels(path, width, height, max_pixels, int(getattr(header, "NumberOfFrames", 1) or 1))
            return height, width
        with _open_checked(path, max_pixels) as image:
            return image.height, image.width
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt files; all mean "cannot read this image"
        raise ImageReadError(f"{path}: cannot decode image: {' '.join(str(exc).split())}") from None


def read_grey(path: str | Path, max_pixels: int = MAX_SOURCE_PIXELS) -> np.ndarray:
    """Decode an image file to a 2-D float32 grey array in [0, 255]; ImageReadError naming the file if impossible
    (see the module docstring for what is refused before decoding; `max_pixels` bounds width x height and the padded
    square max(width, height)**2, in pixels)."""
    path = Path(path)
    _check_file(path)
    try:
        if is_dicom_path(path):
            from cxrres.data.dicom_pixels import grey_from_dicom

            return grey_from_dicom(path, max_pixels)
        with _open_checked(path, max_pixels) as image:
            image.load()
            return _grey_from_pil(path, image)
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt files; all mean "cannot read this image"
        raise ImageReadError(f"{path}: cannot decode image: {' '.join(str(exc).split())}") from None


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
    """Area-interpolate a square float grey array (0..255) to (resolution_px, resolution_px) uint8 (rounded,
    clipped)."""
    return np.clip(np.rint(area_resize_float(grey, resolution_px)), 0, 255).astype(np.uint8)


def load_resized(path: str | Path, resolutions_px: tuple[int, ...]) -> tuple[dict[int, np.ndarray], tuple[int, int]]:
    """Decode `path` once and return {resolution: uint8 (R, R) array} and the source (height, width) in pixels."""
    grey = read_grey(path)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ImageReadError(f"{path}: expected a 2-D image, got shape {grey.shape}")
    square = pad_to_square(grey)
    return {r: area_resize(square, r) for r in resolutions_px}, (int(grey.shape[0]), int(grey.shape[1]))


def preprocessing_rules() -> list[str]:
    """Every rule a client needs to reproduce the network's input from an image file without cxrres, one short plain
    sentence each, in the order they apply (the exported model's card prints them)."""
    return [
        "Colour files (RGB, RGBA, LA, palette, 1-bit) become 8-bit grey by ITU-R 601-2 luma, "
        "L = 0.299 R + 0.587 G + 0.114 B, as Pillow's convert('L') computes it; alpha is ignored.",
        "8-bit grey is used as stored (0..255).",
        "Grey deeper than 8 bits becomes value * 255 / (2^bits - 1), in float: bits is the PNG's sBIT when every "
        f"value fits in it, else the smallest of {', '.join(map(str, BIT_DEPTHS))} bits that holds the image's largest "
        "value; negative values are refused.",
        "DICOM: stored values (signed when PixelRepresentation is 1) go through the Modality LUT, RescaleSlope x value "
        "+ RescaleIntercept or the Modality LUT Sequence; values that are not finite or exceed float32 are refused.",
        "DICOM with a VOI LUT Sequence (its first item) or WindowCenter/WindowWidth (the first pair; LINEAR, "
        "LINEAR_EXACT or SIGMOID, DICOM PS3.3 C.11.2): its output range maps linearly to 0..255 (a VOI LUT's "
        "0..2^n - 1, a window's stored range after the Modality LUT).",
        "DICOM with neither: the range the Modality LUT can give (0..2^BitsStored - 1, or -2^(BitsStored - 1)..2^"
        "(BitsStored - 1) - 1 when signed, through the rescale) maps linearly to 0..255.",
        "MONOCHROME1 is inverted after windowing: grey = 255 - grey.",
        "A non-square image is padded with 0 (black) at the bottom or the right to a square of side "
        "max(width, height).",
        "The square is resized to R x R by area interpolation (OpenCV INTER_AREA: the mean over each output pixel's "
        "footprint) in float32.",
        "The result is rounded to the nearest integer, halves to even (NumPy rint), and clipped to uint8 0..255.",
        "The network sees grey / 255 repeated to 3 channels, normalised per channel with the ImageNet mean "
        f"{tuple(IMAGENET_MEAN)} and std {tuple(IMAGENET_STD)}.",
    ]
