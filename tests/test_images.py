"""Decoding to grey (8/16-bit by one bit-depth rule, sBIT, L/RGB/RGBA, DICOM, non-square), the bounds on what a
decode allocates, area resizing, and the preprocessing rules a client reproduces."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrres.data.images import (
    MAX_SOURCE_PIXELS,
    SIXTEEN_BIT_RULE,
    ImageReadError,
    area_resize,
    grey_from_bits,
    image_size,
    is_sixteen_bit,
    load_resized,
    pad_to_square,
    png_significant_bits,
    preprocessing_rules,
    read_grey,
    stored_bits,
)

from conftest import MINI, exact_area_resize, real_data_root


@pytest.fixture(autouse=True)
def _user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep any default cache out of ~/.cache."""
    monkeypatch.setenv("CXRRES_CACHE_DIR", str(tmp_path / "user-cache"))


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_grey_rgb_rgba_agree_and_8_bit_is_not_windowed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(100, 121, (20, 20), dtype=np.uint8)  # a narrow range: 8-bit is taken as is, never stretched
    grey_l = read_grey(_save(tmp_path / "l.png", grey, "L"))
    rgb = read_grey(_save(tmp_path / "rgb.png", np.stack([grey] * 3, -1), "RGB"))
    rgba = read_grey(_save(tmp_path / "rgba.png", np.stack([grey] * 3 + [np.full_like(grey, 7)], -1), "RGBA"))
    assert grey_l.dtype == np.float32 and grey_l.shape == (20, 20)
    assert np.array_equal(grey_l, grey.astype(np.float32))
    assert np.array_equal(rgb, grey_l) and np.array_equal(rgba, grey_l)  # alpha ignored
    assert not is_sixteen_bit(tmp_path / "l.png") and not is_sixteen_bit(tmp_path / "rgb.png")


def test_12_bit_in_16_keeps_its_grey_levels(tmp_path: Path) -> None:
    # PadChest-like: 12-bit data (0..4095) in a 16-bit PNG without sBIT -> 12 bits -> value * 255 / 4095
    rng = np.random.default_rng(1)
    ramp = np.arange(64 * 64).reshape(64, 64) * 4095 / (64 * 64 - 1)
    values = np.clip(np.rint(ramp + rng.normal(0, 30, (64, 64))), 0, 4095).astype(np.uint16)
    path = _save(tmp_path / "12bit.png", values)
    assert Image.open(path).mode.startswith("I") and is_sixteen_bit(path) and png_significant_bits(path) is None
    grey = read_grey(path)
    assert np.array_equal(grey, (values * 255.0 / 4095).astype(np.float32))
    assert len(np.unique(np.rint(grey))) >= 250  # value / 257 gave at most 4095 / 257 -> 17 grey levels
    assert len(np.unique(area_resize(grey, 64))) >= 250
    assert grey.min() == 0 and grey.max() == 255


@pytest.mark.parametrize(
    "largest, bits",
    [
        (0, 8),
        (255, 8),
        (256, 10),
        (1023, 10),
        (1024, 12),
        (4095, 12),
        (4096, 14),
        (16383, 14),
        (16384, 16),
        (65535, 16),
        (70_000, 17),
    ],
)
def test_stored_bits_is_the_smallest_depth_that_holds_the_largest_value(largest: int, bits: int) -> None:
    assert stored_bits(largest) == bits


def test_sbit_is_honoured_when_the_values_fit_in_it(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    values = np.array([[0, 100, 500, 1023]], np.uint16)  # fits in 10 bits; sBIT says 12
    info = PngInfo()
    info.add(b"sBIT", bytes([12]))
    path = tmp_path / "sbit.png"
    Image.fromarray(values).save(path, pnginfo=info)
    assert png_significant_bits(path) == 12
    assert np.array_equal(read_grey(path), (values * 255.0 / 4095).astype(np.float32))  # without sBIT: / 1023
    assert np.array_equal(read_grey(_save(tmp_path / "plain.png", values)), (values * 255.0 / 1023).astype(np.float32))
    scaled = np.array([[0, 2048 * 16, 65535]], np.uint16)  # samples scaled to 16 bits as the PNG standard asks
    Image.fromarray(scaled).save(path, pnginfo=info)
    assert stored_bits(65535, 12) == 16 and np.array_equal(read_grey(path), (scaled * 255.0 / 65535).astype(np.float32))


def test_16_bit_constant_image_keeps_its_grey(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero
        flat = read_grey(_save(tmp_path / "flat.png", np.full((8, 8), 1234, np.uint16)))
    assert flat.dtype == np.float32 and np.all(flat == np.float32(1234 * 255 / 4095))


def test_bit_depth_table_equals_the_per_pixel_formula(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for bits in (10, 12, 16):
        stored = rng.integers(0, 2**bits, (30, 30)).astype(np.uint16)
        direct = (stored.astype(np.float64) * 255.0 / (2**bits - 1)).astype(np.float32)
        assert np.array_equal(grey_from_bits(stored, bits), direct)
    wide = np.array([[0, 70_000, 131_071]], np.int32)  # a 32-bit TIFF beyond 16 bits: its bit length, 17
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    assert np.allclose(read_grey(tmp_path / "wide.tif"), wide * 255 / 131_071)
    Image.fromarray(np.array([[-5, 100]], np.int32)).save(tmp_path / "negative.tif")
    with pytest.raises(ImageReadError, match=r"negative\.tif: negative grey values \(down to -5\)"):
        read_grey(tmp_path / "negative.tif")


def test_rgb_to_grey_uses_itu_601_luma(tmp_path: Path) -> None:
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    assert read_grey(_save(tmp_path / "red.png", red, "RGB"))[0, 0] == round(200 * 299 / 1000)


def test_dicom_monochrome1_is_inverted_after_a_full_range_window(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    pixels = np.array([[0, 4095], [2048, 1024]], np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096  # LINEAR: ((x - 2047.5) / 4095 + 0.5) = x / 4095 over [0, 4095]
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    grey = read_grey(tmp_path / "x.dcm")
    assert np.allclose(grey, 255 - pixels * (255 / 4095), atol=1e-3)


def test_pad_to_square_bottom_right() -> None:
    wide = np.ones((40, 56), np.float32)
    square = pad_to_square(wide)
    assert square.shape == (56, 56)
    assert square[:40].min() == 1 and square[40:].max() == 0
    tall = pad_to_square(np.ones((56, 40), np.float32))
    assert tall[:, :40].min() == 1 and tall[:, 40:].max() == 0


def test_area_resize_equals_block_mean_for_integer_factors() -> None:
    rng = np.random.default_rng(1)
    grey = rng.uniform(0, 255, (48, 48)).astype(np.float32)
    for r in (24, 16, 12, 8):
        k = 48 // r
        reference = grey.reshape(r, k, r, k).mean(axis=(1, 3))
        out = area_resize(grey, r)
        assert out.dtype == np.uint8 and out.shape == (r, r)
        assert np.abs(out.astype(float) - reference).max() <= 0.5 + 1e-3


def test_area_resize_is_the_exact_area_average_for_non_integer_factors() -> None:
    rng = np.random.default_rng(2)
    grey = rng.uniform(0, 255, (100, 100)).astype(np.float32)
    reference = exact_area_resize(grey, 32)
    assert np.abs(area_resize(grey, 32).astype(float) - reference).max() <= 0.5 + 1e-3


def test_load_resized_returns_all_resolutions_and_source_shape() -> None:
    arrays, shape = load_resized(MINI / "images" / "00000007_001.png", (8, 16, 32))
    assert shape == (40, 56)
    assert {r: a.shape for r, a in arrays.items()} == {8: (8, 8), 16: (16, 16), 32: (32, 32)}
    # the padded strip (rows 40..55 of 56) is black in every resolution
    assert arrays[32][-8:].max() == 0 and arrays[32][:20].mean() > 20


def test_corrupt_and_truncated_images_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match=r"corrupt.png: cannot decode image"):
        read_grey(bad)
    source = (MINI / "images" / "00000002_000.png").read_bytes()
    cut = tmp_path / "truncated.png"
    cut.write_bytes(source[: len(source) // 2])
    with pytest.raises(ImageReadError, match=r"truncated.png: cannot decode image"):
        read_grey(cut)


# ---- one picture, three encodings; 8-bit unchanged ----


def _picture() -> np.ndarray:
    """A real 8-bit grey radiograph (1024 px NIH, when the shared data is here), else the committed mini one (48 px)."""
    root = real_data_root()
    path = root / "images" / "00000150_002.png" if root else None
    path = path if path and path.is_file() else MINI / "images" / "00000002_000.png"
    grey = np.asarray(Image.open(path))
    assert grey.dtype == np.uint8 and grey.ndim == 2
    return grey


def test_one_picture_in_three_encodings_gives_one_network_input(tmp_path: Path) -> None:
    """8-bit PNG, 16-bit PNG (value x 257) and 16-bit DICOM with a full-range VOI: the same uint8 at every size."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from test_dicom import _dataset, _save as save_dicom

    eight = _picture()
    sixteen = eight.astype(np.uint16) * 257
    files = {"png8": _save(tmp_path / "a8.png", eight), "png16": _save(tmp_path / "a16.png", sixteen)}
    # LINEAR with WC 2^15, WW 2^16 is the identity on 0..65535 (PS3.3 C.11.2.1.2); so is LINEAR_EXACT 32767.5 / 65535
    files["linear"] = save_dicom(_dataset(sixteen, 16, WindowCenter=32768, WindowWidth=65536), tmp_path / "w.dcm")
    files["exact"] = save_dicom(
        _dataset(sixteen, 16, WindowCenter=32767.5, WindowWidth=65535, VOILUTFunction="LINEAR_EXACT"),
        tmp_path / "e.dcm",
    )
    files["no-voi"] = save_dicom(_dataset(sixteen, 16), tmp_path / "n.dcm")  # BitsStored 16: value * 255 / 65535
    lut = _dataset(sixteen, 16)
    item = Dataset()
    item.LUTDescriptor, item.LUTData = [0, 0, 16], np.arange(65536, dtype=np.uint16).tobytes()  # 65,536 entries
    lut.VOILUTSequence = Sequence([item])
    files["voi-lut"] = save_dicom(lut, tmp_path / "l.dcm")
    resolutions = (16, 32, 37) if eight.shape[0] < 256 else (224, 256, 320, 512)
    reference, _ = load_resized(files["png8"], resolutions)
    for name, path in files.items():
        assert np.array_equal(read_grey(path), eight.astype(np.float32)), name
        arrays, _ = load_resized(path, resolutions)
        assert all(np.array_equal(arrays[r], reference[r]) for r in resolutions), name
    # WC 32767.5 / WW 65536 under LINEAR is half a stored value off the identity: grey + 1/512, so an area mean
    # that lands exactly on a half rounds up instead of to even -- at most 1 grey level, never more
    off = save_dicom(_dataset(sixteen, 16, WindowCenter=32767.5, WindowWidth=65536), tmp_path / "off.dcm")
    assert np.allclose(read_grey(off), eight + 0.5 * 255 / 65535, atol=1e-4)
    arrays, _ = load_resized(off, resolutions)
    assert all(np.abs(arrays[r].astype(int) - reference[r]).max() <= 1 for r in resolutions)


#: SHA-256 over load_resized's uint8 arrays (8, 16, 32, 48 px) of the 13 8-bit mini images, and over the 224-px arrays
#: of 12 real NIH images, both computed with the code before the bit-depth rule (percentile window for 16-bit).
MINI_EIGHT_BIT_SHA256 = "4ad942533dc166758ab8b8ebe679429740016515e108b4c93a9af1326d94e9e5"
REAL_NAMES = (
    "00000100_000.png 00000150_002.png 00000193_019.png 00000211_000.png 00000211_013.png 00000211_018.png "
    "00000218_000.png 00000218_001.png 00000284_000.png 00000353_000.png 00000398_002.png 00000468_040.png"
)
REAL_224_SHA256 = "c2dbd7db2582163dcd81be2ec781544b3a389838c2e5710b7a4b17105a9603d9"


def _old_eight_bit(path: Path, resolution_px: int) -> np.ndarray:
    """The 8-bit path written out independently: Pillow grey (luma for RGBA), float32, bottom/right zero pad,
    INTER_AREA, rint, uint8."""
    import cv2

    with Image.open(path) as image:
        grey = np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.float32)
    side = max(grey.shape)
    square = np.zeros((side, side), np.float32)
    square[: grey.shape[0], : grey.shape[1]] = grey
    out = cv2.resize(square, (resolution_px, resolution_px), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_eight_bit_results_are_byte_identical_to_before() -> None:
    digest, n = hashlib.sha256(), 0
    for path in sorted((MINI / "images").glob("*.png")):
        if is_sixteen_bit(path):
            continue
        arrays, _ = load_resized(path, (8, 16, 32, 48))
        for r in (8, 16, 32, 48):
            assert np.array_equal(arrays[r], _old_eight_bit(path, r)), (path.name, r)
            digest.update(arrays[r].tobytes())
        n += 1
    assert n == 13 and digest.hexdigest() == MINI_EIGHT_BIT_SHA256


def test_real_nih_eight_bit_results_are_byte_identical_to_before(real_root: Path) -> None:
    paths = [real_root / "images" / name for name in REAL_NAMES.split()]
    if not all(p.is_file() for p in paths):
        pytest.skip("the 12 real NIH images are not all present")
    digest = hashlib.sha256()
    for path in paths:
        array = load_resized(path, (224,))[0][224]
        assert np.array_equal(array, _old_eight_bit(path, 224)), path.name
        digest.update(array.tobytes())
    assert digest.hexdigest() == REAL_224_SHA256


def test_preprocessing_rules_name_every_step() -> None:
    from cxrres.data.torch_dataset import IMAGENET_MEAN, IMAGENET_STD

    rules = preprocessing_rules()
    assert all(isinstance(r, str) and r.strip() == r and "\n" not in r and r.endswith(".") for r in rules)
    text = " ".join(rules)
    for needed in (
        "0.299 R + 0.587 G + 0.114 B",
        "alpha is ignored",
        "value * 255 / (2^bits - 1)",
        "sBIT",
        "8, 10, 12, 14, 16",
        "MONOCHROME1",
        "Modality LUT",
        "RescaleSlope",
        "WindowCenter",
        "0..255",
        "padded with 0",
        "bottom or the right",
        "INTER_AREA",
        "float32",
        "halves to even",
        "repeated to 3 channels",
        str(tuple(IMAGENET_MEAN)),
        str(tuple(IMAGENET_STD)),
    ):
        assert needed in text, needed


def test_a_new_rule_rebuilds_caches_with_dicom_or_16_bit_sources_and_keeps_8_bit_ones(tmp_path: Path) -> None:
    """Rules before this one counted only 16-bit PNGs; a cache of DICOMs recorded images 0 and must not be kept."""
    from cxrres.data.cache_store import sixteen_bit_current

    eight = [MINI / "images" / "00000002_000.png", MINI / "images" / "00000004_000.png"]
    dicoms = [*eight, tmp_path / "x.dcm"]  # counted by suffix, never opened
    old = {"rule": "own 0.5/99.5 percentiles -> 0/255, linear, clipped; min/max if equal; constant -> 0", "images": 0}
    for paths, kept in ((eight, True), (dicoms, False), ([MINI / "images" / "00000003_000.png"], False)):
        manifest_path = tmp_path / "manifest.json"
        manifest = {"sixteen_bit": dict(old)}
        manifest_path.write_text(json.dumps(manifest))
        assert sixteen_bit_current(manifest_path, manifest, paths) is kept
        written = json.loads(manifest_path.read_text())["sixteen_bit"]
        assert written == ({"rule": SIXTEEN_BIT_RULE, "images": 0} if kept else old)
    today = {"sixteen_bit": {"rule": SIXTEEN_BIT_RULE, "images": 1}}
    assert sixteen_bit_current(tmp_path / "m.json", today, dicoms)


# ---- bounds on what a decode allocates (issue 24) ----


@pytest.mark.parametrize("width, height", [(60_000, 1), (1, 60_000), (8193, 100)])
def test_an_aspect_ratio_bomb_is_refused_before_padding(tmp_path: Path, width: int, height: int) -> None:
    """width x height passes MAX_SOURCE_PIXELS, but the padded square max(w, h)^2 does not: refused in one line."""
    path = tmp_path / "strip.png"
    Image.new("L", (width, height), 100).save(path)
    assert width * height <= MAX_SOURCE_PIXELS < max(width, height) ** 2
    side = max(width, height)
    line = (
        rf"strip\.png: header claims {width:,} x {height:,} pixels, whose padded square {side:,} x {side:,} is "
        r"more than the limit of 67,108,864 pixels \(8,192 x 8,192\); refused before decoding$"
    )
    for read in (read_grey, image_size, lambda p: load_resized(p, (8,))):
        with pytest.raises(ImageReadError, match=line):
            read(path)
    Image.new("L", (8192, 3), 100).save(path)  # the largest side allowed
    assert load_resized(path, (8,))[1] == (3, 8192)


def test_prepare_skip_bad_skips_an_aspect_ratio_bomb(mini: Path, tmp_path: Path) -> None:
    from cxrres.data.cache import prepare_cache
    from cxrres.errors import CacheError

    Image.new("L", (1, 60_000), 100).save(mini / "images" / "00000004_001.png")
    with pytest.raises(CacheError, match=r"00000004_001\.png: header claims 1 x 60,000 pixels, whose padded square"):
        prepare_cache(mini, [16], tmp_path / "c", workers=1, progress=False)
    report = prepare_cache(mini, [16], tmp_path / "c", workers=1, skip_bad=True, progress=False)
    assert [s["image"] for s in report.skipped] == ["00000004_001.png"]
