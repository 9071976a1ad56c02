"""Disk-space checks before writing: the bytes a cache and a run's checkpoints need, and the one-line refusal."""

from __future__ import annotations

import shutil
from collections import namedtuple

import numpy as np
import pytest

from cxrres.data import diskspace
from cxrres.data.diskspace import DiskSpaceError, cache_bytes_needed, check_free_space, checkpoint_bytes_needed
from cxrres.errors import CxrresError

Usage = namedtuple("Usage", "total used free")


def test_cache_bytes_are_images_times_the_sum_of_squared_resolutions_plus_index():
    assert (
        cache_bytes_needed(10, [32, 64])
        == 10 * (32 * 32 + 64 * 64) + 10 * diskspace.INDEX_ROW_BYTES + 2 * diskspace.ARRAY_OVERHEAD_BYTES
    )
    assert cache_bytes_needed(0, []) == 0
    # the full NIH count at the study's five resolutions: 1024² alone is 117.6 GB; all five 156.6 GB
    full = cache_bytes_needed(112_120, [64, 128, 256, 512, 1024])
    assert 156.5e9 < full < 156.7e9
    # it is exactly what the arrays take: a uint8 (N, R, R) array's bytes
    assert (
        cache_bytes_needed(7, [48]) - 7 * diskspace.INDEX_ROW_BYTES - diskspace.ARRAY_OVERHEAD_BYTES
        == np.zeros((7, 48, 48), np.uint8).nbytes
    )
    with pytest.raises(ValueError):
        cache_bytes_needed(5, [0])


def test_checkpoint_bytes_are_two_checkpoints_of_weights_and_adamw_moments():
    n = 6_968_206  # DenseNet-121 with a 14-way head
    assert checkpoint_bytes_needed(n) == 2 * 3 * 4 * n  # about 167 MB


def test_refuses_in_one_line_naming_path_needed_and_free(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: seen.append(p) or Usage(10**12, 10**12 - 4_500_000_000, 4_500_000_000)
    )
    target = tmp_path / "not" / "yet" / "cache"
    with pytest.raises(DiskSpaceError) as caught:
        check_free_space(target, 156_600_000_000, "prepare")
    message = str(caught.value)
    assert message == f"prepare: {target} needs 156.6 GB but its file system has 4.5 GB free"
    assert "\n" not in message and isinstance(caught.value, CxrresError)  # the CLI prints it as one line
    assert seen == [tmp_path]  # asked about the nearest folder that exists
    check_free_space(target, 4_500_000_000, "prepare")  # exactly enough passes
    check_free_space(tmp_path, 0, "train")


def test_the_real_file_system_has_room_for_a_byte(tmp_path):
    check_free_space(tmp_path, 1, "test")
    with pytest.raises(DiskSpaceError, match="needs .* but its file system has .* free"):
        check_free_space(tmp_path, shutil.disk_usage(tmp_path).total + 1, "test")


def test_prepare_refuses_before_writing(tmp_path, monkeypatch):
    from conftest import MINI

    from cxrres.data.cache import prepare_cache

    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 1000, 1000))
    cache = tmp_path / "cache"
    with pytest.raises(DiskSpaceError, match=r"prepare.*cache"):
        prepare_cache(MINI, [32, 64], cache, workers=1, progress=False)
    assert not (cache / "manifest.json").exists() and not (cache / ".work").exists()  # nothing a later run would trust
    monkeypatch.undo()
    prepare_cache(MINI, [32], cache, workers=1, progress=False)  # with room, the same call builds it
    assert (cache / "manifest.json").is_file()
