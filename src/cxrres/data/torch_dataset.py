"""PyTorch Dataset over a resolution cache, and the grey -> normalised 3-channel step that runs on the device."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cxrres.data.cache import ResolutionCache
from cxrres.data.images import IMAGENET_MEAN, IMAGENET_STD
from cxrres.errors import CxrresError


class CacheDataset(Dataset):
    """Images of one split part from a memory-mapped cache: item i = (uint8 tensor (1, R, R), float32 labels (C,):
    1 positive, 0 negative, -1 masked out of that class (uncertain under `uncertain: ignore`)).

    The memory map is opened lazily in each process (so DataLoader workers do not share file handles) and rows
    are copied out, so a batch never pins the map.
    """

    def __init__(
        self, cache: ResolutionCache, images: list[str], labels: np.ndarray, classes: list[str] | None = None
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape[0] != len(images):
            raise CxrresError(f"labels of shape {labels.shape} do not match {len(images)} images")
        self.cache = cache
        self.images = list(images)
        self.rows = cache.rows_of(self.images)
        self.labels = torch.tensor(labels, dtype=torch.float32)
        self.classes = list(classes) if classes is not None else None  # the label columns' names, when known
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._array is None:
            self._array = self.cache.array()
        image = torch.from_numpy(np.array(self._array[self.rows[index]], copy=True))
        return image.unsqueeze(0), self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The items of a whole batch read in one sorted fancy-index of the memory map, in the order of `indices` (the
        DataLoader calls this instead of one `__getitem__` per image; any collate_fn then works as with items)."""
        if self._array is None:
            self._array = self.cache.array()
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")
        block = self._array[rows[order]]  # fancy indexing copies: the batch never pins the map
        images = np.empty_like(block)
        images[order] = block
        batch = torch.from_numpy(images).unsqueeze(1)
        return [(batch[i], self.labels[index]) for i, index in enumerate(indices)]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_array"] = None
        return state


def to_network_input(
    batch_uint8: torch.Tensor,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(B, 1, R, R) uint8 grey -> (B, 3, R, R) float: grey/255 repeated to 3 channels, ImageNet-normalised.

    Runs wherever `batch_uint8` lives (CPU or GPU), in one fused multiply-add per channel.
    """
    if batch_uint8.ndim != 4 or batch_uint8.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, R, R) batch, got shape {tuple(batch_uint8.shape)}")
    device = batch_uint8.device
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=device, dtype=torch.float32).view(1, -1, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)], device=device, dtype=torch.float32).view(1, -1, 1, 1)
    return (batch_uint8.to(torch.float32) * scale - shift).to(dtype)
