"""One training run (arch x resolution x seed) with the study's recipe, in Lightning, on CPU, one GPU or many (DDP).

Recipe (defaults, each overridable): BCE with logits; AdamW lr 3e-4, weight decay 1e-4; LR / 10 after 2 epochs
without validation-loss improvement; stop after 10; batch 64 at 64 px, 12 at 1024 px, 16 otherwise; keep the
checkpoint with the best validation mean AUC; finally score the test part with it. See `cxrres.runs` for the run
directory this writes, and docs/training.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import platform
import re
import resource
import sys
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning
import numpy as np
import pandas as pd
import torch
import torchvision
import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC, MultilabelAUROC

from cxrres import __version__, runs
from cxrres.data import DataRoot, Split, build_split
from cxrres.data.cache import ResolutionCache, prepare_cache, read_json, MANIFEST
from cxrres.data.dataset import CacheDataset, to_network_input
from cxrres.data.labels import CLASS_INDEX, CLASSES, canonical_label
from cxrres.errors import CxrresError, DataFormatError
from cxrres.models import ARCHS, create_model, load_into, load_weights_file


class TrainingDiverged(CxrresError):
    """The loss became NaN or infinite."""


#: Batch sizes of the study's recipe by resolution (px); 16 for every other resolution.
RECIPE_BATCH_SIZE: dict[int, int] = {64: 64, 1024: 12}
PRECISIONS: tuple[str, ...] = ("auto", "32", "32-true", "bf16-mixed", "16-mixed")


def recipe_batch_size(resolution_px: int) -> int:
    """The study's batch size at `resolution_px`: 64 at 64 px, 12 at 1024 px, 16 otherwise."""
    return RECIPE_BATCH_SIZE.get(resolution_px, 16)


@dataclass
class TrainConfig:
    """Every setting of one run. `None` means "resolve from the machine or the recipe" (see `resolve`)."""

    data: str
    resolution_px: int
    arch: str = "densenet121"
    weights: str = "imagenet"  # imagenet | none | path to a state dict or checkpoint
    split: str = "chexnet"
    split_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    label: str | None = None  # one finding: a single-label binary network (Sabottke & Spieler)
    seed: int = 0
    max_epochs: int = 100
    batch_size: int | None = None  # global, over all devices
    lr: float = 3e-4
    weight_decay: float = 1e-4
    lr_factor: float = 0.1
    lr_patience: int = 2  # epochs without val-loss improvement before the LR is divided
    stop_patience: int = 10  # epochs without val-loss improvement before training stops
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: int = 1
    nodes: int = 1
    precision: str = "auto"  # auto: bf16-mixed on GPU (16-mixed without bf16) and on CPUs with native bf16, else 32-true
    channels_last: bool | None = None  # auto: on (1.4x faster than NCHW for DenseNet-121 on a CPU too)
    deterministic: bool | None = None  # auto: on CPU
    allow_missing: bool = False  # train on the split's images present in the cache, dropping the rest
    # -- not part of the run's identity --
    out: str | None = None
    cache: str | None = None
    num_workers: int | None = None
    progress: bool = True


#: Settings that do not change what a run computes; a run directory may be resumed with other values.
NOT_IDENTITY: tuple[str, ...] = ("out", "cache", "num_workers", "progress")


def config_from_file(path: str | Path) -> dict[str, Any]:
    """Settings from a YAML file (keys as in TrainConfig); an unknown key or a non-mapping is an error naming the file."""
    path = Path(path)
    try:
        payload = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CxrresError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        raise DataFormatError(path, f"not valid YAML ({str(error).splitlines()[0]})") from None
    payload = payload or {}
    if not isinstance(payload, dict):
        raise DataFormatError(path, "expected a mapping of setting: value")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise DataFormatError(path, f"unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return payload


def merge_settings(*layers: dict[str, Any]) -> TrainConfig:
    """TrainConfig from dataclass defaults overridden by each layer in turn (None values do not override)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    missing = [k for k in ("data", "resolution_px") if k not in merged]
    if missing:
        raise CxrresError(f"missing setting(s): {', '.join(missing)} (give --data DIR and --resolution R, or put them in --config)")
    return TrainConfig(**merged)


def default_run_dir(config: TrainConfig) -> Path:
    """runs/<arch>_<R>px_seed<S>[_<label>]."""
    label = f"_{config.label}" if config.label else ""
    return Path("runs") / f"{config.arch}_{config.resolution_px}px_seed{config.seed}{label}"


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AMX or AVX512-BF16); bf16 autocast + channels_last then train
    DenseNet-121 1.65-2.4x faster than fp32 NCHW (benchmarks/RESULTS.md)."""
    checks = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(check is not None and bool(check()) for check in checks)


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill every automatic setting (batch size, precision, accelerator, run dir...) and validate the rest."""
    c = dataclasses.replace(config)
    if c.arch not in ARCHS:
        raise CxrresError(f"unknown architecture {c.arch!r}; choose from {', '.join(ARCHS)}")
    if c.resolution_px < 16:
        raise CxrresError(f"resolution must be at least 16 px, got {c.resolution_px}")
    if c.label is not None:
        name = canonical_label(c.label)
        if name is None:
            raise CxrresError(f"unknown label {c.label!r}; choose one of {', '.join(CLASSES)}")
        c.label = name
    if c.precision not in PRECISIONS:
        raise CxrresError(f"unknown precision {c.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if c.accelerator == "auto":
        c.accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if c.accelerator == "gpu" and not torch.cuda.is_available():
        raise CxrresError("--accelerator gpu: no CUDA device is available here")
    on_gpu = c.accelerator == "gpu"
    if c.precision == "auto":
        if on_gpu:
            c.precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        else:
            c.precision = "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    c.precision = {"32": "32-true"}.get(c.precision, c.precision)
    c.channels_last = True if c.channels_last is None else c.channels_last
    c.deterministic = (not on_gpu) if c.deterministic is None else c.deterministic
    c.batch_size = c.batch_size or recipe_batch_size(c.resolution_px)
    world = c.devices * c.nodes
    if c.batch_size % world:
        raise CxrresError(f"batch size {c.batch_size} is not divisible by {world} devices")
    if c.num_workers is None:
        c.num_workers = 0 if not on_gpu else min(8, max(1, (os.cpu_count() or 1) // c.devices))
    c.data = str(Path(c.data).expanduser().resolve())
    if c.weights not in ("imagenet", "none"):
        c.weights = str(Path(c.weights).expanduser().resolve())
    c.out = str(Path(c.out or default_run_dir(c)).expanduser().resolve())
    return c


def identity(config: TrainConfig) -> dict[str, Any]:
    """The settings that define what a run computes."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_IDENTITY}


def split_digest(split: Split) -> str:
    """sha256 of the split's (image, part, labels) table: two runs on the same split have the same digest."""
    return hashlib.sha256(split.frame.drop(columns=["patient_id"]).to_csv().encode()).hexdigest()


def versions() -> dict[str, str]:
    """Versions of the software a run used."""
    return {"cxrres": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": torchvision.__version__, "lightning": lightning.__version__, "numpy": np.__version__}


# --- data -------------------------------------------------------------------------------------------------------


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


def create_loader(dataset: Dataset, batch_size: int, sampler: Sampler, num_workers: int, drop_last: bool = False) -> DataLoader:
    """A DataLoader of uint8 batches (normalisation happens on the device)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last,
                      pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0)


@dataclass
class RunData:
    """The datasets of a run and what identifies them."""

    classes: list[str]
    parts: dict[str, CacheDataset]
    split: Split
    cache: ResolutionCache
    dropped: dict[str, int]


def load_run_data(config: TrainConfig) -> RunData:
    """Split, cache (prepared when needed) and one CacheDataset per part, labels restricted to the run's classes."""
    root = DataRoot.at(config.data)
    split = build_split(root, config.split, config.split_dir, config.val_fraction, config.split_seed)
    report = prepare_cache(config.data, [config.resolution_px], config.cache, progress=config.progress)
    cache = ResolutionCache.open(report.cache_dir, config.resolution_px)
    classes = [config.label] if config.label else list(CLASSES)
    columns = [CLASS_INDEX[c] for c in classes]
    parts, dropped = {}, {}
    for part in ("train", "val", "test"):
        images, labels = split.images(part), split.labels(part)[:, columns]
        present = np.array([name in cache.rows for name in images], dtype=bool)
        dropped[part] = int((~present).sum())
        if dropped[part] and config.allow_missing:
            images, labels = [n for n, p in zip(images, present) if p], labels[present]
        if not images:
            raise CxrresError(f"{config.data}: no image of the {part} part is in the cache")
        parts[part] = CacheDataset(cache, images, labels)
    return RunData(classes, parts, split, cache, dropped if config.allow_missing else {p: 0 for p in parts})


class CacheDataModule(LightningDataModule):
    """Train (shuffled per epoch by seed, sharded over ranks) and validation (unpadded shards) loaders."""

    def __init__(self, data: RunData, config: TrainConfig) -> None:
        super().__init__()
        self.data, self.config = data, config

    def _per_device_batch(self) -> int:
        return self.config.batch_size // self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        dataset = self.data.parts["train"]
        sampler = DistributedSampler(dataset, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank,
                                     shuffle=True, seed=self.config.seed)
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


# --- model ------------------------------------------------------------------------------------------------------


def prepare_input(images_uint8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (B, 1, R, R) on the device -> normalised float (B, 3, R, R), channels_last if asked."""
    x = to_network_input(images_uint8)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def defined_classes(labels: np.ndarray) -> np.ndarray:
    """Mask of the columns of (N, C) 0/1 `labels` that have both positives and negatives."""
    positives = labels.sum(axis=0)
    return (positives > 0) & (positives < labels.shape[0])


class ChestClassifier(LightningModule):
    """The network, the loss, validation loss and AUC (exact across ranks), and the plateau LR schedule."""

    def __init__(self, config: TrainConfig, classes: Sequence[str], val_defined: np.ndarray) -> None:
        super().__init__()
        self.config = config
        self.classes = list(classes)
        self.model = create_model(config.arch, len(classes), config.weights, progress=config.progress)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = nn.BCEWithLogitsLoss(reduction="none")
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.val_auc = MultilabelAUROC(len(classes), average="none") if len(classes) > 1 else BinaryAUROC()
        self.val_defined = torch.as_tensor(val_defined, dtype=torch.bool)
        self.history: list[dict[str, float]] = []  # one row per finished epoch (metrics.csv)
        self.cost: dict[str, float] = {"train_seconds": 0.0, "train_images": 0, "epoch_seconds": 0.0, "peak_memory_mb": 0.0}
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self._plateau_state: dict | None = None
        self._clock: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-image BCE averaged over classes, in float32."""
        return self.criterion(logits.float(), labels).mean(dim=1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        losses = self._losses(self(x), y)
        loss = losses.mean()
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss.item()} at epoch {self.current_epoch + 1}, "
                                   f"step {batch_idx + 1}; the last good checkpoint is {Path(self.config.out) / runs.CHECKPOINTS / runs.LAST} "
                                   f"(lower --lr, or use --precision 32)")
        self.train_loss.update(losses.detach())
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x).float()
        self.val_loss.update(self._losses(logits, y))
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
                raise TrainingDiverged(f"the {name} became {value} at epoch {epoch}; the last good checkpoint is "
                                       f"{Path(self.config.out) / runs.CHECKPOINTS / runs.LAST} (lower --lr, or use --precision 32)")
        self.log("val_loss", val_loss, sync_dist=False)
        self.log("val_mean_auc", mean_auc, sync_dist=False)
        self.log("train_loss", train_loss, sync_dist=False)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_mean_auc": mean_auc, "lr": lr}
        row.update({f"val_auc_{c}": (float(a) if d else math.nan) for c, a, d in zip(self.classes, aucs, self.val_defined)})
        self.history.append(row)
        self.plateau.step(val_loss)
        if "epoch" in self._clock:
            self.cost["epoch_seconds"] += time.perf_counter() - self._clock["epoch"]
        self.cost["peak_memory_mb"] = max(self.cost["peak_memory_mb"], self._peak_memory_mb())
        if self.trainer.is_global_zero:
            write_metrics(Path(self.config.out) / runs.METRICS, self.history)
            rank_zero_info(f"epoch {epoch}/{self.trainer.max_epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                           f"val mean AUC {mean_auc:.4f}, lr {lr:.1e}")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=self.config.lr_factor,
                                                                  patience=self.config.lr_patience)
        if self._plateau_state is not None:
            self.plateau.load_state_dict(self._plateau_state)
        return optimizer

    # The plateau scheduler is stepped here, at validation end, so the checkpoint saved right after holds its
    # current state (Lightning's own scheduler step comes after the checkpoint).
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cxrres"] = {"history": self.history, "plateau": self.plateau.state_dict() if self.plateau else None,
                                "cost": dict(self.cost)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("cxrres", {})
        self.history = list(state.get("history", []))
        self._plateau_state = state.get("plateau")
        self.cost.update(state.get("cost", {}))


def write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """metrics.csv: one row per epoch (written whole, atomically, so a resumed run never duplicates rows)."""
    runs.write_csv_atomic(path, pd.DataFrame(history))


# --- predictions ------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: nn.Module, dataset: CacheDataset, config: TrainConfig, device: torch.device) -> np.ndarray:
    """(N, C) probabilities of `model` on `dataset`, in dataset order, with the run's precision and memory format."""
    model.eval().to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = create_loader(dataset, config.batch_size, ShardSampler(len(dataset)), config.num_workers)
    autocast_dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(config.precision)
    out = []
    for images, _ in loader:
        x = prepare_input(images.to(device, non_blocking=True), bool(config.channels_last))
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            out.append(torch.sigmoid(model(x).float()).cpu())
    return torch.cat(out).numpy()


def load_run_model(run_dir: str | Path, checkpoint: str = runs.BEST) -> tuple[nn.Module, TrainConfig, list[str]]:
    """The network of a run from its checkpoint (weights_only), with its config and classes."""
    run_dir = Path(run_dir)
    settings = runs.read_config(run_dir)["settings"]
    config = TrainConfig(**settings)
    classes = [config.label] if config.label else list(CLASSES)
    path = run_dir / runs.CHECKPOINTS / checkpoint
    model = create_model(config.arch, len(classes), weights="none")
    load_into(model, load_weights_file(path), ARCHS[config.arch].head, str(path))
    return model, config, classes


def write_test_predictions(config: TrainConfig, data: RunData, device: torch.device) -> runs.Predictions:
    """Score the test part with best.ckpt and write predictions_test.csv."""
    model, _, classes = load_run_model(config.out)
    dataset = data.parts["test"]
    predictions = runs.Predictions(dataset.images, classes, predict(model, dataset, config, device),
                                   dataset.labels.numpy().astype(np.uint8))
    runs.write_predictions(Path(config.out) / runs.PREDICTIONS, predictions)
    return predictions


# --- the run ----------------------------------------------------------------------------------------------------


def _check_run_dir(run_dir: Path, wanted: dict[str, Any]) -> dict | None:
    """The existing config of `run_dir` if it was made with the same identity; an error naming differences if not."""
    if not (run_dir / runs.CONFIG).is_file():
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise CxrresError(f"{run_dir}: exists and is not a cxrres run directory; choose another --out")
        return None
    existing = runs.read_config(run_dir)
    before = existing.get("identity", {})
    changed = [f"{k}: {before.get(k)!r} -> {wanted.get(k)!r}" for k in sorted(set(before) | set(wanted)) if before.get(k) != wanted.get(k)]
    if changed:
        raise CxrresError(f"{run_dir}: made with other settings ({'; '.join(changed[:4])}"
                          f"{'; ...' if len(changed) > 4 else ''}); choose another --out or delete it")
    return existing


def _device_name(config: TrainConfig) -> str:
    """'NVIDIA H200' or 'cpu (2 cores)'."""
    return torch.cuda.get_device_name(0) if config.accelerator == "gpu" else f"cpu ({os.cpu_count()} cores)"


def _status(config: TrainConfig, state: str, module: ChestClassifier | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"status": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if module is not None:
        cost = module.cost
        payload.update({
            "epochs": len(module.history),
            "best_epoch": int(np.nanargmax([r["val_mean_auc"] for r in module.history])) + 1 if module.history else None,
            "best_val_mean_auc": float(np.nanmax([r["val_mean_auc"] for r in module.history])) if module.history else None,
            "wall_seconds": round(cost["epoch_seconds"], 2),
            "train_images_per_s": round(cost["train_images"] / cost["train_seconds"], 2) if cost["train_seconds"] else None,
            "peak_memory_mb": round(cost["peak_memory_mb"], 1),
            "device": _device_name(config),
            "world_size": config.devices * config.nodes,
        })
    payload.update(extra)
    return payload


#: Harmless messages from the libraries: undefined classes are masked out of the mean AUC by `defined_classes`.
QUIET_WARNINGS: tuple[str, ...] = (r"No (positive|negative) samples in targets", r".*isinstance\(treespec, LeafSpec\)",
                                   r".*litlogger", r"Checkpoint directory .* exists and is not empty",
                                   r"It is recommended to use `self.log\(")  # our epoch values are already synced


#: Lightning's start-up lines that our own "training ..." line replaces (devices, AMP) or that advertise a service.
LIGHTNING_CHATTER = re.compile(r"^(GPU|TPU|HPU) available|Tip: For seamless cloud logging|Automatic Mixed Precision")


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not LIGHTNING_CHATTER.search(record.getMessage())


def train(config: TrainConfig, callbacks: Sequence[Callback] = ()) -> Path:
    """Train (or resume, or skip if finished) one run; returns its directory. `callbacks` are added to Lightning's."""
    lightning_log, chatter = logging.getLogger("lightning.pytorch.utilities.rank_zero"), _DropChatter()
    lightning_log.addFilter(chatter)
    try:
        with warnings.catch_warnings():
            for pattern in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            return _train(config, callbacks)
    finally:
        lightning_log.removeFilter(chatter)


def _train(config: TrainConfig, callbacks: Sequence[Callback]) -> Path:
    config = resolve(config)
    run_dir = Path(config.out)
    seed_everything(config.seed, workers=True, verbose=False)
    data = load_run_data(config)
    wanted = identity(config) | {"split_digest": split_digest(data.split)}
    existing = _check_run_dir(run_dir, wanted)
    status = runs.read_status(run_dir)
    if existing and status.get("status") == "finished" and (run_dir / runs.PREDICTIONS).is_file():
        rank_zero_info(f"{run_dir}: already finished ({status.get('epochs')} epochs); not retrained")
        return run_dir
    val_labels = data.parts["val"].labels.numpy()
    val_defined = defined_classes(val_labels)
    if not val_defined.any():
        raise CxrresError(f"{config.data}: no class has both positive and negative images in the validation part; "
                          "validation AUC is undefined")
    if rank_zero_only.rank == 0:
        (run_dir / runs.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        manifest = read_json(data.cache.cache_dir / MANIFEST) or {}
        runs.write_yaml_atomic(run_dir / runs.CONFIG, {
            "settings": dataclasses.asdict(config),
            "identity": wanted,
            "data": {"root": config.data, "split": config.split, "classes": data.classes,
                     "images": {p: len(d) for p, d in data.parts.items()}, "dropped_not_in_cache": data.dropped},
            "cache": {"dir": str(data.cache.cache_dir), "fingerprint": manifest.get("fingerprint")},
            "versions": versions(),
            "command": " ".join(sys.argv),
        })
    module = ChestClassifier(config, data.classes, val_defined)
    last = run_dir / runs.CHECKPOINTS / runs.LAST
    checkpoint = ModelCheckpoint(dirpath=run_dir / runs.CHECKPOINTS, filename="best", monitor="val_mean_auc", mode="max",
                                 save_top_k=1, save_last=True, auto_insert_metric_name=False, enable_version_counter=False)
    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=config.stop_patience, check_finite=True)
    status_writer = _StatusWriter(config)
    all_callbacks: list[Callback] = [checkpoint, stopper, status_writer, *callbacks]
    if config.progress:
        all_callbacks.append(ProgressBar())
    world = config.devices * config.nodes
    steps = max(1, len(data.parts["train"]) // config.batch_size)
    where = f"{world} x {config.accelerator}" if world > 1 else _device_name(config)
    rank_zero_info(f"training {config.arch} at {config.resolution_px} px on {where}: {config.precision}, "
                   f"{'channels_last' if config.channels_last else 'NCHW'}, batch {config.batch_size}, "
                   f"{len(data.parts['train']):,} train / {len(data.parts['val']):,} val images"
                   + (", resuming from last.ckpt" if last.is_file() else ""))
    trainer = Trainer(
        accelerator=config.accelerator, devices=config.devices, num_nodes=config.nodes,
        strategy="ddp" if world > 1 else "auto", precision=config.precision, max_epochs=config.max_epochs,
        callbacks=all_callbacks, deterministic=config.deterministic, benchmark=not config.deterministic,
        logger=[CSVLogger(run_dir / "logs", name="csv"), TensorBoardLogger(run_dir, name="logs", version="tensorboard")],
        use_distributed_sampler=False, num_sanity_val_steps=0, enable_progress_bar=config.progress,
        enable_model_summary=False, log_every_n_steps=min(50, steps), default_root_dir=run_dir,
    )
    try:
        trainer.fit(module, datamodule=CacheDataModule(data, config), ckpt_path=last if last.is_file() else None)
    except TrainingDiverged as error:
        if trainer.is_global_zero:
            runs.write_json_atomic(run_dir / runs.STATUS, _status(config, "failed", module, error=str(error)))
        raise
    if not trainer.is_global_zero:
        return run_dir
    device = torch.device("cuda", 0) if config.accelerator == "gpu" else torch.device("cpu")
    write_test_predictions(config, data, device)
    final = _status(config, "finished", module, test_images=len(data.parts["test"]))
    runs.write_json_atomic(run_dir / runs.STATUS, final)
    rank_zero_info(f"{run_dir}: finished after {final['epochs']} epochs; best validation mean AUC "
                   f"{final['best_val_mean_auc']:.4f} (epoch {final['best_epoch']}); test predictions written")
    return run_dir


class ProgressBar(TQDMProgressBar):
    """Lightning's bar (batches, it/s, ETA per epoch) without the logger's version number."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class _StatusWriter(Callback):
    """Keeps run.json current after every epoch (status `running`, epochs done, cost so far)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            runs.write_json_atomic(Path(self.config.out) / runs.STATUS, _status(self.config, "running", pl_module))
