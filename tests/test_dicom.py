"""DICOM read as radiology software displays it: transfer syntaxes (decoded pixels compared with what was written),
Modality LUT, VOI LUT / window / the BitsStored range against values computed by hand, MONOCHROME1, signed pixels,
`.dicom`, and the one-line refusals (several frames, colour, no decoder installed, non-finite values, a corrupt
codestream with the decoder's own stderr captured)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom import uid as uids  # noqa: E402

from cxrres.data.dicom_pixels import dicom_grey, modality_range, voi_output_range  # noqa: E402
from cxrres.data.images import image_size, load_resized, read_grey  # noqa: E402
from cxrres.data.pixel_rules import ImageReadError  # noqa: E402


def _dataset(
    pixels: np.ndarray,
    bits_stored: int = 12,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    syntax: str = uids.ExplicitVRLittleEndian,
    **elements,
) -> FileDataset:
    """A single-frame grey DICOM dataset holding `pixels` (uint16 / int16 / uint8) uncompressed, plus `elements`."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = uids.generate_uid()
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    allocated = 8 if pixels.dtype == np.uint8 else 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (
        allocated,
        bits_stored,
        bits_stored - 1,
        int(signed),
    )
    ds.PixelData = pixels.tobytes()
    for key, value in elements.items():
        setattr(ds, key, value)
    return ds


def _save(ds: FileDataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _smooth(shape: tuple[int, int] = (48, 64), peak: int = 4095) -> np.ndarray:
    """A smooth 12-bit test picture (uint16): a ramp plus a bright disc."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ramp = (xx / (shape[1] - 1)) * 0.6 + (yy / (shape[0] - 1)) * 0.2
    disc = ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < (shape[0] / 4) ** 2) * 0.2
    return np.rint((ramp + disc) * peak).astype(np.uint16)


# ---- windowing, against values computed by hand ----


def test_linear_window_on_unsigned_12_bit() -> None:
    # WC 1500, WW 1001 -> c = 1499.5, w = 1000: x <= 999.5 -> 0; x > 1999.5 -> 255;
    # else ((x - 1499.5) / 1000 + 0.5) * 255
    stored = np.array([[0, 1000, 1500, 1999, 2000, 4095]], np.uint16)
    grey = dicom_grey(stored, _dataset(stored, WindowCenter=1500, WindowWidth=1001))
    assert grey.dtype == np.float32
    assert np.allclose(grey, [[0, 0.1275, 127.6275, 254.8725, 255, 255]], atol=1e-4)


def test_rescale_then_window_on_signed_pixels() -> None:
    # stored int16 -> 2 x - 1000: [-2200, -1000, 0, 500, 1000]; WC 0, WW 2001 -> c = -0.5, w = 2000:
    # -2200 <= -1000.5 -> black; -1000 -> (-999.5 / 2000 + 0.5) = 0.00025; 0 -> 0.50025; 500 -> 0.75025; 1000 -> white.
    stored = np.array([[-600, 0, 500, 750, 1000]], np.int16)
    ds = _dataset(
        stored, bits_stored=16, signed=True, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=2001
    )
    assert voi_output_range(ds) == (2 * -32768 - 1000, 2 * 32767 - 1000)
    assert np.allclose(dicom_grey(stored, ds), [[0, 0.06375, 127.56375, 191.31375, 255]], atol=1e-4)


def test_linear_exact_and_sigmoid_windows() -> None:
    stored = np.array([[1500, 2000, 2250, 2500, 3000]], np.uint16)
    exact = _dataset(stored, WindowCenter=2000, WindowWidth=1000, VOILUTFunction="LINEAR_EXACT")
    # (x - 2000) / 1000 + 0.5, clipped: 1500 and 2500 sit on the edges
    assert np.allclose(dicom_grey(stored, exact), [[0, 127.5, 191.25, 255, 255]], atol=1e-4)
    sigmoid = _dataset(stored, WindowCenter=2000, WindowWidth=1000, VOILUTFunction="SIGMOID")
    # 255 / (1 + exp(-4 (x - 2000) / 1000)): 2000 -> 127.5, 2250 -> 255 / (1 + e^-1) = 186.40...
    expected = [255 / (1 + np.exp(-4 * (x - 2000) / 1000)) for x in (1500, 2000, 2250, 2500, 3000)]
    assert np.allclose(dicom_grey(stored, sigmoid), [expected], atol=1e-3)
    assert dicom_grey(stored, sigmoid)[0, 1] == pytest.approx(127.5, abs=1e-4)


def test_voi_lut_sequence_wins_over_window_and_maps_its_bits_to_255() -> None:
    stored = np.array([[0, 100, 101, 102, 103, 500]], np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4, 100, 8]  # 4 entries, first input value 100, 8 bits per entry
    item.LUTData = [0, 50, 200, 255]
    ds = _dataset(stored, WindowCenter=50, WindowWidth=10)
    ds.VOILUTSequence = Sequence([item])
    assert voi_output_range(ds) == (0.0, 255.0)
    assert dicom_grey(stored, ds).tolist() == [[0, 0, 50, 200, 255, 255]]


def test_monochrome1_is_inverted_after_windowing() -> None:
    stored = np.array([[0, 1000, 1500, 4095]], np.uint16)
    ds = _dataset(stored, photometric="MONOCHROME1", WindowCenter=1500, WindowWidth=1001)
    assert np.allclose(dicom_grey(stored, ds), [[255, 254.8725, 127.3725, 0]], atol=1e-4)


def test_without_voi_the_bits_stored_range_maps_to_255() -> None:
    # unsigned 12-bit, no rescale: value * 255 / 4095, never stretched by the image's own range
    stored = np.array([[0, 5, 1000, 4095]], np.uint16)
    assert np.array_equal(dicom_grey(stored, _dataset(stored)), (stored * 255.0 / 4095).astype(np.float32))
    flat = np.full((4, 4), 700, np.uint16)
    assert np.allclose(dicom_grey(flat, _dataset(flat)), 700 * 255 / 4095)  # a flat image keeps its grey
    # signed 16-bit with rescale 2 x - 1000: the range is [-66536, 64534]; 0 stored -> -1000
    signed = np.array([[-32768, 0, 32767]], np.int16)
    ds = _dataset(signed, bits_stored=16, signed=True, RescaleSlope=2, RescaleIntercept=-1000)
    assert modality_range(ds) == (-66536.0, 64534.0)
    assert np.allclose(dicom_grey(signed, ds), [[0, (-1000 + 66536) * 255 / 131070, 255]], atol=1e-4)
    # a negative slope reverses the stored order; the lowest modality value is still black
    ds = _dataset(stored, RescaleSlope=-1, RescaleIntercept=0)
    assert modality_range(ds) == (-4095.0, 0.0)
    assert np.allclose(dicom_grey(stored, ds), [[255, 255 - 5 * 255 / 4095, 255 - 1000 * 255 / 4095, 0]], atol=1e-4)


def test_16_bit_png_and_dicom_without_voi_share_the_bit_depth_rule(tmp_path: Path) -> None:
    from PIL import Image

    stored = _smooth()  # 12-bit: its largest value 4095 needs 12 bits; the DICOM says BitsStored 12
    Image.fromarray(stored).save(tmp_path / "x.png")
    png, dicom = read_grey(tmp_path / "x.png"), read_grey(_save(_dataset(stored), tmp_path / "x.dcm"))
    assert png.dtype == dicom.dtype == np.float32 and png.tobytes() == dicom.tobytes()
    assert 2048 <= stored.max() < 4096 and np.array_equal(png, (stored * 255.0 / 4095).astype(np.float32))


def test_eight_bit_without_voi_is_taken_as_is() -> None:
    stored = np.array([[0, 17, 128, 255]], np.uint8)
    assert dicom_grey(stored, _dataset(stored, bits_stored=8)).tolist() == [[0, 17, 128, 255]]


# ---- transfer syntaxes: written here, decoded pixels compared ----


def _needs(*modules: str) -> None:
    for module in modules:
        pytest.importorskip(module)


LOSSLESS = [
    ("explicit", uids.ExplicitVRLittleEndian, ()),
    ("implicit", uids.ImplicitVRLittleEndian, ()),
    ("deflated", uids.DeflatedExplicitVRLittleEndian, ()),
    ("rle", uids.RLELossless, ()),
    ("jpeg-ls", uids.JPEGLSLossless, ("jpeg_ls",)),
    ("jpeg2000-lossless", uids.JPEG2000Lossless, ("openjpeg",)),
    ("jpeg-lossless-sv1", uids.JPEGLosslessSV1, ("gdcm",)),
    ("jpeg-lossless", uids.JPEGLossless, ("gdcm",)),
]


def _write_in(path: Path, ds: FileDataset, syntax: str) -> Path:
    """Save `ds` in transfer syntax `syntax`: pydicom's own encoders (RLE natively, JPEG-LS via pyjpegls, JPEG 2000
    via pylibjpeg-openjpeg), GDCM's transcoder for the JPEG processes pydicom cannot encode."""
    if syntax in (uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian, uids.DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
        return _save(ds, path)
    if syntax in uids.JPEGTransferSyntaxes:
        import gdcm

        plain = _save(ds, path.with_suffix(".plain.dcm"))
        reader = gdcm.ImageReader()
        reader.SetFileName(str(plain))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str(syntax))))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(path))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
        return path
    kwargs = {"jls_error": 2} if syntax == uids.JPEGLSNearLossless else {}
    if syntax == uids.JPEG2000:
        kwargs = {"j2k_psnr": [80.0]}
    ds.compress(syntax, **kwargs)
    return _save(ds, path)


@pytest.mark.parametrize("name, syntax, modules", LOSSLESS, ids=[n for n, _, _ in LOSSLESS])
def test_lossless_syntaxes_decode_to_the_written_pixels(tmp_path: Path, name: str, syntax: str, modules) -> None:
    _needs(*modules)
    pixels = _smooth()
    ds = _dataset(pixels, WindowCenter=2048, WindowWidth=4096)
    path = _write_in(tmp_path / f"{name}.dcm", ds, syntax)
    written = pydicom.dcmread(path)
    assert written.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(written.pixel_array, pixels)
    expected = dicom_grey(pixels, _dataset(pixels, WindowCenter=2048, WindowWidth=4096))
    assert np.allclose(expected, pixels * (255 / 4095), atol=1e-4)  # this window is x / 4095 over [0, 4095]
    assert np.array_equal(read_grey(path), expected)


LOSSY = [
    ("jpeg-ls-near", uids.JPEGLSNearLossless, ("jpeg_ls",), 12, 2 / 4095 * 255),  # 12-bit, |error| <= NEAR = 2
    ("jpeg2000", uids.JPEG2000, ("openjpeg",), 12, 2.0),
    ("jpeg-baseline", uids.JPEGBaseline8Bit, ("gdcm",), 8, 3.0),
]


@pytest.mark.parametrize("name, syntax, modules, bits, tolerance", LOSSY, ids=[n for n, *_ in LOSSY])
def test_lossy_syntaxes_decode_close_to_the_written_pixels(
    tmp_path: Path, name: str, syntax: str, modules, bits: int, tolerance: float
) -> None:
    _needs(*modules)
    pixels = _smooth(peak=2**bits - 1).astype(np.uint8 if bits == 8 else np.uint16)
    window = {"WindowCenter": 2 ** (bits - 1), "WindowWidth": 2**bits}
    path = _write_in(tmp_path / f"{name}.dcm", _dataset(pixels, bits_stored=bits, **window), syntax)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    grey = read_grey(path)
    assert grey.shape == pixels.shape
    assert np.abs(grey - pixels * (255 / (2**bits - 1))).max() <= tolerance + 1e-4


# ---- suffixes and refusals: one line naming the file ----


def test_dicom_suffix_is_read_like_dcm(tmp_path: Path) -> None:
    pixels = _smooth((30, 40))
    a = _save(_dataset(pixels, WindowCenter=2048, WindowWidth=4096), tmp_path / "a.dcm")
    b = _save(_dataset(pixels, WindowCenter=2048, WindowWidth=4096), tmp_path / "B.DICOM")
    assert np.array_equal(read_grey(a), read_grey(b))
    assert image_size(b) == (30, 40)
    resized, source_hw = load_resized(b, (8,))
    assert source_hw == (30, 40) and resized[8].shape == (8, 8)


def test_several_frames_are_refused(tmp_path: Path) -> None:
    frames = np.stack([_smooth((8, 8)), _smooth((8, 8))])
    ds = _dataset(frames[0])
    ds.NumberOfFrames = 2
    ds.PixelData = frames.tobytes()
    path = _save(ds, tmp_path / "cine.dcm")
    with pytest.raises(ImageReadError, match=r"cine\.dcm: DICOM file has 2 frames; one frame .* expected$"):
        read_grey(path)


def test_colour_samples_are_refused(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    ds = _dataset(rgb[..., 0], bits_stored=8, photometric="RGB")
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PixelData = rgb.tobytes()
    path = _save(ds, tmp_path / "photo.dicom")
    with pytest.raises(
        ImageReadError, match=r"photo\.dicom: DICOM file has colour samples \(RGB, 3 samples per pixel\)"
    ):
        read_grey(path)


def test_a_syntax_without_decoder_names_file_syntax_and_package(tmp_path: Path, monkeypatch) -> None:
    _needs("jpeg_ls")
    from pydicom.pixels import get_decoder

    path = _write_in(tmp_path / "ls.dcm", _dataset(_smooth((16, 16))), uids.JPEGLSLossless)
    monkeypatch.setattr(get_decoder(uids.JPEGLSLossless), "_available", {})  # as if no plugin were installed
    with pytest.raises(ImageReadError) as caught:
        read_grey(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"{path}: transfer syntax JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80) has no "
        "decoder installed; pip install pylibjpeg pylibjpeg-libjpeg, or pyjpegls (or python-gdcm)"
    )


# ---- hostile values and decoders (issue 24) ----


def test_a_60000_x_1_dicom_is_refused_before_padding_to_a_square(tmp_path: Path) -> None:
    """60,000 pixels pass the pixel limit, but the padded square would be 3.6 Gpx (14 GB in float32)."""
    path = _save(
        _dataset(np.full((60_000, 1), 1000, np.uint16), WindowCenter=2048, WindowWidth=4096), tmp_path / "tall.dcm"
    )
    line = r"tall\.dcm: header claims 1 x 60,000 pixels, whose padded square 60,000 x 60,000 is more than the limit"
    for read in (read_grey, image_size, lambda p: load_resized(p, (8,))):
        with pytest.raises(ImageReadError, match=line):
            read(path)


@pytest.mark.parametrize(
    "slope, problem",
    [
        ("NaN", r"64 of 64 pixel values are not finite after the Modality LUT \(RescaleSlope NaN, RescaleIntercept 0"),
        ("1e308", r"64 of 64 pixel values are not finite after the Modality LUT \(RescaleSlope 1e\+?308"),
        ("1e36", r"pixel values reach 1e\+39 after the Modality LUT \(RescaleSlope 1e\+?36.*beyond float32"),
    ],
)
def test_non_finite_or_overflowing_modality_values_are_refused(
    tmp_path: Path, slope: str, problem: str, capfd: pytest.CaptureFixture
) -> None:
    """Before: NaN grey (a NaN slope) or all black (1e308: inf values, an inf window) decoded with ok=True."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that 'NaN' is no valid DS while the test writes it
        path = _save(
            _dataset(np.full((8, 8), 1000, np.uint16), RescaleSlope=slope, RescaleIntercept=0), tmp_path / "slope.dcm"
        )
    with pytest.raises(ImageReadError, match=r"slope\.dcm: " + problem):
        read_grey(path)
    assert capfd.readouterr().err == ""  # pydicom's 'Invalid value for VR DS' and NumPy's overflow are not printed


def _jpeg_dicom(path: Path) -> bytearray:
    """The bytes of a JPEG Baseline DICOM of an 8-bit picture (written with GDCM's transcoder)."""
    _needs("gdcm")
    _write_in(path, _dataset(_smooth(peak=255).astype(np.uint8), bits_stored=8), uids.JPEGBaseline8Bit)
    return bytearray(path.read_bytes())


def test_a_corrupt_jpeg_in_a_dicom_prints_only_cxrres_line(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """libjpeg writes 'Unsupported JPEG data precision 13' to file descriptor 2; it is captured into the one line."""
    data = _jpeg_dicom(tmp_path / "good.dcm")
    data[data.find(b"\xff\xc0") + 4] = 13  # the frame header's sample precision: 8 -> 13
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(bytes(data))
    capfd.readouterr()
    with pytest.raises(ImageReadError) as caught:
        read_grey(bad)
    message = str(caught.value)
    assert message.startswith(f"{bad}: cannot decode image: ") and "\n" not in message
    assert "Unsupported JPEG data precision 13" in message  # what the decoder printed, kept in the line
    assert capfd.readouterr() == ("", "")
    scan = _jpeg_dicom(tmp_path / "scan.dcm")
    start = scan.find(b"\xff\xda")
    scan[start + 20 : start + 200] = bytes((k * 37) % 255 for k in range(180))  # libjpeg recovers, with a warning
    (tmp_path / "scan.dcm").write_bytes(bytes(scan))
    assert read_grey(tmp_path / "scan.dcm").shape == (48, 64)
    assert capfd.readouterr() == ("", "")
