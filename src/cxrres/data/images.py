"""Decoding radiographs to one grey channel and area-resizing them to a training resolution.

Conventions (documented in docs/data.md):
- 8-bit L is taken as is. RGB/RGBA/LA/P/1 are converted to grey with Pillow's ITU-R 601-2 luma
  (L = 0.299 R + 0.587 G + 0.114 B); alpha is ignored. The NIH RGBA files carry grey in R=G=B, so this is exact.
- 16-bit (I;16*, I) images are mapped by their own stored range: the WINDOW_PERCENTILES (0.5 and 99.5) of the
  image's pixel values map to 0 and 255, linear between, clipped outside (SIXTEEN_BIT_RULE). 16-bit PNGs such as
  PadChest's use only part of 0-65535 (12-bit data: 4,096 values); value / 257 would leave them nearly black.
- DICOM (.dcm or .dicom, needs `pydicom`; docs/dicom.md), read as radiology software displays it: the stored
  values (signed when PixelRepresentation is 1) go through the Modality LUT (RescaleSlope/Intercept or a Modality
  LUT Sequence, `apply_modality_lut`), then the first VOI LUT or WindowCenter/Width (`apply_voi_lut`; LINEAR,
  LINEAR_EXACT or SIGMOID), whose output range maps to [0, 255]. Without either, the percentile window of 16-bit
  images: the WINDOW_PERCENTILES of the modality values map to 0 and 255 (clipped), except that 8-bit unsigned values
  with no rescale are taken as they are (like an 8-bit PNG). MONOCHROME1 is inverted after windowing (bone bright).
  Compressed transfer syntaxes decode through pydicom's plugins (pylibjpeg and its plugins, pyjpegls, python-gdcm);
  a syntax without an installed decoder, several frames or colour samples are refused with one line naming the file.
- A non-square image is zero-padded at the bottom or the right to a square of side max(width, height), so
  that a box (x, y, w, h) in source pixels maps to resolution R by the single factor R / max(width, height).
- Resizing is area interpolation (OpenCV INTER_AREA, the mean over each output pixel's footprint) in float32,
  rounded to the nearest uint8.

Hostile files are refused with one line naming the file, before anything large is allocated: an empty file, a
directory, a header claiming more than MAX_SOURCE_PIXELS pixels (PNG/JPEG header or DICOM Rows x Columns x frames,
checked before any pixel data is read or decoded), a DICOM without pixel data or with less pixel data than its
header implies (truncated).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cxrres.errors import CxrresError

_GREY_MODES = {"L"}
_TO_LUMA_MODES = {"RGB", "RGBA", "LA", "P", "1", "CMYK", "YCbCr", "RGBX", "PA", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
#: Largest source image decoded, in pixels (8192 x 8192): decoding it takes ≈ 0.6 GB (8-bit plane, float32 grey and
#: its padded square). Chest radiographs are at most ≈ 4,300 x 4,300.
MAX_SOURCE_PIXELS = 8192 * 8192
#: DICOM elements larger than this (bytes) are read only when used, so a header is checked before its pixel data.
_DICOM_DEFER_BYTES = 2**20


class ImageReadError(CxrresError):
    """An image file cannot be decoded (unreadable, truncated, unsupported)."""


def _grey_from_pil(image: Image.Image) -> np.ndarray:
    """Grey float32 array in [0, 255] from a loaded Pillow image (see the module docstring for the rules)."""
    if image.mode in _GREY_MODES:
        return np.asarray(image, dtype=np.float32)
    if image.mode in _TO_LUMA_MODES:
        return np.asarray(image.convert("L"), dtype=np.float32)
    if image.mode in _SIXTEEN_BIT_MODES:
        return _grey_from_sixteen_bit(np.asarray(image))
    raise ValueError(f"unsupported image mode {image.mode}")


def _check_pixels(path: Path, width: int, height: int, max_pixels: int, frames: int = 1) -> None:
    """ImageReadError if a header's size (px) is empty or exceeds `max_pixels`: refused before decoding."""
    if width < 1 or height < 1:
        raise ImageReadError(f"{path}: header claims an empty image ({width} x {height} pixels)")
    if width * height * frames > max_pixels:
        side = math.isqrt(max_pixels)
        many = f" x {frames:,} frames" if frames > 1 else ""
        raise ImageReadError(f"{path}: header claims {width:,} x {height:,} pixels{many}, more than the limit of "
                             f"{max_pixels:,} ({side:,} x {side:,}); refused before decoding")


#: File-name suffixes read as DICOM (compared in lower case).
DICOM_SUFFIXES = (".dcm", ".dicom")
#: The percentile window (in %): these percentiles of an image's own values map to grey 0 and 255, values outside
#: are clipped. Used for every 16-bit PNG/TIFF and for a DICOM with neither a VOI LUT nor WindowCenter/Width.
WINDOW_PERCENTILES = (0.5, 99.5)
#: The 16-bit conversion rule, recorded in a cache's manifest: a cache holding 16-bit sources converted under another
#: rule is rebuilt (cache_store.sixteen_bit_current). Change this string whenever the 16-bit conversion changes.
SIXTEEN_BIT_RULE = "own 0.5/99.5 percentiles -> 0/255, linear, clipped; min/max if equal; constant -> 0"
#: Transfer-syntax family -> what to install to decode it (pip names; pyproject extra `dicom` has the first).
DECODER_PACKAGES = {
    "jpeg": "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "jpegls": "pylibjpeg pylibjpeg-libjpeg, or pyjpegls (or python-gdcm)",
    "jpeg2000": "pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
    "rle": "pylibjpeg pylibjpeg-rle",
    "other": "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle (or python-gdcm)",
}


def is_dicom_path(path: str | Path) -> bool:
    """True when the file name ends in a DICOM suffix (DICOM_SUFFIXES, any case)."""
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def percentile_range(values: np.ndarray) -> tuple[float, float]:
    """(low, high) of the percentile window of `values`: their WINDOW_PERCENTILES (NumPy's linear interpolation), or
    their minimum and maximum where those two are equal (an image almost all one value)."""
    low, high = (float(v) for v in np.percentile(values, WINDOW_PERCENTILES))
    if not high > low:
        low, high = float(values.min()), float(values.max())
    return low, high


def window_grey(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Grey float32 in [0, 255] from float64 `values`: `low` -> 0, `high` -> 255, linear between, clipped outside; all
    0 (black) when high == low (a constant image), never a division by zero."""
    if high == low:
        return np.zeros(values.shape, np.float32)
    return (np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.float32)


def _grey_from_sixteen_bit(values: np.ndarray) -> np.ndarray:
    """Grey float32 in [0, 255] from a 16-bit image's values by its own percentile window (SIXTEEN_BIT_RULE). Values
    in [0, 65535] go through a 65,536-entry table of `window_grey` (the same numbers, ≈ 4x faster than mapping each
    pixel in float64: 0.08 s for 2800 x 2800 px)."""
    if 0 <= values.min() and values.max() <= 65535:
        stored = values.astype(np.uint16, copy=False)
        return window_grey(np.arange(65536, dtype=np.float64), *percentile_range(stored))[stored]
    shown = values.astype(np.float64)
    return window_grey(shown, *percentile_range(shown))


def is_sixteen_bit(path: str | Path) -> bool:
    """True when `path` is a PNG/TIFF/... whose header says 16-bit grey (Pillow mode I;16*, I): an image the
    SIXTEEN_BIT_RULE applies to. Reads the header only; False for DICOM and for anything unreadable."""
    if is_dicom_path(path):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return image.mode in _SIXTEEN_BIT_MODES
    except Exception:  # an unreadable file is refused when it is decoded, not here
        return False


def _decoder_packages(syntax: str) -> str:
    """What to pip-install to decode pixel data in transfer syntax `syntax` (a UID string)."""
    from pydicom import uid

    for family, uids in (("jpegls", uid.JPEGLSTransferSyntaxes), ("jpeg2000", uid.JPEG2000TransferSyntaxes),
                         ("jpeg", uid.JPEGTransferSyntaxes), ("rle", uid.RLETransferSyntaxes)):
        if syntax in uids:
            return DECODER_PACKAGES[family]
    return DECODER_PACKAGES["other"]


def _check_decoder(path: Path, syntax) -> None:
    """ImageReadError naming the file, the transfer syntax and the packages to install when no installed plugin
    decodes `syntax` (a pydicom UID); nothing for uncompressed syntaxes."""
    if syntax is None or not syntax.is_compressed:
        return
    try:
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom < 3: no registry to ask; a failing decode still gives one line
        return
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise ImageReadError(f"{path}: transfer syntax {syntax.name} ({syntax}) has no decoder installed; "
                             f"pip install {_decoder_packages(str(syntax))}")


def _lut_functions():
    """(apply_modality_lut, apply_voi_lut) from pydicom 3 (pydicom.pixels) or 2.x (pixel_data_handlers.util)."""
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return apply_modality_lut, apply_voi_lut


def _has_voi_lut(dataset) -> bool:
    """True when the first VOI LUT Sequence item has both LUTDescriptor and LUTData (as apply_voi_lut decides)."""
    items = dataset.get("VOILUTSequence")
    return bool(items) and None not in (items[0].get("LUTDescriptor"), items[0].get("LUTData"))


def _has_window(dataset) -> bool:
    """True when WindowCenter and WindowWidth are both present."""
    return dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None


def voi_output_range(dataset) -> tuple[float, float]:
    """(value for black, value for white) of apply_voi_lut's output for `dataset`: [0, 2**bits - 1] of a VOI LUT
    (bits = LUTDescriptor[2]); for a window, the stored range after the Modality LUT (PS3.3 C.11.2.1.2, as pydicom
    computes it: a Modality LUT's [0, 2**bits - 1], else the signed or unsigned BitsStored range, rescaled)."""
    if _has_voi_lut(dataset):
        return 0.0, float(2 ** int(dataset.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(dataset.BitsStored)
    if dataset.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(dataset.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def dicom_grey(stored: np.ndarray, dataset) -> np.ndarray:
    """Grey float32 (H, W) array in [0, 255] from a DICOM's stored pixel values (one frame, as `pixel_array` gives
    them) and its header: Modality LUT, VOI LUT or window (else the percentile window), MONOCHROME1 inverted."""
    apply_modality_lut, apply_voi_lut = _lut_functions()
    values = apply_modality_lut(stored, dataset)
    if _has_voi_lut(dataset) or _has_window(dataset):
        if _has_voi_lut(dataset) and not np.issubdtype(values.dtype, np.integer):
            values = np.rint(values).astype(np.int64)  # a VOI LUT is indexed by integer input values
        shown = apply_voi_lut(values, dataset, index=0).astype(np.float64)
        low, high = voi_output_range(dataset)
    elif (int(dataset.get("BitsStored", 16)) == 8 and int(dataset.get("PixelRepresentation", 0)) == 0
          and np.issubdtype(values.dtype, np.integer) and float(dataset.get("RescaleSlope", 1)) == 1
          and float(dataset.get("RescaleIntercept", 0)) == 0):
        shown, low, high = values.astype(np.float64), 0.0, 255.0
    else:
        shown = values.astype(np.float64)
        low, high = percentile_range(shown)
    grey = window_grey(shown, low, high)
    if str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        grey = 255.0 - grey
    return grey


def _read_dicom(path: Path, max_pixels: int):
    """A pydicom Dataset whose header passed the checks (pixel data present, one grey frame, size, truncation,
    decoder installed), its large elements not yet read."""
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        raise ImageReadError(f"{path}: reading DICOM needs pydicom (pip install pydicom)") from None
    try:
        dataset = pydicom.dcmread(str(path), defer_size=_DICOM_DEFER_BYTES)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ImageReadError(f"{path}: not a readable DICOM file ({' '.join(str(exc).split())})") from None
    if not any(key in dataset for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageReadError(f"{path}: DICOM file has no pixel data (not an image, or truncated before it)")
    if "Rows" not in dataset or "Columns" not in dataset:
        raise ImageReadError(f"{path}: DICOM file has pixel data but no Rows/Columns")
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    _check_pixels(path, int(dataset.Columns), int(dataset.Rows), max_pixels, frames)
    if frames > 1:
        raise ImageReadError(f"{path}: DICOM file has {frames} frames; one frame (a single radiograph) expected")
    samples = int(getattr(dataset, "SamplesPerPixel", 1) or 1)
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).strip()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(f"{path}: DICOM file has colour samples ({photometric}, {samples} samples per pixel); "
                             "a grey radiograph (MONOCHROME1 or MONOCHROME2) expected")
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" in dataset and syntax is not None and not syntax.is_compressed:
        bits = int(getattr(dataset, "BitsAllocated", 16) or 16)
        expected = math.ceil(int(dataset.Rows) * int(dataset.Columns) * bits / 8)
        found = len(dataset.PixelData)
        if found < expected:
            raise ImageReadError(f"{path}: DICOM pixel data truncated: {found:,} of {expected:,} bytes")
    _check_decoder(path, syntax)
    return dataset


def _grey_from_dicom(path: Path, max_pixels: int = MAX_SOURCE_PIXELS) -> np.ndarray:
    """Grey float32 array in [0, 255] from a DICOM file, its header checked before the pixel data is read."""
    dataset = _read_dicom(path, max_pixels)
    stored = dataset.pixel_array
    if stored.ndim != 2:
        raise ImageReadError(f"{path}: expected one grey frame, found pixel array of shape {stored.shape}")
    return dicom_grey(stored, dataset)


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
        _check_pixels(path, image.width, image.height, max_pixels)
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
            _check_pixels(path, width, height, max_pixels, int(getattr(header, "NumberOfFrames", 1) or 1))
            return height, width
        with _open_checked(path, max_pixels) as image:
            return image.height, image.width
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt files; all mean "cannot read this image"
        raise ImageReadError(f"{path}: cannot decode image: {' '.join(str(exc).split())}") from None


def read_grey(path: str | Path, max_pixels: int = MAX_SOURCE_PIXELS) -> np.ndarray:
    """Decode an image file to a 2-D float32 grey array in [0, 255]; ImageReadError naming the file if impossible
    (see the module docstring for what is refused before decoding; `max_pixels` is width x height in pixels)."""
    path = Path(path)
    _check_file(path)
    try:
        if is_dicom_path(path):
            return _grey_from_dicom(path, max_pixels)
        with _open_checked(path, max_pixels) as image:
            image.load()
            return _grey_from_pil(image)
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
    """Area-interpolate a square float grey array (0..255) to (resolution_px, resolution_px) uint8 (rounded, clipped)."""
    return np.clip(np.rint(area_resize_float(grey, resolution_px)), 0, 255).astype(np.uint8)


def load_resized(path: str | Path, resolutions_px: tuple[int, ...]) -> tuple[dict[int, np.ndarray], tuple[int, int]]:
    """Decode `path` once and return {resolution: uint8 (R, R) array} and the source (height, width) in pixels."""
    grey = read_grey(path)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise ImageReadError(f"{path}: expected a 2-D image, got shape {grey.shape}")
    square = pad_to_square(grey)
    return {r: area_resize(square, r) for r in resolutions_px}, (int(grey.shape[0]), int(grey.shape[1]))
