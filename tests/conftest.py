"""Shared fixtures: the committed 14-image sample and, when present, the real NIH material."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MINI = FIXTURES / "mini"


def real_data_root() -> Path | None:
    """CXRRES_DATA_ROOT, else ../shared/data/chestxray14 beside the repository, if it exists."""
    candidates = [os.environ.get("CXRRES_DATA_ROOT"), Path(__file__).resolve().parents[2] / "shared" / "data" / "chestxray14"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "Data_Entry_2017_v2020.csv").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session", autouse=True)
def user_cache_dir(tmp_path_factory):
    """Default caches (keyed by data root under $CXRRES_CACHE_DIR) go to a temporary folder, never to ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CXRRES_CACHE_DIR", str(tmp_path_factory.mktemp("user-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real ChestX-ray14 material; skips the test when it is absent (a user's fresh clone)."""
    root = real_data_root()
    if root is None:
        pytest.skip("real ChestX-ray14 material not found (set CXRRES_DATA_ROOT)")
    return root


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    """A writable copy of the committed sample data set (NIH flat layout)."""
    target = tmp_path / "mini"
    shutil.copytree(MINI, target)
    return target


def exact_area_resize(grey: np.ndarray, resolution_px: int) -> np.ndarray:
    """Independent reference for area interpolation: output pixel = overlap-weighted mean of the input pixels."""

    def weights(n: int) -> np.ndarray:
        step = n / resolution_px
        edges = np.arange(resolution_px + 1) * step
        lo, hi = edges[:-1, None], edges[1:, None]
        j = np.arange(n)[None, :]
        w = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
        return w / w.sum(axis=1, keepdims=True)

    return weights(grey.shape[0]) @ grey.astype(np.float64) @ weights(grey.shape[1]).T
