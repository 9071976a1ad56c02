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

from cxrres.data.images import (MAX_SOURCE_PIXELS, SIXTEEN_BIT_RULE, ImageReadError, area_resize, grey_from_bits,
                                image_size, is_sixteen_bit, load_resized, pad_to_square, png_significant_bits,
                                preprocessing_rules, read_grey, stored_bits)

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
    l = read_grey(_save(tmp_path / "l.png", grey, "L"))
    rgb = read_grey(_save(tmp_path / "rgb.png", np.stack([grey] * 3, -1), "RGB"))
    rgba = read_grey(_save(tmp_path / "rgba.png", np.stack([grey] * 3 + [np.full_like(grey, 7)], -1), "RGBA"))
    assert l.dtype == np.float32 and l.shape == (20, 20)
    assert np.array_equal(l, grey.astype(np.float32))
    assert np.array_equal(rgb, l) and np.array_equal(rgba, l)  # alpha ignored
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


@pytest.mark.parametrize("largest, bits", [(0, 8), (255, 8), (256, 10), (1023, 10), (1024, 12), (4095, 12),
                                           (4096, 14), (16383, 14), (16384, 16), (65535, 16), (70_000, 17)])
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
    pydicom = pytest.importorskip("pydicom")
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
