"""Decoding to grey (8/16-bit, L/RGB/RGBA, DICOM, non-square) and area resizing."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrres.data.images import (ImageReadError, _grey_from_sixteen_bit, area_resize, is_sixteen_bit, load_resized,
                                pad_to_square, percentile_range, read_grey, window_grey)

from conftest import MINI, exact_area_resize


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


def _own_window(values: np.ndarray) -> np.ndarray:
    """The 16-bit rule computed independently: 0.5 and 99.5 percentiles -> 0 and 255, linear, clipped."""
    low, high = np.percentile(values.astype(np.float64), [0.5, 99.5])
    return np.clip((values.astype(np.float64) - low) / (high - low), 0, 1) * 255


def test_12_bit_in_16_keeps_its_contrast(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :64]
    values = np.clip(np.rint(200 + 3500 * (xx + 64 * yy) / 4095 + rng.normal(0, 30, (64, 64))), 0, 4095).astype(np.uint16)
    path = _save(tmp_path / "12bit.png", values)
    assert Image.open(path).mode.startswith("I") and is_sixteen_bit(path)
    grey = read_grey(path)
    np.testing.assert_allclose(grey, _own_window(values), atol=1e-4)
    assert len(np.unique(np.rint(grey))) >= 250  # value / 257 gave at most 4095 / 257 -> 17 grey levels
    assert len(np.unique(np.rint(values / 257))) <= 17
    order = np.argsort(values, axis=None, kind="stable")  # rank order kept: grey never decreases as the value grows
    assert np.all(np.diff(grey.ravel()[order]) >= 0)
    inside = (values > np.percentile(values, 0.5)) & (values < np.percentile(values, 99.5))
    assert len(np.unique(grey[inside])) == len(np.unique(values[inside]))  # distinct values inside the window stay distinct
    assert grey.min() == 0 and grey.max() == 255


def test_16_bit_full_range_uses_its_own_percentiles(tmp_path: Path) -> None:
    values = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    grey = read_grey(_save(tmp_path / "full.png", values))
    low, high = np.percentile(values, [0.5, 99.5])
    assert (low, high) == pytest.approx((0.005 * 4095 * 16, 0.995 * 4095 * 16))
    np.testing.assert_allclose(grey, _own_window(values), atol=1e-4)
    assert np.count_nonzero(grey == 0) == np.count_nonzero(values <= low) == 21  # 0.5 % at each end clipped
    assert np.count_nonzero(grey == 255) == np.count_nonzero(values >= high) == 21


def test_16_bit_constant_and_nearly_constant_images(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero
        flat = read_grey(_save(tmp_path / "flat.png", np.full((8, 8), 1234, np.uint16)))
        spots = np.full((40, 40), 1000, np.uint16)
        spots[0, :3] = (500, 1500, 3000)  # 3 of 1,600 pixels: both percentiles are 1000 -> minimum and maximum
        nearly = read_grey(_save(tmp_path / "spots.png", spots))
    assert flat.dtype == np.float32 and not flat.any()
    np.testing.assert_allclose(nearly[0, :3], [0, 255 * 1000 / 2500, 255], atol=1e-4)
    assert np.allclose(nearly[1:], 255 * 500 / 2500)


def test_16_bit_table_equals_the_per_pixel_map() -> None:
    rng = np.random.default_rng(2)
    stored = rng.integers(0, 65536, (30, 30)).astype(np.uint16)
    shown = stored.astype(np.float64)
    assert np.array_equal(_grey_from_sixteen_bit(stored), window_grey(shown, *percentile_range(shown)))
    signed = rng.integers(-3000, 70000, (30, 30)).astype(np.int32)  # mode I beyond 16 bits: mapped per pixel
    np.testing.assert_allclose(_grey_from_sixteen_bit(signed), _own_window(signed), atol=1e-4)


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
