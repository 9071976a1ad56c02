"""Decoding to grey (8/16-bit, L/RGB/RGBA, DICOM, non-square) and area resizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrres.data.images import ImageReadError, area_resize, load_resized, pad_to_square, read_grey

from conftest import MINI, exact_area_resize


@pytest.fixture(autouse=True)
def _user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep any default cache out of ~/.cache."""
    monkeypatch.setenv("CXRRES_CACHE_DIR", str(tmp_path / "user-cache"))


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_grey_rgb_rgba_and_16_bit_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    l = read_grey(_save(tmp_path / "l.png", grey, "L"))
    rgb = read_grey(_save(tmp_path / "rgb.png", np.stack([grey] * 3, -1), "RGB"))
    rgba = read_grey(_save(tmp_path / "rgba.png", np.stack([grey] * 3 + [np.full_like(grey, 7)], -1), "RGBA"))
    sixteen = read_grey(_save(tmp_path / "i16.png", grey.astype(np.uint16) * 257))
    assert l.dtype == np.float32 and l.shape == (20, 20)
    assert np.array_equal(l, grey.astype(np.float32))
    assert np.array_equal(rgb, l) and np.array_equal(rgba, l)  # alpha ignored
    assert np.allclose(sixteen, l, atol=1e-4)


def test_16_bit_full_range_is_linear(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    assert np.allclose(read_grey(_save(tmp_path / "r.png", values)), [[0, 1, 128, 255]], atol=1e-4)


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
