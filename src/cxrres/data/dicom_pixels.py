"""DICOM pixel data to grey, read as radiology software displays it (docs/dicom.md).

The stored values (signed when PixelRepresentation is 1) go through the Modality LUT (RescaleSlope/Intercept or a
Modality LUT Sequence, `apply_modality_lut`), then the first VOI LUT or WindowCenter/Width (`apply_voi_lut`; LINEAR,
LINEAR_EXACT or SIGMOID), whose output range maps to [0, 255]. Without either, the range the Modality LUT can give
(BitsStored, signed or not, through the rescale; `modality_range`) maps to [0, 255]: for unsigned values without
rescale that is value * 255 / (2**BitsStored - 1), the bit-depth rule of PNGs with bits = BitsStored.
MONOCHROME1 is inverted after windowing (bone bright). Values that are not finite or exceed float32 after the
Modality LUT (a NaN or 1e308 RescaleSlope) are refused. Compressed transfer syntaxes decode through pydicom's plugins
(pylibjpeg and its plugins, pyjpegls, python-gdcm) with file descriptor 2 captured, so what libjpeg or GDCM print
never reaches the terminal; a syntax without an installed decoder, several frames or colour samples are refused
with one line naming the file.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from cxrres.data.pixel_rules import ImageReadError, check_pixels, window_grey

#: DICOM elements larger than this (bytes) are read only when used, so a header is checked before its pixel data.
DICOM_DEFER_BYTES = 2**20
#: Largest magnitude a value may have after the Modality LUT (float32's largest); beyond it, or not finite (a NaN or
#: 1e308 RescaleSlope), the file is refused.
MAX_MODALITY_MAGNITUDE = float(np.finfo(np.float32).max)
#: Transfer-syntax family -> what to install to decode it (pip names; pyproject extra `dicom` has the first).
DECODER_PACKAGES = {
    "jpeg": "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)",
    "jpegls": "pylibjpeg pylibjpeg-libjpeg, or pyjpegls (or python-gdcm)",
    "jpeg2000": "pylibjpeg pylibjpeg-openjpeg (or python-gdcm)",
    "rle": "pylibjpeg pylibjpeg-rle",
    "other": "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle (or python-gdcm)",
}


def _decoder_packages(syntax: str) -> str:
    """What to pip-install to decode pixel data in transfer syntax `syntax` (a UID string)."""
    from pydicom import uid

    for family, uids in (
        ("jpegls", uid.JPEGLSTransferSyntaxes),
        ("jpeg2000", uid.JPEG2000TransferSyntaxes),
        ("jpeg", uid.JPEGTransferSyntaxes),
        ("rle", uid.RLETransferSyntaxes),
    ):
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
        raise ImageReadError(
            f"{path}: transfer syntax {syntax.name} ({syntax}) has no decoder installed; "
            f"pip install {_decoder_packages(str(syntax))}"
        )


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


def _rescaled_stored_range(dataset) -> tuple[float, float]:
    """(y_min, y_max) of PS3.3 C.11.2.1.2 as pydicom computes a window's output range: a Modality LUT's
    [0, 2**bits - 1], else the signed or unsigned BitsStored range through the rescale (reversed by a negative
    slope)."""
    bits = int(dataset.BitsStored)
    if dataset.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    if int(dataset.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def modality_range(dataset) -> tuple[float, float]:
    """(lowest, highest) value the Modality LUT can give: what maps to black and white in a DICOM without VOI."""
    low, high = _rescaled_stored_range(dataset)
    return min(low, high), max(low, high)


def voi_output_range(dataset) -> tuple[float, float]:
    """(value for black, value for white) of apply_voi_lut's output for `dataset`: [0, 2**bits - 1] of a VOI LUT
    (bits = LUTDescriptor[2]); for a window, pydicom's (y_min, y_max): the stored range after the Modality LUT."""
    if _has_voi_lut(dataset):
        return 0.0, float(2 ** int(dataset.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    return _rescaled_stored_range(dataset)


def _check_finite(values: np.ndarray, path: str | Path, step: str, dataset) -> None:
    """ImageReadError naming the file when float `values` after `step` are not finite or exceed float32."""
    if values.dtype.kind != "f":
        return
    rescale = f"RescaleSlope {dataset.get('RescaleSlope', 1)}, RescaleIntercept {dataset.get('RescaleIntercept', 0)}"
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise ImageReadError(
            f"{path}: {bad:,} of {values.size:,} pixel values are not finite after the {step} ({rescale}); refused"
        )
    peak = float(np.abs(values).max()) if values.size else 0.0
    if peak > MAX_MODALITY_MAGNITUDE:
        raise ImageReadError(
            f"{path}: pixel values reach {peak:.3g} after the {step} ({rescale}), beyond float32 "
            f"({MAX_MODALITY_MAGNITUDE:.3g}); refused"
        )


def dicom_grey(stored: np.ndarray, dataset, path: str | Path = "DICOM dataset") -> np.ndarray:
    """Grey float32 (H, W) array in [0, 255] from a DICOM's stored pixel values (one frame, as `pixel_array` gives
    them) and its header: Modality LUT, VOI LUT or window (else the modality range), MONOCHROME1 inverted;
    ImageReadError naming `path` for values that are not finite or exceed float32."""
    apply_modality_lut, apply_voi_lut = _lut_functions()
    values = apply_modality_lut(stored, dataset)
    _check_finite(values, path, "Modality LUT", dataset)
    if _has_voi_lut(dataset) or _has_window(dataset):
        if _has_voi_lut(dataset) and not np.issubdtype(values.dtype, np.integer):
            values = np.rint(values).astype(np.int64)  # a VOI LUT is indexed by integer input values
        shown = apply_voi_lut(values, dataset, index=0).astype(np.float64, copy=False)
        low, high = voi_output_range(dataset)
        _check_finite(shown, path, "VOI LUT/window", dataset)
    else:
        shown = values.astype(np.float64, copy=False)
        low, high = modality_range(dataset)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ImageReadError(
            f"{path}: the output range of its Modality LUT/window is not finite ({low}, {high}); refused"
        )
    grey = window_grey(shown, low, high)
    if str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1":
        grey = 255.0 - grey
    return grey


#: Serialises redirecting file descriptor 2 between threads of one process.
_STDERR_LOCK = threading.Lock()


def _pixel_array_quietly(path: Path, dataset) -> np.ndarray:
    """`dataset.pixel_array` with file descriptor 2 sent to a temporary file while the plugins decode (libjpeg and
    GDCM print there): a failure is one ImageReadError line naming the file, with what the decoder printed; what a
    successful decode printed is dropped."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        if sys.stderr is not None:
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no file descriptor 2 (a daemon): nothing can reach a terminal anyway
            return dataset.pixel_array
        os.dup2(sink.fileno(), 2)
        try:
            stored, error = dataset.pixel_array, None
        except Exception as exc:  # the plugins raise many types; all mean "cannot decode this pixel data"
            stored, error = None, exc
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        if error is None:
            return stored
        sink.seek(0)
        printed = " ".join(sink.read(4000).decode("utf-8", "replace").split())
    said = f" (decoder printed: {printed})" if printed else ""
    raise ImageReadError(f"{path}: cannot decode image: {' '.join(str(error).split())}{said}")


def read_dicom(path: Path, max_pixels: int):
    """A pydicom Dataset whose header passed the checks (pixel data present, one grey frame, size, truncation,
    decoder installed), its large elements not yet read."""
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        raise ImageReadError(f"{path}: reading DICOM needs pydicom (pip install pydicom)") from None
    try:
        dataset = pydicom.dcmread(str(path), defer_size=DICOM_DEFER_BYTES)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ImageReadError(f"{path}: not a readable DICOM file ({' '.join(str(exc).split())})") from None
    if not any(key in dataset for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageReadError(f"{path}: DICOM file has no pixel data (not an image, or truncated before it)")
    if "Rows" not in dataset or "Columns" not in dataset:
        raise ImageReadError(f"{path}: DICOM file has pixel data but no Rows/Columns")
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    check_pixels(path, int(dataset.Columns), int(dataset.Rows), max_pixels, frames)
    if frames > 1:
        raise ImageReadError(f"{path}: DICOM file has {frames} frames; one frame (a single radiograph) expected")
    samples = int(getattr(dataset, "SamplesPerPixel", 1) or 1)
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).strip()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(
            f"{path}: DICOM file has colour samples ({photometric}, {samples} samples per pixel); "
            "a grey radiograph (MONOCHROME1 or MONOCHROME2) expected"
        )
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" in dataset and syntax is not None and not syntax.is_compressed:
        bits = int(getattr(dataset, "BitsAllocated", 16) or 16)
        expected = math.ceil(int(dataset.Rows) * int(dataset.Columns) * bits / 8)
        found = len(dataset.PixelData)
        if found < expected:
            raise ImageReadError(f"{path}: DICOM pixel data truncated: {found:,} of {expected:,} bytes")
    _check_decoder(path, syntax)
    return dataset


def grey_from_dicom(path: Path, max_pixels: int) -> np.ndarray:
    """Grey float32 array in [0, 255] from a DICOM file, its header checked before the pixel data is read. pydicom's
    and NumPy's warnings (an invalid DS value, an overflow) are not printed: what they flag is refused in one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = read_dicom(path, max_pixels)
        stored = _pixel_array_quietly(path, dataset)
        if stored.ndim != 2:
            raise ImageReadError(f"{path}: expected one grey frame, found pixel array of shape {stored.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            return dicom_grey(stored, dataset, path)
