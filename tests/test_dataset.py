"""The cache-backed Dataset and the on-device grey -> normalised 3-channel step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import Normalize

from cxrres.data import DataRoot, build_split
from cxrres.data.cache import ResolutionCache, prepare_cache
from cxrres.data.torch_dataset import IMAGENET_MEAN, IMAGENET_STD, CacheDataset, to_network_input
from cxrres.errors import CxrresError

from conftest import MINI


@pytest.fixture(scope="module")
def cache_16(tmp_path_factory: pytest.TempPathFactory) -> ResolutionCache:
    directory = tmp_path_factory.mktemp("cache")
    prepare_cache(MINI, [16], directory, workers=1, progress=False)
    return ResolutionCache.open(directory, 16)


def test_items_are_uint8_images_and_float_labels(cache_16: ResolutionCache) -> None:
    split = build_split(DataRoot.at(MINI), "chexnet", MINI / "splits")
    dataset = CacheDataset(cache_16, split.images("test"), split.labels("test"))
    assert len(dataset) == 6
    image, labels = dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (1, 16, 16)
    assert labels.dtype == torch.float32 and labels.tolist() == split.labels("test")[0].tolist()
    row = cache_16.rows[split.images("test")[0]]
    assert np.array_equal(image[0].numpy(), cache_16.array()[row])


def test_dataloader_with_workers(cache_16: ResolutionCache) -> None:
    split = build_split(DataRoot.at(MINI), "chexnet", MINI / "splits")
    dataset = CacheDataset(cache_16, split.images("train"), split.labels("train"))
    batches = list(DataLoader(dataset, batch_size=2, num_workers=2))
    images = torch.cat([b[0] for b in batches])
    assert images.shape == (5, 1, 16, 16)
    assert torch.equal(images, torch.stack([dataset[i][0] for i in range(5)]))


def test_label_shape_mismatch(cache_16: ResolutionCache) -> None:
    with pytest.raises(CxrresError, match="do not match 2 images"):
        CacheDataset(cache_16, ["00000001_000.png", "00000002_000.png"], np.zeros((3, 14)))


def test_to_network_input_equals_torchvision_normalize() -> None:
    batch = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    reference = Normalize(IMAGENET_MEAN, IMAGENET_STD)(batch.float().div(255).repeat(1, 3, 1, 1))
    out = to_network_input(batch)
    assert out.shape == (3, 3, 8, 8) and out.dtype == torch.float32
    assert torch.allclose(out, reference, atol=1e-5)
    assert to_network_input(batch, dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"\(B, 1, R, R\)"):
        to_network_input(batch[:, 0])


def test_batch_read_equals_per_sample_reads(tmp_path: Path) -> None:
    """`__getitems__` (one sorted fancy-index per batch) gives exactly the per-sample images and labels, in order."""
    from torch.utils.data import default_collate

    report = prepare_cache(MINI, [16], tmp_path / "cache", workers=1, progress=False)
    cache = ResolutionCache.open(report.cache_dir, 16)
    names = sorted(cache.rows)
    labels = np.arange(len(names) * 3, dtype=np.float32).reshape(len(names), 3)
    dataset = CacheDataset(cache, names, labels)
    indices = [5, 0, 11, 3, 3, 8]  # unsorted, with a repeat
    images, batch_labels = default_collate(dataset.__getitems__(indices))
    assert images.shape == (6, 1, 16, 16) and images.dtype == torch.uint8
    assert torch.equal(images, torch.stack([dataset[i][0] for i in indices]))
    assert torch.equal(batch_labels, torch.stack([dataset[i][1] for i in indices]))
