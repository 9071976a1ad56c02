"""A run's network and batched prediction: shared by train (with the network it holds), localize and evaluate.

Nothing here knows Lightning: a run's network is a plain torchvision module loaded from its checkpoint with
`weights_only=True`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from cxrres import runs
from cxrres.config import TrainConfig
from cxrres.data.torch_dataset import CacheDataset, to_network_input
from cxrres.models.registry import arch_spec, create_model, load_into, load_weights_file


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ... of range(n): every case exactly once over all ranks, no padding.

    Used for validation so that metrics gathered across ranks are those of the whole validation set.
    """

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def create_loader(
    dataset: Dataset, batch_size: int, sampler: Sampler, num_workers: int, drop_last: bool = False
) -> DataLoader:
    """A DataLoader of uint8 batches (normalisation happens on the device); CacheDataset reads each batch in one sorted
    fancy-index of the memory map (`__getitems__`)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


def prepare_input(images_uint8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (B, 1, R, R) on the device -> normalised float (B, 3, R, R), channels_last if asked."""
    x = to_network_input(images_uint8)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def for_inference(model: nn.Module, config: TrainConfig, device: torch.device) -> nn.Module:
    """The network in eval mode on `device`, in the run's memory format."""
    model.eval().to(device)
    return model.to(memory_format=torch.channels_last) if config.channels_last else model


#: The one precision in which cxrres scores images (test and validation predictions, predict, evaluate --data, the
#: exported graph): float32, without autocast and without TF32, whatever precision the run trained in. bf16 kernels
#: differ in their last bits between CPUs (AMX, AVX-512, AVX2); float32 keeps predict, the run's own predictions and
#: the exported model within 1e-4 of each other on the same pixels.
SCORING_PRECISION = "32-true"


@torch.no_grad()
def probabilities(
    model: nn.Module, images_uint8: torch.Tensor, config: TrainConfig, device: torch.device
) -> torch.Tensor:
    """(B, C) float32 probabilities on the CPU of a uint8 (B, 1, R, R) batch, in SCORING_PRECISION and the run's memory
    format (the model already prepared by `for_inference`)."""
    x = prepare_input(images_uint8.to(device, non_blocking=True), bool(config.channels_last)).float()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(device.type, enabled=False):
            return torch.sigmoid(model.float()(x).float()).cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def predict(model: nn.Module, dataset: CacheDataset, config: TrainConfig, device: torch.device) -> np.ndarray:
    """(N, C) float32 probabilities of `model` on `dataset`, in dataset order, in SCORING_PRECISION."""
    model = for_inference(model, config, device)
    loader = create_loader(dataset, config.batch_size, ShardSampler(len(dataset)), config.num_workers)
    return torch.cat([probabilities(model, images, config, device) for images, _ in loader]).numpy()


def load_checkpoint_into(model: nn.Module, config: TrainConfig, checkpoint: Path) -> nn.Module:
    """Load a run's checkpoint (weights_only) into a network of the run's architecture; returns the network."""
    load_into(model, load_weights_file(checkpoint), arch_spec(config.arch).head, str(checkpoint))
    return model


def load_run_model(run_dir: str | Path, checkpoint: str = runs.BEST) -> tuple[nn.Module, TrainConfig, list[str]]:
    """The network of a run from its checkpoint (weights_only), with its config and classes."""
    run_dir = Path(run_dir)
    config = runs.read_settings(run_dir)
    model = create_model(config.arch, len(config.classes), weights="none")
    load_checkpoint_into(model, config, run_dir / runs.CHECKPOINTS / checkpoint)
    return model, config, config.classes
