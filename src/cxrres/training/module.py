"""The Lightning side of a run: the data module over the run's cache datasets, and the classifier module (the network,
masked BCE, validation loss and AUC exact across ranks, the plateau LR schedule)."""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC, MultilabelAUROC

from cxrres import runs
from cxrres.config import TrainConfig
from cxrres.errors import CxrresError
from cxrres.inference.network import ShardSampler, create_loader, prepare_input
from cxrres.models.registry import create_model
from cxrres.inference.rundata import RunData


class TrainingDiverged(CxrresError):
    """The loss became NaN or infinite."""


class CacheDataModule(LightningDataModule):
    """Train (shuffled per epoch by seed, sharded over ranks) and validation (unpadded shards) loaders."""

    def __init__(self, data: RunData, config: TrainConfig) -> None:
        super().__init__()
        self.data, self.config = data, config

    def _per_device_batch(self) -> int:
        return self.config.batch_size // self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        dataset = self.data.parts["train"]
        sampler = DistributedSampler(
            dataset,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
            shuffle=True,
            seed=self.config.seed,
        )
        batch = self._per_device_batch()
        # a last batch of one image would break BatchNorm's training statistics at small resolutions
        return create_loader(dataset, batch, sampler, self.config.num_workers, drop_last=len(sampler) % batch == 1)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalisation and grey -> 3 channels on the device, after the uint8 batch was copied there."""
        images, labels = batch
        return prepare_input(images, bool(self.config.channels_last)), labels

    def val_dataloader(self) -> DataLoader:
        dataset = self.data.parts["val"]
        sampler = ShardSampler(len(dataset), self.trainer.global_rank, self.trainer.world_size)
        return create_loader(dataset, self._per_device_batch(), sampler, self.config.num_workers)


def masked_bce(elementwise: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-image mean of the (N, C) element-wise BCE over the labels that count, their number); a label -1 is masked
    out, so the count-weighted mean of the result is the BCE of the kept (image, class) pairs alone."""
    kept = (labels >= 0).to(elementwise.dtype)
    counts = kept.sum(dim=1)
    return (elementwise * kept).sum(dim=1) / counts.clamp(min=1), counts


class ChestClassifier(LightningModule):
    """The network, the loss, validation loss and AUC (exact across ranks), and the plateau LR schedule."""

    def __init__(
        self, config: TrainConfig, classes: Sequence[str], val_defined: np.ndarray, masked: bool = False
    ) -> None:
        super().__init__()
        self.config = config
        self.classes = list(classes)
        self.masked = masked  # some labels are -1: masked out of their class's loss and AUC
        self.model = create_model(config.arch, len(classes), config.weights, progress=config.progress)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = nn.BCEWithLogitsLoss(reduction="none")
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        ignore = -1 if masked else None
        self.val_auc = (
            MultilabelAUROC(len(classes), average="none", ignore_index=ignore)
            if len(classes) > 1
            else BinaryAUROC(ignore_index=ignore)
        )
        self.val_defined = torch.as_tensor(val_defined, dtype=torch.bool)
        self.history: list[dict[str, float]] = []  # one row per finished epoch (metrics.csv)
        self.cost: dict[str, float] = {
            "train_seconds": 0.0,
            "train_images": 0,
            "epoch_seconds": 0.0,
            "peak_memory_mb": 0.0,
        }
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self._plateau_state: dict | None = None
        self._clock: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _losses(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-image BCE in float32 averaged over the labels that count, how many count); labels -1 are masked out."""
        if not self.masked:
            return self.criterion(logits.float(), labels).mean(dim=1), torch.full_like(labels[:, 0], labels.shape[1])
        return masked_bce(self.criterion(logits.float(), labels.clamp(min=0)), labels)

    def _mean(self, metric: MeanMetric, losses: torch.Tensor, counts: torch.Tensor) -> None:
        """Add a batch's per-image losses to `metric`, weighted by their counted labels when some are masked."""
        if self.masked:
            metric.update(losses, counts)
        else:
            metric.update(losses)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        losses, counts = self._losses(self(x), y)
        loss = (losses * counts).sum() / counts.sum().clamp(min=1) if self.masked else losses.mean()
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss became {loss.item()} at epoch {self.current_epoch + 1}, "
                f"step {batch_idx + 1}; the last good checkpoint is "
                f"{Path(self.config.out) / runs.CHECKPOINTS / runs.LAST} "
                f"(lower --lr, or use --precision 32)"
            )
        self._mean(self.train_loss, losses.detach(), counts)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x).float()
        self._mean(self.val_loss, *self._losses(logits, y))
        probs = torch.sigmoid(logits)
        if len(self.classes) > 1:
            self.val_auc.update(probs, y.int())
        else:
            self.val_auc.update(probs[:, 0], y[:, 0].int())

    # -- timing and memory (kept in the checkpoint so a resumed run adds up) --
    def on_train_epoch_start(self) -> None:
        self._clock["epoch"] = time.perf_counter()

    def on_validation_epoch_start(self) -> None:
        if "epoch" in self._clock and not self.trainer.sanity_checking:
            self.cost["train_seconds"] += time.perf_counter() - self._clock["epoch"]
            self.cost["train_images"] += len(self.trainer.datamodule.data.parts["train"])

    def _peak_memory_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        val_loss = float(self.val_loss.compute())
        aucs = self.val_auc.compute().reshape(-1).float().cpu()
        train_loss = float(self.train_loss.compute()) if self.train_loss.update_count else math.nan
        self.val_loss.reset(), self.val_auc.reset(), self.train_loss.reset()
        mean_auc = float(aucs[self.val_defined].mean())
        lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])
        epoch = self.current_epoch + 1
        for name, value in (("training loss", train_loss), ("validation loss", val_loss)):
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"the {name} became {value} at epoch {epoch}; the last good checkpoint is "
                    f"{Path(self.config.out) / runs.CHECKPOINTS / runs.LAST} (lower --lr, or use --precision 32)"
                )
        self.log("val_loss", val_loss, sync_dist=False)
        self.log("val_mean_auc", mean_auc, sync_dist=False)
        self.log("train_loss", train_loss, sync_dist=False)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_mean_auc": mean_auc, "lr": lr}
        row.update(
            {f"val_auc_{c}": (float(a) if d else math.nan) for c, a, d in zip(self.classes, aucs, self.val_defined)}
        )
        self.history.append(row)
        self.plateau.step(val_loss)
        if "epoch" in self._clock:
            self.cost["epoch_seconds"] += time.perf_counter() - self._clock["epoch"]
        self.cost["peak_memory_mb"] = max(self.cost["peak_memory_mb"], self._peak_memory_mb())
        if self.trainer.is_global_zero:
            write_metrics(Path(self.config.out) / runs.METRICS, self.history)
            rank_zero_info(
                f"epoch {epoch}/{self.trainer.max_epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                f"val mean AUC {mean_auc:.4f}, lr {lr:.1e}"
            )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=self.config.lr_factor, patience=self.config.lr_patience
        )
        if self._plateau_state is not None:
            self.plateau.load_state_dict(self._plateau_state)
        return optimizer

    # The plateau scheduler is stepped here, at validation end, so the checkpoint saved right after holds its
    # current state (Lightning's own scheduler step comes after the checkpoint).
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cxrres"] = {
            "history": self.history,
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "cost": dict(self.cost),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("cxrres", {})
        self.history = list(state.get("history", []))
        self._plateau_state = state.get("plateau")
        self.cost.update(state.get("cost", {}))


def write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """metrics.csv: one row per epoch (written whole, atomically, so a resumed run never duplicates rows)."""
    runs.write_csv_atomic(path, pd.DataFrame(history))
