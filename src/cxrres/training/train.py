"""One training run (arch x resolution x seed) with the study's recipe, in Lightning, on CPU, one GPU or many (DDP).

Recipe (defaults, each overridable): BCE with logits; AdamW lr 3e-4, weight decay 1e-4; LR / 10 after 2 epochs
without validation-loss improvement; stop after 10; batch 64 at 64 px, 12 at 1024 px, 16 otherwise; keep the
checkpoint with the best validation mean AUC; finally score the test part with it. See `cxrres.runs` for the run
directory this writes, and docs/training.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import nn

from cxrres import runs
from cxrres.evaluation import operating
from cxrres.config import TrainConfig, identity, resolve
from cxrres.data.cache import MANIFEST
from cxrres.data.cache_store import read_json
from cxrres.data.layout import is_phantom
from cxrres.data.diskspace import check_free_space, checkpoint_bytes_needed
from cxrres.data.source import DataSource
from cxrres.errors import CxrresError, Terminated
from cxrres.inference.network import load_checkpoint_into, predict
from cxrres.evaluation.metrics import defined_classes
from cxrres.util.parallel import write_text_atomic
from cxrres.training.checkpoints import LOCK, AtomicCheckpointIO, lock_run_dir, resume_checkpoint
from cxrres.inference.rundata import RunData, load_run_data, versions
from cxrres.training.module import CacheDataModule, ChestClassifier, TrainingDiverged


# --- model ------------------------------------------------------------------------------------------------------


# --- predictions ---------------------------------------------------------------------------------------------


def write_predictions(config: TrainConfig, data: RunData, model: nn.Module, device: torch.device) -> runs.Predictions:
    """Load best.ckpt into the network the run holds, score the validation and test parts, and write
    predictions_val.csv, predictions_test.csv and operating_points.csv (Youden's J on the written validation
    probabilities); returns the test predictions."""
    load_checkpoint_into(model, config, Path(config.out) / runs.CHECKPOINTS / runs.BEST)
    out = {}
    for part, name in (("val", runs.PREDICTIONS_VAL), ("test", runs.PREDICTIONS)):
        dataset = data.parts[part]
        out[part] = runs.Predictions(
            dataset.images,
            data.classes,
            predict(model, dataset, config, device),
            dataset.labels.numpy().astype(np.int8),
            data.patient_ids(part),
        )
        runs.write_predictions(Path(config.out) / name, out[part])
    val = out["val"]
    table = operating.operating_points(val.labels, val.scores, val.classes, operating.DEFAULT_RULE)
    write_text_atomic(Path(config.out) / runs.OPERATING_POINTS, operating.to_csv_text(table))
    return out["test"]


# --- the run ----------------------------------------------------------------------------------------------------


def never_trained(run_dir: Path) -> bool:
    """Whether `run_dir` holds no checkpoint and no finished epoch (a run that failed before training, e.g. offline)."""
    checkpoints = run_dir / runs.CHECKPOINTS
    return (
        not any(checkpoints.glob("*.ckpt"))
        and not (run_dir / runs.METRICS).is_file()
        and runs.read_status(run_dir).epochs == 0
    )


def _check_run_dir(run_dir: Path, wanted: dict[str, Any]) -> dict | None:
    """The existing config of `run_dir` if it was made with the same identity; an error naming differences if not.
    A run directory that never trained an epoch (`never_trained`) is no identity to keep: it is reused (None)."""
    if not (run_dir / runs.CONFIG).is_file():
        if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
            raise CxrresError(f"{run_dir}: exists and is not a cxrres run directory; choose another --out")
        return None
    existing = runs.read_config(run_dir)
    before = existing.get("identity", {})
    changed = [
        f"{k}: {before.get(k)!r} -> {wanted.get(k)!r}"
        for k in sorted(set(before) | set(wanted))
        if before.get(k) != wanted.get(k)
    ]
    if changed and never_trained(run_dir):
        rank_zero_info(
            f"{run_dir}: never trained an epoch; starting it again with the new settings ({'; '.join(changed[:4])})"
        )
        return None
    if changed:
        raise CxrresError(
            f"{run_dir}: made with other settings ({'; '.join(changed[:4])}"
            f"{'; ...' if len(changed) > 4 else ''}); choose another --out or delete it"
        )
    return existing


def _device_name(config: TrainConfig) -> str:
    """'NVIDIA H200' or 'cpu (2 cores)'."""
    return torch.cuda.get_device_name(0) if config.accelerator == "gpu" else f"cpu ({os.cpu_count()} cores)"


def _status(config: TrainConfig, state: str, module: ChestClassifier | None = None, **extra: Any) -> runs.RunStatus:
    """The run.json record of `state`, with the cost so far when the module is given."""
    status = runs.RunStatus(status=state, updated=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
    if module is not None and module.history:
        aucs = [r["val_mean_auc"] for r in module.history]
        cost = module.cost
        status.epochs = len(module.history)
        status.best_epoch = int(np.nanargmax(aucs)) + 1
        status.best_val_mean_auc = float(np.nanmax(aucs))
        status.wall_seconds = round(cost["epoch_seconds"], 2)
        status.train_images_per_s = (
            round(cost["train_images"] / cost["train_seconds"], 2) if cost["train_seconds"] else None
        )
        status.peak_memory_mb = round(cost["peak_memory_mb"], 1)
    if module is not None:
        status.device, status.world_size = _device_name(config), config.devices * config.nodes
        status.threads, status.cpu_kernels, status.onednn_max_cpu_isa = compute_environment()
    return status


def compute_environment() -> tuple[int, str, str | None]:
    """(torch threads, CPU kernel family e.g. 'AVX512', $ONEDNN_MAX_CPU_ISA or None): with the code, what fixes a CPU
    run's bytes (bf16 and fp32 sums differ in their last bits between thread counts and kernel families)."""
    return (
        torch.get_num_threads(),
        torch.backends.cpu.get_cpu_capability(),
        os.environ.get("ONEDNN_MAX_CPU_ISA") or None,
    )


#: Harmless messages from the libraries: undefined classes are masked out of the mean AUC by `defined_classes`; the
#: srun hint appears wherever SLURM is installed and a command was started without srun (one process, one task).
QUIET_WARNINGS: tuple[str, ...] = (
    r"No (positive|negative) samples in targets",
    r"The `srun` command is available",
    r".*isinstance\(treespec, LeafSpec\)",
    r".*litlogger",
    r"Checkpoint directory .* exists and is not empty",
    r"It is recommended to use `self.log\(",
)  # our epoch values are already synced


#: Lightning's start-up lines that our own "training ..." line replaces (devices, AMP) or that advertise a service.
LIGHTNING_CHATTER = re.compile(r"^(GPU|TPU|HPU) available|Tip: For seamless cloud logging|Automatic Mixed Precision")


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not LIGHTNING_CHATTER.search(record.getMessage())


def train(config: TrainConfig, callbacks: Sequence[Callback] = (), source: DataSource | None = None) -> Path:
    """Train (or resume, or skip if finished) one run; returns its directory. `callbacks` are added to Lightning's;
    `source` is a study's data (root, split, cache) built once, used when it serves this run."""
    lightning_log, chatter = logging.getLogger("lightning.pytorch.utilities.rank_zero"), _DropChatter()
    lightning_log.addFilter(chatter)
    try:
        with warnings.catch_warnings():
            for pattern in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            return _train(config, callbacks, source)
    finally:
        lightning_log.removeFilter(chatter)


def _train(config: TrainConfig, callbacks: Sequence[Callback], source: DataSource | None) -> Path:
    config = resolve(config)
    # one writer per run directory (rank 0 holds it for all ranks; a study's runs each lock their own)
    with lock_run_dir(Path(config.out)) if rank_zero_only.rank == 0 else contextlib.nullcontext():
        return _train_locked(config, callbacks, source)


def _train_locked(config: TrainConfig, callbacks: Sequence[Callback], source: DataSource | None) -> Path:
    """`_train` once this process holds the run directory's lock."""
    run_dir = Path(config.out)
    seed_everything(config.seed, workers=True, verbose=False)
    data = load_run_data(config, source)
    config = data.config
    wanted = identity(config) | {"split_digest": data.source.digest()}
    existing = _check_run_dir(run_dir, wanted)
    if existing and runs.is_trained(run_dir):
        rank_zero_info(f"{run_dir}: already finished ({runs.read_status(run_dir).epochs} epochs); not retrained")
        return run_dir
    val_labels = data.parts["val"].labels.numpy()
    val_defined = defined_classes(val_labels)
    if not val_defined.any():
        raise CxrresError(
            f"{config.data}: no class has both positive and negative images in the validation part; "
            "validation AUC is undefined"
        )
    if rank_zero_only.rank == 0:
        (run_dir / runs.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        manifest = read_json(data.cache.cache_dir / MANIFEST) or {}
        runs.write_yaml_atomic(
            run_dir / runs.CONFIG,
            {
                "settings": dataclasses.asdict(config),
                "identity": wanted,
                "data": {
                    "root": config.data,
                    "dataset": config.dataset,
                    "split": config.split,
                    "classes": data.classes,
                    "images": {p: len(d) for p, d in data.parts.items()},
                    "dropped_not_in_cache": data.dropped,
                    "skipped_rows": len(data.source.table.skipped),
                    "phantom": is_phantom(config.data),
                },
                "cache": {"dir": str(data.cache.cache_dir), "fingerprint": manifest.get("fingerprint")},
                "versions": versions(),
                "command": " ".join(sys.argv),
            },
        )
        runs.write_skipped_rows(run_dir, data.source.table.skipped)
    masked = any(bool((part.labels < 0).any()) for part in data.parts.values())
    module = ChestClassifier(config, data.classes, val_defined, masked)
    if rank_zero_only.rank == 0 and not (run_dir / runs.CHECKPOINTS / runs.LAST).is_file():
        check_free_space(run_dir, checkpoint_bytes_needed(sum(p.numel() for p in module.parameters())), "train")
    last = run_dir / runs.CHECKPOINTS / runs.LAST
    resume = resume_checkpoint(run_dir)  # None, last.ckpt, or best.ckpt where last.ckpt is damaged
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / runs.CHECKPOINTS,
        filename="best",
        monitor="val_mean_auc",
        mode="max",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=config.stop_patience, check_finite=True)
    status_writer = _StatusWriter(config)
    all_callbacks: list[Callback] = [checkpoint, stopper, status_writer, *callbacks]
    if config.progress:
        all_callbacks.append(ProgressBar())
    world = config.devices * config.nodes
    steps = max(1, len(data.parts["train"]) // config.batch_size)
    where = f"{world} x {config.accelerator}" if world > 1 else _device_name(config)
    rank_zero_info(
        f"training {config.arch} at {config.resolution_px} px on {where}: {config.precision}, "
        f"{'channels_last' if config.channels_last else 'NCHW'}, batch {config.batch_size}, "
        f"{len(data.parts['train']):,} train / {len(data.parts['val']):,} val images"
        + (f", resuming from {resume.name}" if resume else "")
    )
    trainer = Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.nodes,
        strategy="ddp" if world > 1 else "auto",
        precision=config.precision,
        max_epochs=config.max_epochs,
        callbacks=all_callbacks,
        deterministic=config.deterministic,
        benchmark=not config.deterministic,
        logger=[
            CSVLogger(run_dir / runs.LOGS, name="csv"),
            TensorBoardLogger(run_dir, name=runs.LOGS, version="tensorboard"),
        ],
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        log_every_n_steps=min(50, steps),
        default_root_dir=run_dir,
        plugins=[AtomicCheckpointIO()],  # checkpoints appear whole under their names, or not at all
    )
    # During fit, SIGTERM goes to Lightning alone: it stops at the next batch boundary (never inside a checkpoint
    # write) by raising SIGTERMException, which becomes Terminated here; last.ckpt (end of the last epoch) resumes.
    outer = (
        signal.signal(signal.SIGTERM, signal.SIG_DFL) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        trainer.fit(module, datamodule=CacheDataModule(data, config), ckpt_path=resume)
    except TrainingDiverged as error:
        if trainer.is_global_zero:
            runs.write_status(run_dir, _status(config, "failed", module, error=str(error)))
        raise
    except SIGTERMException:
        if trainer.is_global_zero:
            runs.write_status(run_dir, _status(config, "interrupted", module))
        done = len(module.history)
        raise Terminated(
            f"{run_dir}: stopped by SIGTERM during epoch {done + 1}; run the same command again to resume "
            + (f"from {runs.CHECKPOINTS}/{runs.LAST} (after epoch {done})" if last.is_file() else "from the start")
        ) from None
    finally:
        if outer is not None:
            signal.signal(signal.SIGTERM, outer)
    if not trainer.is_global_zero:
        return run_dir
    device = torch.device("cuda", 0) if config.accelerator == "gpu" else torch.device("cpu")
    write_predictions(config, data, module.model, device)
    final = _status(config, "finished", module, test_images=len(data.parts["test"]))
    runs.write_status(run_dir, final)
    rank_zero_info(
        f"{run_dir}: finished after {final.epochs} epochs; best validation mean AUC "
        f"{final.best_val_mean_auc:.4f} (epoch {final.best_epoch}); test predictions written"
    )
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
            runs.write_status(self.config.out, _status(self.config, "running", pl_module))
